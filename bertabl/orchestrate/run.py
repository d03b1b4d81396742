"""Run a Plan: check its resources, prepare its data, run every pending trial in one Ray Tune
run, then keep only the fine-tuned weights selection needs.

Finished trials (by id) are skipped, so re-running a matrix only runs what is missing, and
unfinished ones continue from their latest checkpoint (how a killed run resumes). As Ray starts,
every stage that has trials to run is checked against its nodes (placement.py; on this machine,
also whether torch can use the GPUs asked for): a trial that could never run is one error before
anything is built, not a run that waits forever or fails after its data was prepared. The data
preparation (prepare.py: vocabularies and token stores, with every core) comes next, then one
Tune run holds every stage: its searcher (dependencies.py) starts a fine-tuning trial as soon as
its own pre-training is done, and a test-split scoring once its cell's fine-tunes have settled;
either is recorded as *blocked*, never run (on random weights), when what it needs failed.
Afterwards the final weights of fine-tunes that selection did not pick are deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertabl.errors import UserError
from bertabl.matrix.load import MatrixSource
from bertabl.matrix.plan import FinetuneTrial, Plan, PretrainTrial
from bertabl.matrix.resources import STAGES
from bertabl.matrix.schema import Resources
from bertabl.matrix.trials import TestTrial
from bertabl.orchestrate.interrupt import RunInterrupted, StopRequest
from bertabl.orchestrate.observer import RunObserver
from bertabl.orchestrate.params import RunSettings, TrialParams, trial_params
from bertabl.orchestrate.placement import Node, alive_nodes, check_stage
from bertabl.orchestrate.plan_change import keep_plan
from bertabl.orchestrate.prepare import prepare_data
from bertabl.orchestrate.record import Status, Timings
from bertabl.orchestrate.store import RunStore
from bertabl.orchestrate.trainables import run_trial
from bertabl.selection import select_model
from bertabl.trial.files import FINAL_WEIGHTS


@dataclass
class RunSummary:
    skipped: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)  # unfinished when a stop was requested
    interrupted: str | None = None  # the signal that stopped the run (orchestrate/interrupt.py)
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
    stop = StopRequest()
    with store.lock():
        if plan.matrix.tracking.wandb or plan.matrix.tracking.mlflow:
            from bertabl.orchestrate.tracking_services import preflight

            preflight(plan, store.root)  # a missing extra or a bad store: before any work
        store.write_manifest(plan.matrix.model_dump(mode="json"), source.to_dict())
        keep_plan(store, plan)  # what status, report, export and resume read from now on
        needed = plan.intermediate_steps()

        def complete(trial_id: str) -> bool:
            # A pre-training trial that ran before `finetune.pretrain_steps` asked for one of its
            # intermediate models runs again, up to the last missing step, to save it in its own
            # folder; its final model and record stay (trainables._run). The same model as the
            # first run passed through on CPU, and on one GPU model with resources.deterministic.
            return store.is_done(trial_id) and all(
                store.model_dir(trial_id, step).is_dir() for step in needed.get(trial_id, ())
            )

        pretrain = _pending(_select(plan.pretrain, only), complete, summary, observer)
        finetune = _pending(_select(plan.finetune, only), store.is_done, summary, observer)
        tests = _pending(_select(plan.tests, only), store.is_done, summary, observer)
        # Test-split scorings run with fine-tuning's resources (one worker each).
        pending = (pretrain, finetune + tests)
        stages = [name for name, trials in zip(STAGES, pending, strict=True) if trials]
        try:
            if stages:  # resources checked as Ray starts: before the data, which may take hours
                with ray_session(address, plan.matrix.resources, stages) as nodes:
                    with stop.catching(raise_now=True):  # once, with every core, before trials
                        prepare_data(pretrain, store, observer)
                    if not stop.requested:
                        trials = (pretrain, finetune, tests)
                        _run_trials(plan, *trials, store, observer, summary, storage, nodes, stop)
        except RunInterrupted:
            pass  # during data preparation: its partial store is rebuilt next time
        if stop.requested:
            summary.interrupted = stop.signal_name
            settled = {*summary.done, *summary.failed, *summary.blocked, *summary.skipped}
            summary.stopped = [t.id for t in (*pretrain, *finetune, *tests) if t.id not in settled]
            observer.interrupted(stop.signal_name, summary.stopped)
        prune_unselected(plan, store)
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


def prune_unselected(plan: Plan, store: RunStore) -> list[str]:
    """Delete the kept final weights of fine-tunes that selection did not pick, in every cell
    whose trials have all settled (the selected grid point's stay: for test splits and
    `bertabl export`); returns the trials pruned. A cell still running keeps everything."""
    records = store.records()
    pruned = []
    for task, trial_ids in plan.cells:
        if any(i not in records for i in trial_ids):
            continue
        trials = [plan.trial(i) for i in trial_ids]
        kept = select_model(trials, records, plan.matrix.metric_for(task)).trials
        for trial_id in trial_ids:
            folder = store.trial_dir(trial_id) / FINAL_WEIGHTS
            if trial_id not in kept and folder.is_dir():
                shutil.rmtree(folder)
                pruned.append(trial_id)
    return pruned


def _blocked_reason(trial: FinetuneTrial, store: RunStore, failed: bool = False) -> str | None:
    checkpoint = trial.config.checkpoint
    if checkpoint is not None:  # not pre-trained here: its folder must still be there
        folder = checkpoint.location
        if folder is None or Path(folder, "config.json").is_file():
            return None
        return f"the checkpoint folder {folder} is gone (it was there when the plan was made)"
    record = store.record(trial.pretrain_id)
    if record is not None and record.done:
        return None
    if record is not None and record.error:
        return f"pre-training {trial.pretrain_id} failed: {record.error}"
    if failed:  # in this run; its record gets the error when the Tune run ends
        return f"pre-training {trial.pretrain_id} failed (its record has the error)"
    return f"pre-training {trial.pretrain_id} did not finish"


def _test_blocked_reason(trial: TestTrial, store: RunStore) -> str | None:
    if any(store.is_done(i) for i in trial.depends_on):
        return None
    return "none of the cell's fine-tuning trials finished: there is no selected model to score"


def _run_trials(
    plan: Plan,
    pretrain: list[PretrainTrial],
    finetune: list[FinetuneTrial],
    tests: list[TestTrial],
    store: RunStore,
    observer: RunObserver,
    summary: RunSummary,
    storage: str | None = None,
    nodes: list | None = None,
    stop: StopRequest | None = None,
) -> None:
    """One Tune run for every stage (orchestrate/dependencies.py): a fine-tune starts when its
    pre-training is done, a test-split scoring when its cell's fine-tunes have settled; either
    is blocked, never run, when what it needs failed. `stop`, once requested, stops it."""
    from ray import tune

    from bertabl.orchestrate.dependencies import DependencySearcher
    from bertabl.orchestrate.placement import capacity
    from bertabl.orchestrate.train_workers import DRIVER_RESOURCES
    from bertabl.orchestrate.tune_events import StopOnRequest, TrackingEvents, TuneEvents

    stop = stop or StopRequest()
    stages = (("pretrain", pretrain), ("finetune", finetune), ("test", tests))
    for stage, trials in stages:
        if trials:
            observer.stage_started(stage, [t.id for t in trials])
    resources, checkpointing = plan.matrix.resources, plan.matrix.checkpointing
    per_stage = {stage: resources.stage(stage) for stage in STAGES}
    per_stage["test"] = dataclasses.replace(per_stage["finetune"], workers=1)  # scoring only

    settings = RunSettings(
        run_dir=str(store.root),
        checkpoint_every=checkpointing.every_steps,
        checkpoint_keep=checkpointing.keep,
        precision=resources.precision,
        deterministic=resources.deterministic,
        worker_restarts=resources.worker_restarts,
        # Ray Train's own run state (a few small files per data-parallel trial): beside Tune's
        train_storage=storage or str(store.root / "train"),
        # the intermediate models each pre-training trial must keep (not part of its id)
        save_steps=plan.intermediate_steps(),
    )

    def suggestion(stage: str, trial) -> dict[str, Any]:
        return TrialParams(trial.id, stage, trial.config, per_stage[stage], settings).tune_config()

    def release(stage: str, trial, failed: set[str]) -> bool:
        if stage == "pretrain":
            return True
        if stage == "test":
            reason = _test_blocked_reason(trial, store)
        else:
            reason = _blocked_reason(trial, store, bool(failed))
        if reason is not None:
            store.write_record(trial.id, _dump(trial), Status.BLOCKED, error=reason)
            summary.blocked.append(trial.id)
            observer.blocked(trial.id, reason)
        return reason is None

    def trial_resources(config: dict[str, Any]):
        own = trial_params(config).resources
        if own.workers > 1:  # the Tune trial only drives Ray Train's workers (their own PG)
            return tune.PlacementGroupFactory([DRIVER_RESOURCES])
        return tune.PlacementGroupFactory([own.bundle])

    # Tune does not see a data-parallel trial's workers (Ray Train asks for them), so it would
    # start every such trial at once, each driver waiting for its workers: the searcher admits
    # only as many as the cluster can place together.
    admits = {
        stage: capacity(nodes, res) if nodes is not None and res.workers > 1 else None
        for stage, res in per_stage.items()
    }
    callbacks: list = [TuneEvents(observer)]
    if plan.matrix.tracking.tensorboard:
        from bertabl.orchestrate.tracking import TENSORBOARD_DIR, Tracker

        callbacks.append(TrackingEvents(Tracker(plan, store.root / TENSORBOARD_DIR)))
    if plan.matrix.tracking.wandb or plan.matrix.tracking.mlflow:
        from bertabl.orchestrate.tracking_services import service_callbacks

        callbacks += service_callbacks(plan, store.root)
    tuner = tune.Tuner(
        tune.with_resources(run_trial, trial_resources),
        tune_config=tune.TuneConfig(
            search_alg=DependencySearcher(
                _waiting(pretrain, finetune, tests), suggestion, release, admits
            ),
            num_samples=len(pretrain) + len(finetune) + len(tests),
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
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            stop=StopOnRequest(stop),
        ),
    )
    with stop.catching(raise_now=False):  # after ray.init, which sets its own SIGTERM handler
        results = fit_or_explain(tuner.fit, store.root)
    by_id = {t.id: t for t in (*pretrain, *finetune, *tests)}
    for result in results:
        if result.error is None and stop.requested and not result.config:
            continue  # stopped on request before it reported anything
        trial_id = trial_params(result.config).id
        if result.error is None and store.is_done(trial_id):
            summary.done.append(trial_id)
            continue
        if result.error is None and stop.requested:
            continue  # stopped on request: it resumes from its checkpoint, not failed
        reason = error_summary(result.error) if result.error else "ended without a result"
        attempts = Timings(attempt=store.attempts(trial_id))
        store.write_record(
            trial_id, _dump(by_id[trial_id]), Status.FAILED, error=reason, timings=attempts
        )
        summary.failed.append(trial_id)


def fit_or_explain(fit: Callable[[], Any], run_dir: Path) -> Any:
    """`tuner.fit()`, with an out-of-memory kill said in one line. When Ray's memory monitor
    kills a trial's worker while Tune starts or reuses it, Tune gives up on the whole run
    (RuntimeError "Caught unexpected exception"), which ended `bertabl run` in a traceback."""
    try:
        return fit()
    except RuntimeError as err:
        if "running low on memory" not in str(err):
            raise
        usage = re.search(r"was ([\d.]+GB used / [\d.]+GB limit)", str(err))
        raise UserError(
            f"{run_dir}: Ray killed trial workers because this machine ran out of memory"
            f"{f' ({usage.group(1)})' if usage else ''}. Finished trials are kept; "
            f"`bertabl resume {run_dir}` runs the rest. Fix: fewer trials at once (--set "
            "resources.max_concurrent_trials=1), or stop other jobs using memory here"
        ) from None


def _waiting(pretrain, finetune, tests) -> list[tuple[str, Any, set[str]]]:
    """Every trial to run as (stage, trial, what it waits for), in the order to start them."""
    return [
        *(("pretrain", t, set()) for t in pretrain),
        *(("finetune", t, {t.pretrain_id}) for t in finetune),
        *(("test", t, set(t.depends_on)) for t in tests),
    ]


def _dump(trial: PretrainTrial | FinetuneTrial | TestTrial) -> dict[str, Any]:
    return trial.config.model_dump(mode="json")


def _trial_name(trial) -> str:
    return trial_params(trial.config).id


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
def ray_session(
    address: str | None, resources: Resources, stages: list[str] | tuple[str, ...] = STAGES
) -> Iterator[list]:
    """Connect to (or start) Ray, check that the trials of `stages` can be placed on its nodes
    (yields the nodes), and shut down after."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune console tables: we show our own
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # SIGINT stops a run through bertabl's handler (orchestrate/interrupt.py), not Tune's.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    # No Tune CSV/JSON/TensorBoard result files: the run directory's records are the results,
    # and orchestrate/tracking.py writes the TensorBoard curves (by step, named by row/task).
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
        nodes = alive_nodes(ray.nodes())
        check_resources(nodes, resources, stages)
        if private:  # the trials run here: their GPUs must be usable by this torch
            check_local_gpus(resources, stages)
        yield nodes
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


def check_resources(
    nodes: list[Node], resources: Resources, stages: list[str] | tuple[str, ...] = STAGES
) -> None:
    """Fail before any trial starts if a trial of `stages` could never be placed (Tune would
    wait for it forever); see orchestrate/placement.py."""
    for stage in stages:
        check_stage(nodes, resources.stage(stage), resources.precision)


def check_local_gpus(resources: Resources, stages: list[str] | tuple[str, ...] = STAGES) -> None:
    """Fail before any trial starts if a stage asks for GPUs that this machine's torch cannot
    use (a CPU-only build, no driver): each trial would fail alike in training.pick_device, after
    the data was prepared. Only for a private Ray instance, whose trials run on this machine; a
    cluster's workers may have GPUs and torch builds that the driver lacks."""
    gpus = max(resources.stage(stage).gpus_per_worker for stage in stages)
    if gpus > 0:
        from bertabl.training import pick_device  # imports torch: only when GPUs are asked for

        pick_device(gpus)
