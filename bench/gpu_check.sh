#!/usr/bin/env bash
# The GPU check bertabl has not had yet: one prepared run of about 8 minutes on one CUDA GPU.
#
#   bench/gpu_check.sh                    # every step, in this order
#   bench/gpu_check.sh pytest-gpu demo    # only these steps
#
# Steps (each under its own time limit; a failing step does not stop the others):
#   environment     torch, CUDA, the GPU, native bf16; which of bertabl's dependencies import
#   pytest-gpu      pytest -m gpu: pre-train + fine-tune per precision (fp32, bf16, fp16 with
#                   its GradScaler), every family/head/pooling in bf16 and fp16, deterministic
#                   resume bit-identical on CUDA, CUDA RNG restore, chunked LTR loss
#   demo            matrices/demo.toml through Ray Tune with gpus_per_trial = 0.25 (four trials
#                   share the GPU, each capped at a quarter of its memory)
#   bench-pretrain  python -m bench.pretrain --device cuda --model base (tokens/s, TFLOPS, MFU)
#   bench-finetune  python -m bench.finetune --device cuda
#
# Logs go to $OUT (default /tmp/bertabl-gpu-check), one file per step, plus the demo's report;
# the last lines printed are a summary, one line per step. Run from anywhere; it works in the
# repository it lives in. Packages the GPU host lacks can be put as wheels in .whl/ (repository
# root): they are installed into /tmp/site first, without network. Python: $PYTHON or python3.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/bertabl-gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # bertabl and bench from this checkout

# Without a GPU every step would pass by skipping or fail for that reason alone: stop here
# (BERTABL_GPU_CHECK_ON_CPU=1 runs the steps anyway; tests/bench/test_gpu_check.py does).
if [ "${BERTABL_GPU_CHECK_ON_CPU:-0}" != 1 ] &&
    ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    echo "gpu_check: torch ($PY) sees no CUDA GPU: nothing to check" >&2
    exit 1
fi

STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(environment pytest-gpu demo bench-pretrain bench-finetune)
SUMMARY=()

run_step() {  # name, seconds, command...
    local name="$1" limit="$2"
    shift 2
    echo "=== $name (at most ${limit}s): $*"
    local started=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 30 "$OUT/$name.log"
    local verdict="ok"
    [ $rc -ne 0 ] && verdict="FAILED (exit $rc)"
    [ $rc -eq 124 ] && verdict="TIMED OUT"
    SUMMARY+=("$(printf '%-15s %-18s %4ss' "$name" "$verdict" $((SECONDS - started)))")
}

ENVIRONMENT='
import importlib, torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("GPU", torch.cuda.get_device_name(0), "x", torch.cuda.device_count(),
          "native bf16", torch.cuda.is_bf16_supported(including_emulation=False))
missing = []
for name in ("transformers", "tokenizers", "datasets", "ray", "pydantic", "typer", "rich",
             "numpy", "matplotlib", "accelerate", "pytest", "seqeval", "sklearn", "scipy"):
    try:
        module = importlib.import_module(name)
        print(f"{name:13s}", getattr(module, "__version__", "?"))
    except Exception as error:
        missing.append(name)
        print(f"{name:13s} MISSING ({type(error).__name__}: {error})")
raise SystemExit(f"missing: {missing}" if missing else 0)
'

for step in "${STEPS[@]}"; do
    case "$step" in
    environment)
        run_step environment 20 "$PY" -c "$ENVIRONMENT" ;;
    pytest-gpu)
        run_step pytest-gpu 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rfs tests ;;
    demo)
        rm -rf /tmp/bertabl-gpu-demo
        run_step demo 150 "$PY" -m bertabl run matrices/demo.toml --run-dir /tmp/bertabl-gpu-demo \
            --out "$OUT" --set resources.gpus_per_trial=0.25 ;;
    bench-pretrain)
        run_step bench-pretrain 100 "$PY" -m bench.pretrain --device cuda --model base \
            --steps 100 --batch-size 64 ;;
    bench-finetune)
        run_step bench-finetune 60 "$PY" -m bench.finetune --device cuda ;;
    *)
        echo "unknown step: $step" >&2
        exit 2 ;;
    esac
done

echo "=== summary (logs in $OUT)"
printf '%s\n' "${SUMMARY[@]}"
