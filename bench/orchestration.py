"""Orchestration overhead: `bertabl run` on a 12-trial matrix vs a plain loop script calling the
same trial bodies one after another.

    python -m bench.orchestration

The matrix: 2 pre-training variants (MLM+NSP, MLM) and 2 x 5 fine-tuning restarts on a
synthetic task: 12 trials. Trial sizes default to the demo matrix's (500 pre-training steps,
4 epochs over 2,000 examples; seconds each on a laptop-class CPU), the smallest trials a real
study runs, so the fixed costs (Ray start, the worker process, records, the report) are
measured against realistic work rather than dominating millisecond trials. Both sides run one
trial at a time with the same thread count, so the difference is orchestration, not
parallelism.

Both are timed as the commands a user types, each in a fresh Python process: `bertabl run
matrix.toml` (Ray Tune, run directory, records, report) and `python -m bench.orchestration
--loop matrix.toml DIR` (import the trial bodies, call them in order: no Ray, no records, no
checkpoints). Timing the loop inside an already-warm process would charge bertabl's trial
worker for the torch/transformers import (~5 s here) that any loop script pays as well; the
loop's import and body times are printed, so that comparison can be read off too. Order:
loop, run, loop (the loops' mean is the run's baseline, so a load change on a shared machine
hits both sides; `--repeats N` goes on with run, loop, ... and takes the median ratio), then
`bertabl run` again on the finished run directory: every trial is skipped (the re-run time).
Each run also gets its fixed cost: its time outside the trial bodies minus the loop's (the
trial bodies' own times swing by 10-20% from minute to minute on a shared machine; the time
around them hardly does). The last line is the run's wall time over the loop's.

Every trial of that matrix has one worker, so it runs in its Tune trial's process (no Ray Train).
`--data-parallel N` also prices the other kind: the matrix's pre-training trials are run once
with one worker and once with N Ray Train workers (`[resources.pretrain] workers = N`, the same
threads in all), each with `bertabl run --stage pretrain`; the difference between the trials'
recorded seconds is what a multi-worker trial costs on top (Ray Train's controller, its worker
processes' start and stop, the process group).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import REPO, add_common_args, setup

MATRIX = """
name = "bench-orchestration"
[data]
corpus = "synthetic"
tokenizer = "synthetic"
[data.synthetic]
documents = 200
sentences_per_document = 12
train_examples = {train_examples}
dev_examples = 500
[pretrain]
steps = {steps}
batch_size = 32
max_seq_len = 64
learning_rate = 3e-3
[pretrain.model]
layers = 2
hidden = 64
heads = 2
[[pretrain.variants]]
name = "bert_base"
label = "MLM + NSP"
pretrain = {{ objective = "mlm_nsp" }}
[[pretrain.variants]]
name = "no_nsp"
label = "MLM only"
pretrain = {{ objective = "mlm" }}
[finetune]
tasks = ["syn_agree"]
restarts = 5
max_seq_len = 64
[finetune.grid]
batch_size = [32]
learning_rate = [1e-3]
epochs = [{epochs}]
[resources]
cpus_per_trial = {cpus}
gpus_per_trial = {gpus}
max_concurrent_trials = 1
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    # Defaults: the demo matrix's trial sizes (matrices/demo.toml), seconds to tens of seconds
    parser.add_argument("--steps", type=int, default=500, help="pre-training steps per trial")
    parser.add_argument("--train-examples", type=int, default=2000, help="fine-tuning examples")
    parser.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs")
    parser.add_argument(
        "--repeats", type=int, default=1, help="bertabl runs, each between two loop runs"
    )
    parser.add_argument(
        "--data-parallel",
        type=int,
        default=0,
        metavar="N",
        help="also time the pre-training trials on N Ray Train workers vs 1 (0 = skip)",
    )
    parser.add_argument(
        "--loop", nargs=2, metavar=("MATRIX", "DIR"), help="be the plain loop script (child)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.data_parallel == 1 or args.data_parallel < 0:
        parser.error("--data-parallel takes 0 (skip) or at least 2 workers")
    if args.loop:
        _loop_script(Path(args.loop[0]), Path(args.loop[1]), args)
        return
    device = setup(args)
    cpus = args.threads or torch.get_num_threads()
    text = MATRIX.format(
        steps=args.steps,
        train_examples=args.train_examples,
        epochs=args.epochs,
        cpus=cpus,
        gpus=1 if device.type == "cuda" else 0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        matrix = Path(tmp) / "matrix.toml"
        matrix.write_text(text)
        from bertabl.matrix.load import load_matrix
        from bertabl.matrix.plan import build_plan
        from bertabl.orchestrate.store import RunStore

        plan = build_plan(load_matrix(matrix)[0], str(matrix))
        trials = len(plan.pretrain) + len(plan.finetune)
        print(
            f"{trials} trials ({len(plan.pretrain)} pre-training x {args.steps} steps, "
            f"{len(plan.finetune)} fine-tuning x {args.epochs} epoch(s) of {args.train_examples} "
            f"examples), one at a time, {cpus} thread(s) each"
        )
        # Interleaved: loop, run, loop, run, loop, ... Each run is compared with the mean of
        # the loops either side of it, so a load change on a shared machine hits both sides;
        # the headline is the median of those ratios over the repeats.
        loops = [_loop(matrix, Path(tmp) / "loop-0", cpus, args.device)]
        ratios, fixed_costs = [], []
        for repeat in range(args.repeats):
            run_dir = Path(tmp) / f"run-{repeat}"
            run = _bertabl_run(matrix, run_dir, Path(tmp) / "report")
            store = RunStore(run_dir)
            bodies = sum(
                store.record(t.id).timings.seconds for t in (*plan.pretrain, *plan.finetune)
            )
            print(
                f"bertabl run:       {run:7.2f} s wall; trial bodies (records' timings) "
                f"{bodies:.2f} s"
            )
            loops.append(_loop(matrix, Path(tmp) / f"loop-{repeat + 1}", cpus, args.device))
            (before, _, bodies_before), (after, _, bodies_after) = loops[-2], loops[-1]
            loop, loop_bodies = (before + after) / 2, (bodies_before + bodies_after) / 2
            ratios.append(run / loop)
            # Outside the trial bodies (start, imports, Ray, records, report, exit): the fixed
            # cost, which a shared machine's load swings hardly touch; the bodies' own times
            # swing by 10-20% from one minute to the next there.
            fixed = (run - bodies) - (loop - loop_bodies)
            print(
                f"  overhead {run - loop:.2f} s = {(run - loop) / loop:.1%} of the loop script; "
                f"outside the trial bodies: {run - bodies:.2f} s vs {loop - loop_bodies:.2f} s, "
                f"a fixed {fixed:.2f} s = {fixed / loop:.1%}; "
                f"trial bodies {bodies / loop_bodies:.3f}x"
            )
            fixed_costs.append(fixed)
        rerun = _bertabl_run(matrix, run_dir, Path(tmp) / "report")
        if args.data_parallel:
            _data_parallel_cost(matrix, Path(tmp), plan, cpus, args.data_parallel)
    print(f"re-run of the finished matrix (all trials skipped): {rerun:.2f} s")
    if args.repeats > 1:
        print(f"ratios of the {args.repeats} runs: " + ", ".join(f"{r:.3f}x" for r in ratios))
        print("fixed costs: " + ", ".join(f"{f:.2f} s" for f in fixed_costs))
    print(f"bertabl run / plain loop script (wall): {statistics.median(ratios):.3f}x")


def _loop(matrix: Path, root: Path, cpus: int, device: str) -> tuple[float, float, float]:
    """(wall, imports, bodies) seconds of the loop script, timed from outside."""
    options = ["--threads", str(cpus), "--device", device, "--loop"]
    command = [sys.executable, "-m", "bench.orchestration", *options]
    # Ray sets OMP_NUM_THREADS in each trial worker to its reserved CPUs (unless the user did);
    # the loop gets the same, so both sides' trial bodies run with the same thread pools.
    env = {"OMP_NUM_THREADS": str(cpus), **os.environ}
    started = time.perf_counter()
    out = subprocess.run(
        [*command, str(matrix), str(root)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wall = time.perf_counter() - started
    inside = json.loads(out.strip().splitlines()[-1])
    print(
        f"plain loop script: {wall:7.2f} s wall; imports {inside['imports']:.2f} s, "
        f"trial bodies {inside['bodies']:.2f} s"
    )
    return wall, inside["imports"], inside["bodies"]


def _data_parallel_cost(matrix: Path, tmp: Path, plan, cpus: int, workers: int) -> None:
    """Each pre-training trial's recorded seconds on one worker (in its Tune trial's process)
    and on `workers` Ray Train workers, with the same threads in all; prints the difference."""
    from bertabl.orchestrate.store import RunStore

    per_worker = max(1, cpus // workers)
    seconds, outside = {}, {}
    for n in (1, workers):
        run_dir = tmp / f"data-parallel-{n}"
        threads = cpus if n == 1 else per_worker
        options = [
            "--stage",
            "pretrain",
            "--set",
            f"resources.pretrain.workers={n}",
            "--set",
            f"resources.pretrain.cpus_per_worker={threads}",
        ]
        wall = _bertabl_run(matrix, run_dir, tmp / "report", options)
        timings = [RunStore(run_dir).record(t.id).timings for t in plan.pretrain]
        seconds[n] = [t.seconds for t in timings]
        outside[n] = [t.seconds - t.body_seconds for t in timings]
        print(
            f"pre-training on {n} worker(s) of {threads} thread(s): {wall:.2f} s wall; trials "
            + ", ".join(f"{s:.2f} s" for s in seconds[n])
            + "; outside their bodies "
            + ", ".join(f"{s:.2f} s" for s in outside[n])
        )
    # The trial bodies' own times swing with the machine's load and the worker count; the time
    # around them (start, placement, process group, stop) is what the worker count costs.
    extra = [b - a for a, b in zip(outside[1], outside[workers], strict=True)]
    print(
        f"fixed cost of a {workers}-worker trial (Ray Train) over a single-worker one: "
        f"{statistics.mean(extra):.2f} s (per trial: {', '.join(f'{e:.2f} s' for e in extra)})"
    )


def _bertabl_run(matrix: Path, run_dir: Path, out: Path, options: list[str] = ()) -> float:
    """Wall seconds of `bertabl run` (a fresh process: the CLI, Ray, the trials, the report)."""
    command = [sys.executable, "-m", "bertabl", "run", str(matrix), "--run-dir", str(run_dir)]
    started = time.perf_counter()
    command += [*options, "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bertabl run failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started


def _loop_script(matrix: Path, root: Path, args: argparse.Namespace) -> None:
    """The plain loop: import the trial bodies, run them in order (no Ray, no records, no
    checkpoints), and print a JSON line of its import and body seconds."""
    started = time.perf_counter()
    from bertabl.finetune.epoch_loop import finetune
    from bertabl.matrix.load import load_matrix
    from bertabl.matrix.plan import build_plan
    from bertabl.orchestrate.rank import quiet_libraries
    from bertabl.pretrain.step_loop import pretrain
    from bertabl.training import TrialRuntime

    quiet_libraries()
    imported = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)  # as the trainable does from cpus_per_trial
    device = torch.device(args.device)
    plan = build_plan(load_matrix(matrix)[0], str(matrix))
    for trial in plan.pretrain:
        pretrain(trial.config, root / trial.id, TrialRuntime(device))
    for trial in plan.finetune:
        pretrained = root / trial.config.pretrain_id / "model"
        finetune(trial.config, pretrained, root / trial.id, TrialRuntime(device))
    finished = time.perf_counter()
    print(json.dumps({"imports": imported - started, "bodies": finished - imported}))


if __name__ == "__main__":
    main()
