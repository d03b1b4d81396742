"""Selection and aggregation: for each (row, task) cell, the best grid point on dev.

Rule (the paper's): among the grid points, pick the one whose *mean* dev score over its finished
restarts is highest (ties -> the earlier grid point in matrix order, so the choice is
deterministic); report that point's mean, sample standard deviation (ddof=1) and median over
restarts, and its best restart. Every finished restart is kept; none is dropped as an outlier.
A restart whose score is not finite (NaN/inf: the run diverged) is counted as diverged and left
out of the mean, as is a failed one; both counts are reported beside the cell.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from bertabl.matrix.cells import cell_trials
from bertabl.matrix.plan import FinetuneTrial, Plan, Row
from bertabl.selection import best_point
from bertabl.selection import score as _score


@dataclass
class Cell:
    task: str
    metric: str
    status: str  # "done" | "partial" (some restarts missing) | "pending" | "failed" | "blocked"
    values: list[float] = field(default_factory=list)  # selected point's restarts, 0-1 scale
    restarts: list[int] = field(default_factory=list)  # restart index of each value (pairing)
    dev: list[float] = field(default_factory=list)  # each value's restart's dev score
    trial_of: list[str] = field(default_factory=list)  # each value's trial id
    grid_point: dict[str, Any] | None = None
    trial_ids: list[str] = field(default_factory=list)  # every trial behind the cell
    counts: dict[str, int] = field(default_factory=dict)  # by record status, "pending" too
    failed: int = 0  # restarts of the selected grid point that failed or were blocked
    diverged: int = 0  # restarts of the selected grid point with a non-finite score
    seconds: float = 0.0  # wall time of the cell's finished trials (all grid points)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def best(self) -> float | None:
        """The value of the restart best on dev (on dev itself: the best restart)."""
        if not self.values:
            return None
        return self.values[max(range(len(self.dev)), key=lambda i: (self.dev[i], -i))]

    @property
    def best_trial(self) -> str | None:
        """The trial of the restart best on dev (ties: the earlier restart)."""
        if not self.values:
            return None
        return self.trial_of[max(range(len(self.dev)), key=lambda i: (self.dev[i], -i))]

    def headline(self, restarts: str) -> float | None:
        """What the cell shows: the mean over restarts, or the best-on-dev restart's value."""
        return self.best if restarts == "best" else self.mean

    def by_restart(self) -> dict[int, float]:
        return dict(zip(self.restarts, self.values, strict=True))


@dataclass
class ResultTable:
    rows: list[Row]
    tasks: list[str]
    metrics: dict[str, str]  # task -> selection metric
    cells: dict[tuple[str, str], Cell]  # (row name, task) -> cell

    def cell(self, row: Row, task: str) -> Cell:
        return self.cells[(row.name, task)]


def build_table(plan: Plan, records: dict[str, dict[str, Any]], split: str = "dev") -> ResultTable:
    """Select and aggregate every cell of the plan; `split` is the split whose score is shown
    (the grid point is always chosen on dev)."""
    tasks = list(plan.matrix.finetune.tasks)
    metrics = {task: plan.matrix.metric_for(task) for task in tasks}
    cells = {
        (row.name, task): select_cell(
            cell_trials(plan, row, task), records, task, metrics[task], split
        )
        for row in plan.rows
        for task in tasks
    }
    return ResultTable(plan.rows, tasks, metrics, cells)


def select_cell(
    trials: list[FinetuneTrial],
    records: dict[str, dict[str, Any]],
    task: str,
    metric: str,
    split: str = "dev",
) -> Cell:
    """The cell for these trials: best grid point by mean dev `metric`, ties to the earliest;
    its `split` scores (restarts without one are left out: e.g. no test split was evaluated)."""
    counts: dict[str, int] = {}
    by_point: dict[tuple, list[tuple[FinetuneTrial, dict[str, Any] | None]]] = {}
    seconds = 0.0
    for trial in trials:
        record = records.get(trial.id)
        status = record["status"] if record else "pending"
        counts[status] = counts.get(status, 0) + 1
        if record and status == "done":
            seconds += record.get("timings", {}).get("seconds", 0.0)
        by_point.setdefault(trial.grid_point, []).append((trial, record))
    cell = Cell(task, metric, "pending", trial_ids=[t.id for t in trials], counts=counts)
    cell.seconds = seconds
    point = best_point([(t.grid_point, records.get(t.id)) for t in trials], metric)
    if point is None:
        for status in ("blocked", "failed"):
            if counts.get(status):
                cell.status = status
        return cell
    cell.grid_point = dict(point)
    for trial, record in by_point[point]:
        status = record["status"] if record else "pending"
        if status in ("failed", "blocked"):
            cell.failed += 1
            continue
        if _score(record, f"dev_{metric}") is None:
            continue
        if not math.isfinite(_score(record, f"dev_{metric}")):
            cell.diverged += 1
            continue
        value = _score(record, f"{split}_{metric}")
        if value is not None and math.isfinite(value):
            cell.values.append(value)
            cell.restarts.append(trial.restart)
            cell.dev.append(_score(record, f"dev_{metric}"))
            cell.trial_of.append(trial.id)
    if not cell.values:
        cell.status = "no_split"  # finished, but nothing was evaluated on `split`
        return cell
    cell.status = "done" if counts.get("done") == len(trials) else "partial"
    return cell
