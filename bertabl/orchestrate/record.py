"""A trial's record, typed: what `record.json` holds (the run store writes and reads it; every
other module reads attributes, never keys), where a trial stands (`Status`), and what a trial
body hands back to be recorded (`Outcome`).

The JSON on disk is unchanged: the field names are its keys, `Status` is str-valued, and keys
this version does not know (written by an older or newer bertabl) are kept as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class Status(StrEnum):
    """Where a trial stands. A record holds DONE, FAILED or BLOCKED; the others describe a
    trial without one: PENDING (not started), RUNNING or INTERRUPTED (started: progress or
    checkpoints exist, and a `bertabl run` holds the run directory, or none does)."""

    DONE = "done"
    FAILED = "failed"
    BLOCKED = "blocked"
    PENDING = "pending"
    RUNNING = "running"
    INTERRUPTED = "interrupted"


class _Kept(BaseModel):
    """Keys another bertabl version wrote stay in the record when it is rewritten."""

    model_config = ConfigDict(extra="allow")


class Timings(_Kept):
    """When and how long a trial ran (a failed trial's record holds only `attempt`)."""

    started: float | None = None
    finished: float | None = None
    seconds: float | None = None  # wall time of the trial, start to record
    resumed_from_step: int | None = None
    attempt: int | None = None  # which start this was, from 1
    body_seconds: float | None = None  # of the last (re)start of its workers
    worker_group_starts: int | None = None  # data-parallel trials only


class Worker(_Kept):
    """Where one rank of a trial ran (records of older versions may lack what came later)."""

    rank: int
    node_id: str | None = None
    node_ip: str | None = None
    pid: int | None = None
    device: str | None = None
    machine: str | None = None  # records before bertabl described the machine have none


class Record(_Kept):
    """One trial's result, as `record.json` holds it."""

    id: str
    stage: str  # "pretrain" | "finetune" | "test"
    status: Status
    config: dict[str, Any]  # the trial config's JSON dump (trial/*.py validate it)
    metrics: dict[str, Any] = {}
    history: list[dict[str, Any]] = []  # one entry per log step (pre-training) or epoch
    timings: Timings = Timings()
    error: str | None = None
    workers: list[Worker] = []
    written_at: float = 0.0

    @property
    def done(self) -> bool:
        return self.status is Status.DONE

    def score(self, key: str) -> float | None:
        """A finished trial's metric `key` (e.g. "dev_accuracy"), or None."""
        value = self.metrics.get(key) if self.done else None
        return float(value) if value is not None else None

    def finite_score(self, key: str) -> float | None:
        """`score(key)` when it is a finite number (not a diverged NaN/inf), else None."""
        value = self.score(key)
        return value if value is not None and math.isfinite(value) else None

    @property
    def seconds(self) -> float:
        """Wall seconds of a finished trial (0 for any other, or when not measured)."""
        return float(self.timings.seconds or 0.0) if self.done else 0.0

    def to_json(self) -> dict[str, Any]:
        """The record's JSON: the keys it was made or read with (none added at their default)."""
        return self.model_dump(exclude_unset=True)  # python mode: a NaN stays NaN, not null


def status_of(record: Record | None) -> Status:
    """A planned trial's status from its record: PENDING when it has none."""
    return record.status if record is not None else Status.PENDING


class Progress(_Kept):
    """A running trial's latest metrics (`progress.json`, read by `bertabl status`)."""

    metrics: dict[str, Any]
    written_at: float


@dataclass
class Outcome:
    """What a trial's rank 0 hands back for its record: the body's metrics and history, where
    each rank ran, and how this start went."""

    workers: list[Worker]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None  # the step its checkpoint resumed from; None = the start
    body_seconds: float = 0.0
    intermediate_only: bool = False  # it only saved intermediate models: no new record
    worker_group_starts: int | None = None  # data-parallel trials: starts of the worker group
