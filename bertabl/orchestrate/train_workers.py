"""Data-parallel trials on Ray Train, started from inside their Tune trial (Ray Train V2's way
of running Train under Tune).

The Tune trial of a trial with k > 1 workers is only a driver: it reserves a little memory and
no CPU or GPU (`DRIVER_RESOURCES`), and runs a `TorchTrainer` whose `ScalingConfig` asks for
k workers of `cpus_per_worker` CPUs and `gpus_per_worker` GPUs, packed onto as few nodes as
possible or spread over as many (`placement`). Ray Train places one bundle per worker (across
nodes when no single node has room), sets up the torch process group (NCCL on GPUs, gloo on
CPU), gives each worker its device, and, when a worker dies or fails, restarts the whole group
up to `resources.worker_restarts` times; the body then continues from the trial's last
checkpoint. Each worker runs `rank.run_rank`; rank 0's reports reach Tune through Ray
Train (`TuneReportCallback`) and its outcome comes back as the run's return value.

What stays bertabl's own, and why: the checkpoints are bertabl's checksummed, atomic files in
the run directory (orchestrate/checkpoint.py), not `ray.train.report(checkpoint=...)`: they
hold every rank's RNG state for a bit-identical resume, they are found again by a later `bertabl
run` (a new Tune run and a new Train run), and they are not copied into Ray's storage on every
save. DDP wrapping (bertabl/parallel.py) skips Ray's `prepare_model`, which would re-broadcast
BERT's constant buffers before every forward. Ray Train's own run state (a few small files per
trial) goes to `train_storage`: the run directory's `train/`, or `--storage`.
"""

from __future__ import annotations

import os
from typing import Any

from bertabl.matrix.resources import TrialResources
from bertabl.orchestrate.params import TrialParams, trial_params
from bertabl.orchestrate.record import Outcome

# The Tune trial of a data-parallel trial holds no CPU or GPU, so its workers can use every
# CPU and GPU of the cluster (a 1-CPU-per-worker trial on 1-CPU nodes must be able to run).
# Tune needs the request to be non-empty: the driver's memory is the honest thing to ask for.
DRIVER_MEMORY = 256 * 2**20
DRIVER_RESOURCES = {"memory": DRIVER_MEMORY}
PLACEMENT = {"pack": "PACK", "spread": "SPREAD"}
TIMEOUT_S = 600  # the longest one collective may take (rank 0 writing a checkpoint included)
# Set before a trainer is built (a user's own setting wins): no Prometheus metrics of Ray
# Train's (their callbacks cost actor calls at every report; the records hold the results), and
# the controller polls its workers every 0.5 s instead of 2 s: it notices the end of training
# (and a dead worker) that much sooner, ~1 s of every trial here.
RAY_TRAIN_DEFAULTS = {
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}


class WorkerFailed(RuntimeError):
    """A data-parallel trial's workers failed (after Ray Train's restarts, if any)."""


def scaling(resources: TrialResources):
    """The trial's Ray Train `ScalingConfig`: one bundle per worker."""
    from ray.train import ScalingConfig

    gpus = resources.gpus_per_worker
    per_worker = {"CPU": resources.cpus_per_worker} | ({"GPU": gpus} if gpus else {})
    return ScalingConfig(
        num_workers=resources.workers,
        use_gpu=gpus > 0,
        resources_per_worker=per_worker,
        placement_strategy=PLACEMENT[resources.placement],
    )


def run_workers(params: TrialParams) -> Outcome:
    """Run the trial of `params` on Ray Train; returns rank 0's outcome (see run_rank)."""
    for key, value in RAY_TRAIN_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from ray.train import FailureConfig, LoggingConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.train.v2.api.exceptions import TrainingFailedError, WorkerGroupError
    from ray.tune.integration.ray_train import TuneReportCallback

    threads = str(max(1, int(params.resources.cpus_per_worker)))
    trainer = TorchTrainer(
        _worker_main,
        train_loop_config=params.tune_config(),  # Ray Train hands each worker a dict too
        scaling_config=scaling(params.resources),
        torch_config=TorchConfig(timeout_s=TIMEOUT_S),  # backend: NCCL with GPUs, else gloo
        run_config=RunConfig(
            name=params.id,
            storage_path=params.run.train_storage,
            failure_config=FailureConfig(max_failures=params.run.worker_restarts),
            callbacks=[TuneReportCallback()],  # rank 0's reports -> this Tune trial
            worker_runtime_env={
                "env_vars": {"OMP_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}
            },
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    try:
        result = trainer.fit()
    except WorkerGroupError as error:
        raise WorkerFailed(describe_failures(error.worker_failures)) from None
    except TrainingFailedError as error:
        raise WorkerFailed(f"Ray Train failed: {_last_line(error)}") from None
    return result.return_value


def describe_failures(failures: dict[int, BaseException]) -> str:
    """One line about the failed ranks, the likely cause first: a rank whose process died or
    that raised an error of its own, before the ranks that only lost their peer in a
    collective."""

    def collateral(error: BaseException) -> bool:
        text = str(error)
        return any(mark in text for mark in ("Connection closed by peer", "gloo", "NCCL"))

    ranked = sorted(failures.items(), key=lambda item: (collateral(item[1]), item[0]))
    parts = [f"rank {rank}: {_last_line(error)}" for rank, error in ranked]
    return "data-parallel workers failed: " + "; ".join(parts)


def _last_line(error: BaseException) -> str:
    """A traceback's last line (`Type: message`), or `Type: message` of a bare exception."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[-1] if len(lines) > 1 else f"{type(error).__name__}: {lines[0]}"


def _worker_main(tune_config: dict[str, Any]) -> Outcome | None:
    """Entry of every Ray Train worker: its rank, device and process group are set up."""
    import ray.train
    import ray.train.torch

    from bertabl.orchestrate.rank import quiet_libraries, run_rank
    from bertabl.parallel import Group

    quiet_libraries()
    group = Group.current(ray.train.torch.get_device())
    return run_rank(trial_params(tune_config), group, ray.train.report)
