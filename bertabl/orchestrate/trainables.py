"""The Ray Tune trainable: runs a trial body and writes its record.

Each trial receives its TrialParams (orchestrate/params.py: the trial, its stage's resources,
the run's settings) inside its Tune config; all paths are absolute because Ray runs trials in
their own working directory.

A single-worker trial runs its body right here, in the Tune trial's process (no Ray Train: it
would only add a worker process and its start-up, see bench/orchestration.py). A data-parallel
trial makes this process the driver of a Ray Train run (orchestrate/train_workers.py) whose
workers each run `run_rank`; the record is written here either way, from rank 0's outcome.
"""

from __future__ import annotations

import functools
import shutil
import time
from typing import Any

from bertabl.orchestrate.params import trial_params
from bertabl.orchestrate.rank import checkpointer, quiet_libraries, run_rank
from bertabl.orchestrate.record import Status, Timings
from bertabl.orchestrate.store import RunStore


def write_views(store: RunStore, config, metrics: dict[str, Any], history: list) -> None:
    """Write each task's record of a finished multi-task trial (its views: see
    MultitaskTrialConfig.view), before the trial's own record: a done trial always has its
    views."""
    from bertabl.finetune.multitask import task_metrics
    from bertabl.trial.files import PREDICTIONS

    for task in config.tasks:
        view = config.view(task)
        shared = store.trial_dir(config.id) / PREDICTIONS / task
        if shared.is_dir():  # each task's predictions live with its view's record
            target = store.trial_dir(view.id) / PREDICTIONS
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            shared.rename(target)
        store.write_record(
            view.id,
            view.model_dump(mode="json"),
            Status.DONE,
            metrics=task_metrics(metrics, task),
            history=[task_metrics(entry, task) for entry in history],
        )


def release_freed_memory() -> None:
    """Give the memory a finished trial freed back to the operating system (glibc only).

    Tune runs each trial of a reused worker in a new thread, and glibc keeps what a thread's
    malloc arena freed for that arena: a warm worker's RSS grew by ~1 GB a trial
    (recipes_cpu: 2.2 -> 8.6 GB in 20 minutes, until Ray's memory monitor killed workers),
    though no tensor of an earlier trial stayed alive. malloc_trim(0) trims every arena (one
    SST-2 trial's process: 1.1 -> 0.59 GB; with a gc.collect() before it, recipes_cpu's workers
    then stayed under 2.7 GB)."""
    trim = _malloc_trim()
    if trim is not None:  # glibc; musl and macOS have no malloc_trim and need none
        trim(0)


@functools.cache
def _malloc_trim():
    """The C library's malloc_trim, looked up once per worker process (None where absent):
    the symbols already loaded into this process, so no library search per trial."""
    import ctypes

    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):  # no process symbol table to open (Windows): nothing to trim
        return None


def run_trial(tune_config: dict[str, Any]) -> None:
    """Tune entry point of any trial: one trainable for every stage, so one warm worker
    process (reuse_actors) runs pre-training, fine-tuning and test-split trials alike."""
    try:
        _run_trial(tune_config)
    finally:
        # No gc.collect() first (~0.2 s a trial on 2 cores): what a reference cycle still holds
        # is freed by a later collection and trimmed at the end of the next trial.
        release_freed_memory()


def _run_trial(tune_config: dict[str, Any]) -> None:
    params = trial_params(tune_config)
    trial_id, config = params.id, params.config
    store = RunStore(params.run.run_dir)
    attempt = store.count_attempt(trial_id)
    started = time.time()
    if params.resources.workers > 1:
        from bertabl.orchestrate.train_workers import run_workers

        outcome = run_workers(params)
    else:
        from ray import tune

        from bertabl.parallel import Group
        from bertabl.training import pick_device

        quiet_libraries()  # (Ray Train's workers do this themselves; this process only drives)
        device = pick_device(params.resources.gpus_per_worker)
        outcome = run_rank(params, Group.single(device), tune.report)
    finished = time.time()
    if outcome.intermediate_only:  # the final model and record stay as they were
        checkpointer(store, params).clear()
        return
    timings = Timings(
        started=started,
        finished=finished,
        seconds=finished - started,
        resumed_from_step=outcome.resumed_from,
        attempt=attempt,
        body_seconds=outcome.body_seconds,  # of the last (re)start of its workers
    )
    if outcome.worker_group_starts is not None:
        timings.worker_group_starts = outcome.worker_group_starts
    from bertabl.trial.finetune import MultitaskTrialConfig

    if isinstance(config, MultitaskTrialConfig):
        write_views(store, config, outcome.metrics, outcome.history)
    store.write_record(
        trial_id,
        config.model_dump(mode="json"),
        Status.DONE,
        metrics=outcome.metrics,
        history=outcome.history,
        timings=timings,
        workers=outcome.workers,
    )
    checkpointer(store, params).clear()  # the record and the model are what remain
