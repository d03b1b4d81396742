"""Experiment tracking's cost: `bertabl run` with one tracker on vs every tracker off.

    python -m bench.tracking [--repeats N] [--service tensorboard|wandb|mlflow]

`--service wandb` (offline mode) and `--service mlflow` (a SQLite store in the run directory)
need their extras: pip install -c constraints.txt ".[wandb,mlflow]".

The matrix: 2 pre-training variants x 300 steps (a TensorBoard point every 25 steps) and 2
fine-tuning restarts x 2 epochs on a synthetic task, one trial at a time: the demo's kind of
trials, short enough that a fixed cost would show. Each side is the command a user types, in
a fresh process and a fresh run directory, timed from outside; the order is off, on, off,
on, ... and each `on` run is compared with the mean of the `off` runs either side of it (a
load change on a shared machine hits both sides); the headline is the median ratio.

Beside the wall times, the tracker's own work is timed in this process: the import of
tensorboardX (once per run, in the driver) and writing every result a run reports into event
files (the results read back out of its records' histories).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO

MATRIX = """
name = "bench-tracking"
[data.synthetic]
documents = 200
sentences_per_document = 12
train_examples = {train_examples}
dev_examples = 300
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
pretrain = {{ objective = "mlm_nsp" }}
[[pretrain.variants]]
name = "no_nsp"
pretrain = {{ objective = "mlm" }}
[finetune]
tasks = ["syn_agree"]
restarts = 2
max_seq_len = 64
[finetune.grid]
batch_size = [32]
learning_rate = [1e-3]
epochs = [{epochs}]
[resources]
cpus_per_trial = {cpus}
max_concurrent_trials = 1
[tracking]
tensorboard = {tensorboard}
{service}"""
SERVICES = {
    "tensorboard": "",
    "wandb": 'wandb = {{ project = "bench-tracking", mode = "offline" }}\n',
    "mlflow": "mlflow = {{}}\n",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="pre-training steps per trial")
    parser.add_argument("--train-examples", type=int, default=1000, help="fine-tuning examples")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs")
    parser.add_argument("--cpus", type=int, default=2, help="threads per trial")
    parser.add_argument("--repeats", type=int, default=2, help="runs with tracking on")
    parser.add_argument("--service", choices=sorted(SERVICES), default="tensorboard")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    sizes = {"steps": args.steps, "train_examples": args.train_examples, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        matrices = {}
        for on in (False, True):
            tensorboard = on and args.service == "tensorboard"
            service = SERVICES[args.service].format() if on else ""
            text = MATRIX.format(
                **sizes, cpus=args.cpus, tensorboard=str(tensorboard).lower(), service=service
            )
            matrices[on] = Path(tmp) / f"tracking-{'on' if on else 'off'}.toml"
            matrices[on].write_text(text)
        print(
            f"2 pre-training x {args.steps} steps, 2 fine-tuning x {args.epochs} epoch(s) of "
            f"{args.train_examples} examples, one trial at a time, {args.cpus} thread(s); "
            f"the tracker measured: {args.service}"
        )
        offs = [_run(matrices[False], Path(tmp) / "off-0")]
        print(f"tracking off: {offs[-1]:7.2f} s")
        ratios = []
        for repeat in range(args.repeats):
            run_dir = Path(tmp) / f"on-{repeat}"
            on = _run(matrices[True], run_dir)
            offs.append(_run(matrices[False], Path(tmp) / f"off-{repeat + 1}"))
            baseline = (offs[-2] + offs[-1]) / 2
            ratios.append(on / baseline)
            print(f"tracking on:  {on:7.2f} s  ({on - baseline:+.2f} s vs the off runs beside it)")
            print(f"tracking off: {offs[-1]:7.2f} s")
        if args.service == "tensorboard":
            events = sum(1 for _ in (run_dir / "tensorboard").rglob("events.out.tfevents.*"))
            imported, written, results = _tracker_cost(run_dir, matrices[True])
            print(f"event files of the last run: {events}")
            print(
                f"the tracker's own work: tensorboardX import {imported:.2f} s (once per run, "
                f"in the driver), {results} results written in {written * 1000:.1f} ms"
            )
    if args.repeats > 1:
        print("ratios: " + ", ".join(f"{r:.3f}x" for r in ratios))
    print(f"tracking on / off (wall): {statistics.median(ratios):.3f}x")


def _run(matrix: Path, run_dir: Path) -> float:
    command = [sys.executable, "-m", "bertabl", "run", str(matrix), "--run-dir", str(run_dir)]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def _tracker_cost(run_dir: Path, matrix: Path) -> tuple[float, float, int]:
    """(tensorboardX import seconds in a fresh process, seconds to write every result of the
    run again, how many results)."""
    probe = (
        "import time; t = time.perf_counter(); import tensorboardX; print(time.perf_counter() - t)"
    )
    imported = float(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout
    )
    import tensorboardX  # noqa: F401 - imported above in its own process; not timed here

    from bertabl.matrix.load import load_matrix
    from bertabl.matrix.plan import build_plan
    from bertabl.orchestrate.store import RunStore
    from bertabl.orchestrate.tracking import Tracker

    plan = build_plan(load_matrix(matrix)[0], str(matrix))
    records = RunStore(run_dir).records()
    with tempfile.TemporaryDirectory() as out:
        tracker = Tracker(plan, Path(out))
        results = 0
        started = time.perf_counter()
        for trial_id, record in records.items():
            for entry in record.history:
                tracker.result(trial_id, entry)
                results += 1
        tracker.close()
        written = time.perf_counter() - started
    return imported, written, results


if __name__ == "__main__":
    main()
