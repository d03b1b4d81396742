"""Where every trial of a run stands: done / failed / blocked / running / interrupted / pending."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bertabl.matrix.cells import trial_words
from bertabl.matrix.plan import Plan
from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.orchestrate.record import Status
from bertabl.orchestrate.store import RunStore
from bertabl.trial.finetune import FinetuneConfig, TestTrialConfig
from bertabl.trial.pretrain import PretrainTrialConfig

TrialConfig = PretrainTrialConfig | FinetuneConfig | TestTrialConfig
# How `bertabl status` colours each state (others: white).
STATE_COLOURS = {
    Status.DONE: "green",
    Status.FAILED: "red",
    Status.BLOCKED: "yellow",
    Status.RUNNING: "cyan",
}


@dataclass
class TrialStatus:
    id: str
    stage: str
    what: str
    state: Status
    progress: str
    checkpoint_age: float | None  # seconds since the newest checkpoint was written
    attempts: int
    error: str | None


def trial_statuses(plan: Plan, store: RunStore) -> list[TrialStatus]:
    """The state of each planned trial, read from the run directory alone."""
    active = store.is_locked()
    now = time.time()
    words = trial_words(plan)
    statuses = []
    for trial in [*plan.pretrain, *plan.finetune, *plan.tests]:
        record = store.record(trial.id)
        progress = store.progress(trial.id)
        checkpoints = Checkpointer(store.trial_dir(trial.id) / "checkpoints").paths()
        if record is not None:
            state, metrics = record.status, record.metrics
        else:
            started = progress is not None or bool(checkpoints)
            state = Status.PENDING
            if started:
                state = Status.RUNNING if active else Status.INTERRUPTED
            metrics = progress.metrics if progress else {}
        age = now - checkpoints[-1].stat().st_mtime if checkpoints else None
        statuses.append(
            TrialStatus(
                id=trial.id,
                stage=trial.config.stage,
                what=words[trial.id],
                state=state,
                progress=metric_line(trial.config, metrics) if metrics else "",
                checkpoint_age=age,
                attempts=store.attempts(trial.id),
                error=record.error if record else None,
            )
        )
    return statuses


def metric_line(config: TrialConfig, metrics: dict[str, Any]) -> str:
    """A trial's position and latest metric in one line: `step 100/500  loss 2.345 ...`."""
    if isinstance(config, TestTrialConfig):
        scored = metrics.get("trials", {})
        return f"{len(scored)} selected model(s) scored on {', '.join(config.splits)}"
    if isinstance(config, PretrainTrialConfig):
        line = f"step {metrics.get('step', 0)}/{config.pretrain.steps}"
        line += f"  loss {metrics.get('loss', float('nan')):.3f}"
        if "nsp_acc" in metrics:
            line += f"  nsp_acc {metrics['nsp_acc']:.3f}"
        return line
    dev = {k: v for k, v in metrics.items() if k.startswith("dev_")}
    scores = "  ".join(f"{k} {v:.3f}" for k, v in dev.items())
    return f"epoch {metrics.get('epoch', 0)}/{config.epochs}  {scores}"
