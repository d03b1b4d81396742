"""One rank's part of a trial: the trial body with its runtime, in the Tune trial's process (a
single-worker trial) or in each Ray Train worker of a data-parallel one (train_workers.py).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertabl.io import atomic_write_json
from bertabl.machine import describe_machine
from bertabl.orchestrate.params import TrialParams
from bertabl.orchestrate.record import Outcome, Worker
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
    from bertabl.selection import select_model
    from bertabl.trial.finetune import FinetuneTrialConfig

    records = {i: r for i in config.trials if (r := store.record(i)) is not None}
    trials = [Trial(i, FinetuneTrialConfig.model_validate(r.config)) for i, r in records.items()]
    chosen = select_model(trials, records, config.metric)
    scores: dict[str, Any] = {"grid_point": dict(chosen.point or ()), "trials": {}}
    for trial in trials:
        if trial.id not in chosen.trials or not records[trial.id].done:
            continue
        trial_dir = store.trial_dir(trial.id)
        scored = score_kept(
            trial.config, model_folder(trial.config, store), trial_dir, config.splits, runtime
        )
        extra = {f"{s}_{k}": v for s, r in scored.items() for k, v in r.metrics.items()}
        store.update_metrics(trial.id, extra)  # test_<metric> beside dev_<metric>
        scores["trials"][trial.id] = extra
    return scores


@dataclass(frozen=True)
class Trial:
    """A cell's fine-tune as its test-split trial knows it: the id and config of its record."""

    id: str
    config: Any  # FinetuneTrialConfig

    @property
    def grid_point(self):
        return self.config.grid_point


def model_folder(config, store: RunStore) -> Path:
    """The model a fine-tune starts from: its pre-training trial's, or its checkpoint's."""
    if config.checkpoint is None:
        return store.model_dir(config.pretrain_id, config.pretrain_step)
    if config.checkpoint.location is not None:
        return Path(config.checkpoint.location)
    from bertabl.data.hub import hub_model

    return Path(hub_model(config.checkpoint.source, config.checkpoint.revision))


BODIES = {"pretrain": pretrain_body, "finetune": finetune_body, "test": test_body}


def run_rank(params: TrialParams, group, report_to) -> Outcome | None:
    """One rank's part of a trial (the only one of a single-worker trial): the body, with a
    runtime whose reports go to `report_to` (Tune's or Ray Train's) and, from rank 0 alone, to
    the run directory. Returns rank 0's outcome (metrics, history, where each rank ran)."""
    import ray
    import torch

    from bertabl.training import TrialRuntime, release_gpu_memory, share_gpu

    resources, run = params.resources, params.run
    torch.set_num_threads(max(1, int(resources.cpus_per_worker)))
    trial_id, stage, config = params.id, params.stage, params.config
    store = RunStore(run.run_dir)
    trial_dir = store.trial_dir(trial_id)
    here = Worker(
        rank=group.rank,
        node_id=ray.get_runtime_context().get_node_id(),
        node_ip=ray.util.get_node_ip_address(),
        pid=os.getpid(),
        device=str(group.device),
        machine=describe_machine(str(group.device)),
    )
    outcome = Outcome(workers=group.gather(here))
    if group.is_main and group.world > 1:
        # Where the ranks run now, for whoever must find one (a person; the tests).
        atomic_write_json(trial_dir / "workers.json", [w.model_dump() for w in outcome.workers])
        outcome.worker_group_starts = store.count_attempt(trial_id, "worker-group-starts")

    def report(metrics: dict[str, Any]) -> None:
        # No Tune/Train checkpoint: it would copy the directory into Ray's storage (the saved
        # model: 420 MB at BERT-Base size) while resuming uses our own checkpoints and
        # fine-tunes read the model from the run directory.
        if group.is_main:
            store.write_progress(trial_id, metrics)
        report_to(metrics)

    save_steps = params.save_steps
    # A finished pre-training runs again only for intermediate models it did not keep (a later
    # matrix asked for them): it saves the missing ones and nothing else, since the final model
    # and record are what finished fine-tunes read.
    intermediate_only = stage == "pretrain" and store.is_done(trial_id)
    if intermediate_only:
        save_steps = tuple(s for s in save_steps if not store.model_dir(trial_id, s).is_dir())
    runtime = TrialRuntime(
        device=group.device,
        report=report,
        checkpoints=checkpointer(store, params) if group.is_main else None,
        checkpoint_every=run.checkpoint_every,
        precision=run.precision,
        deterministic=run.deterministic,
        workers=group.world,
        micro_batch_size=resources.micro_batch_size,
        save_steps=save_steps,
        intermediate_only=intermediate_only,
        cache_dir=store.cache_dir,
    )
    share_gpu(group.device, resources.gpus_per_worker)
    started = time.time()
    try:
        metrics = BODIES[stage](config, store, trial_dir, runtime, group)
    finally:
        release_gpu_memory(group.device)  # the next trial this process runs starts with none
    if not group.is_main:
        return None
    outcome.intermediate_only = intermediate_only
    outcome.metrics, outcome.history = metrics, runtime.history
    outcome.resumed_from = runtime.resumed_from
    outcome.body_seconds = time.time() - started  # the rest of the trial's time: orchestration
    return outcome


def checkpointer(store: RunStore, params: TrialParams):
    from bertabl.orchestrate.checkpoint import Checkpointer

    folder = store.trial_dir(params.id) / "checkpoints"
    return Checkpointer(folder, keep=params.run.checkpoint_keep)


def quiet_libraries() -> None:
    """Silence library progress bars and load reports: trial output is our metrics, not theirs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    logging.getLogger("datasets").setLevel(logging.ERROR)
