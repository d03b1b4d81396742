"""Run a Plan: pre-training as one Ray Tune stage, then fine-tuning as a second.

The stages are sequential: fine-tuning trials start once every pre-training trial of this run has
ended. A fine-tuning trial whose pre-training did not finish is recorded as *blocked* and never
runs on random weights. Finished trials (by id) are skipped, so re-running a matrix only runs
what is missing.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bertabl.errors import UserError
from bertabl.matrix.load import MatrixSource
from bertabl.matrix.plan import FinetuneTrial, Plan, PretrainTrial
from bertabl.matrix.schema import Resources
from bertabl.orchestrate.observer import RunObserver
from bertabl.orchestrate.prepare import prepare_data
from bertabl.orchestrate.store import BLOCKED, DONE, FAILED, RunStore
from bertabl.orchestrate.trainables import run_trial


@dataclass
class RunSummary:
    skipped: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_plan(
    plan: Plan,
    store: RunStore,
    source: MatrixSource,
    observer: RunObserver | None = None,
    address: str | None = None,
    only: set[str] | None = None,
    storage: str | None = None,
) -> RunSummary:
    """Run every unfinished trial of `plan` (or of `only`), recording each in `store`.

    Unfinished trials continue from their latest checkpoint, so this is also how a killed run
    resumes. `storage` puts Ray Tune's experiment state on any path or URI Ray supports (e.g.
    s3://...); records and checkpoints stay in the run directory, which needs a POSIX
    filesystem (atomic rename, flock) shared by every node of a cluster, such as NFS.
    """
    observer = observer or RunObserver()
    started = time.perf_counter()
    summary = RunSummary()
    with store.lock():
        store.write_manifest(plan.matrix.model_dump(mode="json"), source.to_dict())
        needed = plan.intermediate_steps()

        def complete(trial_id: str) -> bool:
            # A pre-training trial that ran before `finetune.pretrain_steps` asked for one of its
            # intermediate models runs again (deterministically: same final model) to save it.
            return store.is_done(trial_id) and all(
                store.model_dir(trial_id, step).is_dir() for step in needed.get(trial_id, ())
            )

        pretrain = _pending(_select(plan.pretrain, only), complete, summary, observer)
        finetune = _pending(_select(plan.finetune, only), store.is_done, summary, observer)
        if pretrain:  # tokenise once, with every core, before Ray and any trial start
            prepare_data(pretrain, store, observer)
        if pretrain or finetune:
            with ray_session(address, plan.matrix.resources):
                _run_trials(plan, pretrain, finetune, store, observer, summary, storage)
    summary.seconds = time.perf_counter() - started
    return summary


def _select(trials: list, only: set[str] | None) -> list:
    return trials if only is None else [t for t in trials if t.id in only]


def _pending(trials, is_done, summary: RunSummary, observer: RunObserver) -> list:
    done = [t.id for t in trials if is_done(t.id)]
    if done:
        summary.skipped.extend(done)
        observer.skipped(done)
    finished = set(done)
    return [t for t in trials if t.id not in finished]


def _blocked_reason(trial: FinetuneTrial, store: RunStore, failed: bool = False) -> str | None:
    record = store.record(trial.pretrain_id)
    if record is not None and record["status"] == DONE:
        return None
    if record is not None and record.get("error"):
        return f"pre-training {trial.pretrain_id} failed: {record['error']}"
    if failed:  # in this run; its record gets the error when the Tune run ends
        return f"pre-training {trial.pretrain_id} failed (its record has the error)"
    return f"pre-training {trial.pretrain_id} did not finish"


def _run_trials(
    plan: Plan,
    pretrain: list[PretrainTrial],
    finetune: list[FinetuneTrial],
    store: RunStore,
    observer: RunObserver,
    summary: RunSummary,
    storage: str | None = None,
) -> None:
    """One Tune run for both stages (orchestrate/dependencies.py): a fine-tune starts when its
    pre-training is done, and is blocked, never run, when that pre-training failed."""
    from ray import tune

    from bertabl.orchestrate.dependencies import DependencySearcher
    from bertabl.orchestrate.tune_events import TuneEvents

    for stage, trials in (("pretrain", pretrain), ("finetune", finetune)):
        if trials:
            observer.stage_started(stage, [t.id for t in trials])
    resources, checkpointing = plan.matrix.resources, plan.matrix.checkpointing

    def suggestion(stage: str, trial) -> dict[str, Any]:
        # A data-parallel pre-training trial runs `workers_per_trial` processes; a fine-tune, one.
        workers = resources.workers_per_trial if stage == "pretrain" else 1
        trial_params = {"id": trial.id, "stage": stage, "config": trial.config}
        return {"trial": trial_params, "workers": workers}

    def release(trial: FinetuneTrial, failed: bool) -> bool:
        reason = _blocked_reason(trial, store, failed)
        if reason is not None:
            store.write_record(trial.id, _dump(trial), BLOCKED, error=reason)
            summary.blocked.append(trial.id)
            observer.blocked(trial.id, reason)
        return reason is None

    def trial_resources(config: dict[str, Any]):  # reserved for every process of the trial
        n = config["workers"]
        bundle = {"CPU": resources.cpus_per_trial * n, "GPU": resources.gpus_per_trial * n}
        return tune.PlacementGroupFactory([bundle])

    param_space = {
        "run_dir": str(store.root),
        "cpus": resources.cpus_per_trial,
        "gpus": resources.gpus_per_trial,
        "checkpoint_every": checkpointing.every_steps,
        "checkpoint_keep": checkpointing.keep,
        "precision": resources.precision,
        "micro_batch_size": resources.micro_batch_size,
        # the intermediate models each pre-training trial must keep (not part of its id)
        "save_steps": plan.intermediate_steps(),
    }
    tuner = tune.Tuner(
        tune.with_resources(run_trial, trial_resources),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=DependencySearcher(pretrain, finetune, suggestion, release),
            num_samples=len(pretrain) + len(finetune),
            max_concurrent_trials=resources.max_concurrent_trials or None,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,  # short, stable: restore finds it again
            # One worker process runs trial after trial, across both stages: importing torch +
            # transformers anew for each trial would cost seconds per trial.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="trials",
            storage_path=storage or str(store.tune_dir),
            verbose=0,
            callbacks=[TuneEvents(observer)],
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
        ),
    )
    results = tuner.fit()
    by_id = {t.id: t for t in (*pretrain, *finetune)}
    for result in results:
        trial_id = result.config["trial"]["id"]
        if result.error is None and store.is_done(trial_id):
            summary.done.append(trial_id)
            continue
        reason = error_summary(result.error) if result.error else "ended without a result"
        attempts = {"attempt": store.attempts(trial_id)}
        store.write_record(trial_id, _dump(by_id[trial_id]), FAILED, error=reason, timings=attempts)
        summary.failed.append(trial_id)


def _dump(trial: PretrainTrial | FinetuneTrial) -> dict[str, Any]:
    return trial.config.model_dump(mode="json")


def _trial_name(trial) -> str:
    return trial.config["trial"]["id"]


def error_summary(error: BaseException) -> str:
    """The original exception's `Type: message` line out of Ray's wrapped traceback."""
    cause = error
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__


# A private instance starts no idle workers up front: Tune's trial actors carry a runtime env
# (env vars), so they never use the default ones, which only took CPU from the processes
# `ray.init` waits on (~1 s of every run's start on 2 cores).
PRIVATE_INSTANCE_CONFIG = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}


@contextlib.contextmanager
def ray_session(address: str | None, resources: Resources) -> Iterator[None]:
    """Connect to (or start) Ray, check the matrix's resources fit it, and shut down after."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune console tables: we show our own
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # No Tune CSV/JSON/TensorBoard result files: the run directory's records are the results,
    # and the TensorBoard logger's import alone cost ~1.5 s of CPU at every run's start.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import ray

    owned = not ray.is_initialized()
    # Without --address/RAY_ADDRESS, start a private local instance: Ray would otherwise join
    # whatever cluster /tmp/ray/ray_current_cluster last named, even a dead one.
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    private = owned and address == "local"
    if owned:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            configure_logging=True,
            **({"_system_config": PRIVATE_INSTANCE_CONFIG} if private else {}),
        )
    try:
        _check_resources(ray.cluster_resources(), resources)
        yield
    finally:
        if private:
            _stop_autoscaler_monitor()
        if owned:
            ray.shutdown()


