"""The selected model of a report cell, decided in one place (the paper's rule).

Among a cell's grid points, the one whose mean dev score over its finished restarts is highest
(ties: the earlier grid point in matrix order); of that point's restarts, the one best on dev
(ties: the earlier restart). The report shows the point's restarts, the run keeps their models
and scores them on test splits, and `bertabl export` and the GLUE submission write out the best
restart: all of them ask `select_model`.

Works on trial ids, grid points and records, so it needs neither torch nor a plan (a test-split
trial selects inside a Ray worker, from its records alone).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bertabl.orchestrate.record import Record
from bertabl.trial.finetune import GridPoint


class Candidate(Protocol):
    """A fine-tuning trial of a cell: a plan's FinetuneTrial, or a trial config."""

    @property
    def id(self) -> str: ...
    @property
    def grid_point(self) -> GridPoint: ...


@dataclass(frozen=True)
class Selection:
    """What selection picked in one cell."""

    point: GridPoint | None  # None: no trial of the cell has a finite dev score yet
    trials: tuple[str, ...]  # the selected point's trials (its restarts), in plan order
    best: str | None  # the restart best on dev: the cell's model


def select_model(
    candidates: Iterable[Candidate], records: Mapping[str, Record | None], metric: str
) -> Selection:
    """The selected grid point of a cell's trials (`candidates`, in plan order) on dev `metric`,
    its restarts, and the best of them on dev."""
    key = f"dev_{metric}"
    by_point: dict[GridPoint, list[tuple[str, float | None]]] = {}
    for trial in candidates:
        record = records.get(trial.id)
        dev = record.finite_score(key) if record is not None else None
        by_point.setdefault(trial.grid_point, []).append((trial.id, dev))
    point, best_mean = None, None
    for candidate, runs in by_point.items():  # grid order: a strict > keeps the earlier point
        scores = [dev for _, dev in runs if dev is not None]
        if scores and (best_mean is None or statistics.fmean(scores) > best_mean):
            point, best_mean = candidate, statistics.fmean(scores)
    if point is None:
        return Selection(None, (), None)
    runs = by_point[point]
    best = best_index([dev for _, dev in runs])
    return Selection(point, tuple(i for i, _ in runs), None if best is None else runs[best][0])


def best_index(dev_scores: Sequence[float | None]) -> int | None:
    """Index of the highest dev score (ties: the earlier; None entries are skipped), or None."""
    best = None
    for index, value in enumerate(dev_scores):
        if value is not None and (best is None or value > dev_scores[best]):
            best = index
    return best
