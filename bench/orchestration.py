"""Orchestration overhead: a 12-trial matrix through `run_plan` (Ray Tune, run directory,
records) vs the same trial bodies called one after another in a plain loop.

    python -m bench.orchestration

The matrix: 2 pre-training variants (MLM+NSP, MLM) and 2 x 5 fine-tuning restarts on a
synthetic task: 12 trials. Trial sizes default to the demo matrix's (500 pre-training steps,
4 epochs over 2,000 examples; seconds to tens of seconds each on a laptop-class CPU), the
smallest trials a real study runs, so the fixed costs (Ray start, worker processes, imports,
records) are measured against realistic work rather than dominating millisecond trials.
Both runs use one trial at a time with the same thread count, so the difference is
orchestration, not parallelism. Then `run_plan` runs again
on the finished run directory: every trial is skipped (the re-run time).
The last line is the Ray run's wall time over the loop's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.common import add_common_args, setup

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
    args = parser.parse_args(argv)
    device = setup(args)
    cpus = args.threads or torch.get_num_threads()
    torch.set_num_threads(cpus)  # what the Tune trainable sets from resources.cpus_per_trial
    text = MATRIX.format(
        steps=args.steps,
        train_examples=args.train_examples,
        epochs=args.epochs,
        cpus=cpus,
        gpus=1 if device.type == "cuda" else 0,
    )
    import bertabl.finetune.train  # noqa: F401  (imported before any clock starts)
    import bertabl.pretrain.train  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "matrix.toml"
        path.write_text(text)
        from bertabl.matrix.load import load_matrix
        from bertabl.matrix.plan import build_plan

        matrix, source = load_matrix(path)
        plan = build_plan(matrix, str(path))
        trials = len(plan.pretrain) + len(plan.finetune)
        print(
            f"{trials} trials ({len(plan.pretrain)} pre-training x {args.steps} steps, "
            f"{len(plan.finetune)} fine-tuning x {args.epochs} epoch(s) of {args.train_examples} "
            "examples), "
            f"one at a time, {cpus} thread(s) each"
        )
        # Loop, run_plan, loop: the loops' mean is the baseline, so a load change on a shared
        # machine during the run hits both sides about equally.
        loops = [_loop(plan, Path(tmp) / "loop-1", device)]
        print(f"plain loop:  {loops[0]:7.2f} s ({loops[0] / trials:.2f} s per trial)")
        ray, bodies, rerun = _run_plan(plan, source, Path(tmp) / "run")
        print(f"run_plan:    {ray:7.2f} s ({ray / trials:.2f} s per trial)")
        print(
            f"  of which trial bodies (records' timings): {bodies:.2f} s; Ray start, workers, "
            f"scheduling and records: {ray - bodies:.2f} s"
        )
        loops.append(_loop(plan, Path(tmp) / "loop-2", device))
        print(f"plain loop:  {loops[1]:7.2f} s ({loops[1] / trials:.2f} s per trial)")
        loop = sum(loops) / len(loops)
        print(f"overhead:    {ray - loop:7.2f} s = {(ray - loop) / loop:.1%} of the loop time")
        print(f"re-run of the finished matrix (all trials skipped): {rerun:.2f} s")
    print(f"run_plan / plain loop (wall): {ray / loop:.3f}x")


def _loop(plan, root: Path, device: torch.device) -> float:
    """The trial bodies in order, in this process: no Ray, no records, no checkpoints.
    (Imported before the clock starts, as a loop script imports once at its top.)"""
    from bertabl.finetune.train import finetune
    from bertabl.pretrain.train import pretrain
    from bertabl.training import TrialRuntime

    started = time.perf_counter()
    for trial in plan.pretrain:
        pretrain(trial.config, root / trial.id, TrialRuntime(device))
    for trial in plan.finetune:
        pretrained = root / trial.config["pretrain_id"] / "model"
        finetune(trial.config, pretrained, root / trial.id, TrialRuntime(device))
    return time.perf_counter() - started


def _run_plan(plan, source, root: Path) -> tuple[float, float]:
    from bertabl.orchestrate.run import run_plan
    from bertabl.orchestrate.store import RunStore

    store = RunStore(root)
    summary = run_plan(plan, store, source)
    if summary.failed or summary.blocked:
        raise SystemExit(f"trials failed: {summary.failed + summary.blocked}")
    trials = [t.id for t in plan.pretrain + plan.finetune]
    bodies = sum(store.record(t)["timings"]["seconds"] for t in trials)
    started = time.perf_counter()
    again = run_plan(plan, store, source)
    rerun = time.perf_counter() - started
    if len(again.skipped) != len(trials):
        raise SystemExit(f"the re-run ran trials again: {again}")
    return summary.seconds, bodies, rerun


if __name__ == "__main__":
    main()