def _stop_autoscaler_monitor() -> None:
    """Kill the private instance's autoscaler monitor before `ray.shutdown` does.

    Ray (2.60) stops the GCS before the monitor, whose SIGTERM handler then reports to the dead
    GCS until the 1 s grace period runs out: a second added to every `bertabl run`. A private
    instance has nothing to autoscale, so the monitor is killed outright; it holds no state.
    This reaches into Ray's private node API, so any change there just skips the shortcut.
    """
    import ray

    try:
        node = ray._private.worker._global_node
        node._kill_process_type("monitor", allow_graceful=False, check_alive=False, wait=True)
    except Exception:  # noqa: BLE001 - an optimisation only; ray.shutdown still stops it
        pass


def _check_resources(cluster: dict[str, float], resources: Resources) -> None:
    """Fail before any trial starts if a trial could never be scheduled (Tune would wait)."""
    gpus, cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 0.0)
    workers = resources.workers_per_trial
    if resources.gpus_per_trial * workers > gpus:
        found = f"{gpus:g} GPU(s)" if gpus else "no GPU"
        raise UserError(
            f"resources.gpus_per_trial = {resources.gpus_per_trial:g} x workers_per_trial = "
            f"{workers} but the Ray cluster has {found}; set resources.gpus_per_trial = 0 "
            "(--set resources.gpus_per_trial=0) to run on CPU, or run on a GPU host / cluster "
            "(--address)"
        )
    if resources.precision == "fp16" and resources.gpus_per_trial == 0:
        raise UserError(
            "resources.precision = 'fp16' needs GPUs (resources.gpus_per_trial > 0); use "
            "'auto', 'fp32' or 'bf16' on CPU"
        )
    if resources.cpus_per_trial * workers > cpus:
        raise UserError(
            f"resources.cpus_per_trial = {resources.cpus_per_trial:g} x workers_per_trial = "
            f"{workers} but the Ray cluster has {cpus:g} CPU(s); lower them "
            "(--set resources.cpus_per_trial=1)"
        )
