"""Ray Tune function trainables: thin wrappers that run a trial body and write its record.

Each receives `{"trial": {"id", "stage", "config"}, "run_dir", "cpus", "gpus", ...runtime
settings}` as its Tune config; all paths are absolute because Ray runs trials in their own
working directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from bertabl.orchestrate.store import DONE, RunStore


def pretrain_trainable(params: dict[str, Any]) -> None:
    """Tune entry point of a pre-training trial."""
    from bertabl.pretrain.train import pretrain

    def body(config, store, out_dir, runtime):
        return pretrain(config, out_dir, runtime)

    _run(params, body)


def finetune_trainable(params: dict[str, Any]) -> None:
    """Tune entry point of a fine-tuning trial (its pre-training is done: the driver checked)."""
    from bertabl.finetune.train import finetune
    from bertabl.trial.finetune import MultitaskTrialConfig

    def body(config, store, out_dir, runtime):
        pretrained = model_folder(config, store)
        if isinstance(config, MultitaskTrialConfig):  # one shared encoder, a record per task
            from bertabl.finetune.multitask import finetune_multitask

            metrics = finetune_multitask(config, pretrained, out_dir, runtime)
            write_views(store, config, metrics, runtime.history)
            return metrics
        return finetune(config, pretrained, out_dir, runtime)

    _run(params, body)


def model_folder(config, store: RunStore) -> Path:
    """The model a fine-tune starts from: its pre-training trial's, or its checkpoint's."""
    if config.checkpoint is None:
        return store.model_dir(config.pretrain_id, config.pretrain_step)
    if config.checkpoint.location is not None:
        return Path(config.checkpoint.location)
    from bertabl.data.hub import hub_model

    return Path(hub_model(config.checkpoint.source, config.checkpoint.revision))


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
            DONE,
            metrics=task_metrics(metrics, task),
            history=[task_metrics(entry, task) for entry in history],
        )


def test_trainable(params: dict[str, Any]) -> None:
    """Tune entry point of a cell's test-split scoring (its fine-tunes have all settled)."""
    from bertabl.finetune.test_splits import score_kept
    from bertabl.selection import best_point
    from bertabl.trial.finetune import FinetuneTrialConfig

    def body(config, store, out_dir, runtime):
        records = {i: store.record(i) for i in config.trials}
        configs = {
            i: FinetuneTrialConfig.model_validate(r["config"]) for i, r in records.items() if r
        }
        points = {i: tuple(_grid_point(c)) for i, c in configs.items()}
        runs = [(points[i], records[i]) for i in config.trials if i in points]
        chosen = best_point(runs, config.metric)
        scores: dict[str, Any] = {"grid_point": dict(chosen or ()), "trials": {}}
        for trial_id in config.trials:
            done = records[trial_id] and records[trial_id]["status"] == "done"
            if not done or points[trial_id] != chosen:
                continue
            trial = configs[trial_id]
            trial_dir = store.trial_dir(trial_id)
            scored = score_kept(
                trial, model_folder(trial, store), trial_dir, config.splits, runtime
            )
            extra = {f"{s}_{k}": v for s, r in scored.items() for k, v in r.metrics.items()}
            store.update_metrics(trial_id, extra)  # test_<metric> beside dev_<metric>
            scores["trials"][trial_id] = extra
        return scores

    _run(params, body)


def _grid_point(config) -> list[tuple[str, Any]]:
    """A fine-tuning config's grid point, as the plan names it."""
    return [(k, getattr(config, k)) for k in ("batch_size", "learning_rate", "epochs")]


TRAINABLES = {
    "pretrain": pretrain_trainable,
    "finetune": finetune_trainable,
    "test": test_trainable,
}


def run_trial(params: dict[str, Any]) -> None:
    """Tune entry point of any trial: one trainable for both stages, so one warm worker
    process (reuse_actors) runs pre-training and fine-tuning trials alike."""
    TRAINABLES[params["trial"]["stage"]](params)


def _run(params: dict[str, Any], body) -> None:
    import torch
    from ray import tune

    from bertabl.orchestrate.checkpoint import Checkpointer
    from bertabl.training import TrialRuntime, pick_device, release_gpu_memory, share_gpu

    quiet_libraries()
    torch.set_num_threads(max(1, int(params["cpus"])))
    trial_id, config = params["trial"]["id"], params["trial"]["config"]
    store = RunStore(params["run_dir"])
    trial_dir = store.trial_dir(trial_id)
    attempt = store.count_attempt(trial_id)
    save_steps = tuple(params["save_steps"].get(trial_id, ()))
    # A finished pre-training runs again only for intermediate models it did not keep (a later
    # matrix asked for them): it saves the missing ones and nothing else, since the final model
    # and record are what finished fine-tunes read.
    intermediate_only = params["trial"]["stage"] == "pretrain" and store.is_done(trial_id)
    if intermediate_only:
        save_steps = tuple(s for s in save_steps if not store.model_dir(trial_id, s).is_dir())

    def report(metrics: dict[str, Any]) -> None:
        # No Tune checkpoint: Tune would copy the directory into its storage (the saved model:
        # 420 MB at BERT-Base size) while resuming uses our own checkpoints and fine-tunes read
        # the model from the run directory.
        store.write_progress(trial_id, metrics)
        tune.report(metrics)

    checkpoints = Checkpointer(trial_dir / "checkpoints", keep=params["checkpoint_keep"])
    device = pick_device(params["gpus"])
    runtime = TrialRuntime(
        device=device,
        report=report,
        checkpoints=checkpoints,
        checkpoint_every=params["checkpoint_every"],
        precision=params["precision"],
        deterministic=params.get("deterministic", False),
        workers=params["workers"],
        micro_batch_size=params["micro_batch_size"],
        save_steps=save_steps,
        intermediate_only=intermediate_only,
        cache_dir=store.cache_dir,
    )
    share_gpu(device, params["gpus"])
    started = time.time()
    try:
        metrics = body(config, store, trial_dir, runtime)
    finally:
        release_gpu_memory(device)  # the next trial this worker runs starts with none cached
    finished = time.time()
    if intermediate_only:
        checkpoints.clear()
        return
    store.write_record(
        trial_id,
        config.model_dump(mode="json"),
        DONE,
        metrics=metrics,
        history=runtime.history,
        timings={
            "started": started,
            "finished": finished,
            "seconds": finished - started,
            "resumed_from_step": runtime.resumed_from,
            "attempt": attempt,
        },
    )
    checkpoints.clear()  # the record and (for pre-training) the saved model are what remain


def quiet_libraries() -> None:
    """Silence library progress bars and load reports: trial output is our metrics, not theirs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    logging.getLogger("datasets").setLevel(logging.ERROR)
