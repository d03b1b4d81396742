"""One rank's part of a trial: the trial body with its runtime, in the Tune trial's process (a
single-worker trial) or in each Ray Train worker of a data-parallel one (train_workers.py).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from bertabl.io import atomic_write_json
from bertabl.machine import describe_machine
from bertabl.orchestrate.store import RunStore


def pretrain_body(config, store: RunStore, out_dir, runtime, group) -> dict[str, Any]:
    """A pre-training trial's body (every rank of a data-parallel one runs it)."""
    from bertabl.pretrain.step_loop import pretrain

    return pretrain(config, out_dir, runtime, group)


def finetune_body(config, store: RunStore, out_dir, runtime, group) -> dict[str, Any]:
    """A fine-tuning trial's body (its pre-training is done: the driver checked)."""
    from bertabl.finetune.epoch_loop import finetune
    from bertabl.trial.finetune import MultitaskTrialConfig

    pretrained = model_folder(config, store)
    if isinstance(config, MultitaskTrialConfig):  # one shared encoder, a record per task
        from bertabl.finetune.multitask import finetune_multitask

        return finetune_multitask(config, pretrained, out_dir, runtime, group)
    return finetune(config, pretrained, out_dir, runtime, group)


def test_body(config, store: RunStore, out_dir, runtime, group) -> dict[str, Any]:
    """A cell's test-split scoring (its fine-tunes have all settled): the kept final models of
    the grid point selected on dev, scored on the test splits; one process."""
    from bertabl.finetune.test_splits import score_kept
    from bertabl.selection import best_point
    from bertabl.trial.finetune import FinetuneTrialConfig

    records = {i: store.record(i) for i in config.trials}
    configs = {i: FinetuneTrialConfig.model_validate(r["config"]) for i, r in records.items() if r}
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
        scored = score_kept(trial, model_folder(trial, store), trial_dir, config.splits, runtime)
        extra = {f"{s}_{k}": v for s, r in scored.items() for k, v in r.metrics.items()}
        store.update_metrics(trial_id, extra)  # test_<metric> beside dev_<metric>
        scores["trials"][trial_id] = extra
    return scores


def _grid_point(config) -> list[tuple[str, Any]]:
    """A fine-tuning config's grid point, as the plan names it."""
    return [(k, getattr(config, k)) for k in ("batch_size", "learning_rate", "epochs")]


def model_folder(config, store: RunStore) -> Path:
    """The model a fine-tune starts from: its pre-training trial's, or its checkpoint's."""
    if config.checkpoint is None:
        return store.model_dir(config.pretrain_id, config.pretrain_step)
    if config.checkpoint.location is not None:
        return Path(config.checkpoint.location)
    from bertabl.data.hub import hub_model

    return Path(hub_model(config.checkpoint.source, config.checkpoint.revision))


BODIES = {"pretrain": pretrain_body, "finetune": finetune_body, "test": test_body}


def run_rank(params: dict[str, Any], group, report_to) -> dict[str, Any] | None:
    """One rank's part of a trial (the only one of a single-worker trial): the body, with a
    runtime whose reports go to `report_to` (Tune's or Ray Train's) and, from rank 0 alone, to
    the run directory. Returns rank 0's outcome (metrics, history, where each rank ran)."""
    import ray
    import torch

    from bertabl.training import TrialRuntime, release_gpu_memory, share_gpu

    resources = params["resources"]
    torch.set_num_threads(max(1, int(resources["cpus_per_worker"])))
    trial_id, stage = params["trial"]["id"], params["trial"]["stage"]
    config = params["trial"]["config"]
    store = RunStore(params["run_dir"])
    trial_dir = store.trial_dir(trial_id)
    here = {
        "rank": group.rank,
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "pid": os.getpid(),
        "device": str(group.device),
        "machine": describe_machine(str(group.device)),
    }
    workers = group.gather(here)
    outcome: dict[str, Any] = {"workers": workers}
    if group.is_main and group.world > 1:
        # Where the ranks run now, for whoever must find one (a person; the tests).
        atomic_write_json(trial_dir / "workers.json", workers)
        outcome["worker_group_starts"] = store.count_attempt(trial_id, "worker-group-starts")

    def report(metrics: dict[str, Any]) -> None:
        # No Tune/Train checkpoint: it would copy the directory into Ray's storage (the saved
        # model: 420 MB at BERT-Base size) while resuming uses our own checkpoints and
        # fine-tunes read the model from the run directory.
        if group.is_main:
            store.write_progress(trial_id, metrics)
        report_to(metrics)

    save_steps = tuple(params["save_steps"].get(trial_id, ()))
    # A finished pre-training runs again only for intermediate models it did not keep (a later
    # matrix asked for them): it saves the missing ones and nothing else, since the final model
    # and record are what finished fine-tunes read.
    intermediate_only = stage == "pretrain" and store.is_done(trial_id)
    if intermediate_only:
        save_steps = tuple(s for s in save_steps if not store.model_dir(trial_id, s).is_dir())
    runtime = TrialRuntime(
        device=group.device,
        report=report,
        checkpoints=checkpointer(store, trial_id, params) if group.is_main else None,
        checkpoint_every=params["checkpoint_every"],
        precision=params["precision"],
        deterministic=params.get("deterministic", False),
        workers=group.world,
        micro_batch_size=resources["micro_batch_size"],
        save_steps=save_steps,
        intermediate_only=intermediate_only,
        cache_dir=store.cache_dir,
    )
    share_gpu(group.device, resources["gpus_per_worker"])
    started = time.time()
    try:
        metrics = BODIES[stage](config, store, trial_dir, runtime, group)
    finally:
        release_gpu_memory(group.device)  # the next trial this process runs starts with none
    if not group.is_main:
        return None
    return outcome | {
        "intermediate_only": intermediate_only,
        "metrics": metrics,
        "history": runtime.history,
        "resumed_from": runtime.resumed_from,
        "body_seconds": time.time() - started,  # the rest of the trial's time is orchestration
    }


def checkpointer(store: RunStore, trial_id: str, params: dict[str, Any]):
    from bertabl.orchestrate.checkpoint import Checkpointer

    return Checkpointer(store.trial_dir(trial_id) / "checkpoints", keep=params["checkpoint_keep"])


def quiet_libraries() -> None:
    """Silence library progress bars and load reports: trial output is our metrics, not theirs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    logging.getLogger("datasets").setLevel(logging.ERROR)
