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
from bertabl.orchestrate.record import Record, Status, status_of
from bertabl.report.document import CellStatus
from bertabl.selection import best_index, select_model


@dataclass
class Cell:
    task: str
    metric: str
    status: CellStatus
    values: list[float] = field(default_factory=list)  # selected point's restarts, 0-1 scale
    restarts: list[int] = field(default_factory=list)  # restart index of each value (pairing)
    dev: list[float] = field(default_factory=list)  # each value's restart's dev score
    trial_of: list[str] = field(default_factory=list)  # each value's trial id
    grid_point: dict[str, Any] | None = None
    trial_ids: list[str] = field(default_factory=list)  # every trial behind the cell
    counts: dict[Status, int] = field(default_factory=dict)  # by record status, pending too
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
        best = best_index(self.dev)
        return None if best is None else self.values[best]

    @property
    def best_trial(self) -> str | None:
        """The trial of the restart best on dev (ties: the earlier restart)."""
        best = best_index(self.dev)
        return None if best is None else self.trial_of[best]

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


def build_table(plan: Plan, records: dict[str, Record], split: str = "dev") -> ResultTable:
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
    records: dict[str, Record],
    task: str,
    metric: str,
    split: str = "dev",
) -> Cell:
    """The cell for these trials: best grid point by mean dev `metric`, ties to the earliest
    (selection.py); its `split` scores (restarts without one are left out: e.g. no test split
    was evaluated)."""
    counts: dict[Status, int] = {}
    for trial in trials:
        status = status_of(records.get(trial.id))
        counts[status] = counts.get(status, 0) + 1
    cell = Cell(task, metric, CellStatus.PENDING, trial_ids=[t.id for t in trials], counts=counts)
    cell.seconds = sum(r.seconds for t in trials if (r := records.get(t.id)) is not None)
    selection = select_model(trials, records, metric)
    if selection.point is None:
        for status in (CellStatus.BLOCKED, CellStatus.FAILED):
            if counts.get(Status(status)):
                cell.status = status
        return cell
    cell.grid_point = dict(selection.point)
    restart_of = {t.id: t.restart for t in trials}
    for trial_id in selection.trials:
        record = records.get(trial_id)
        if status_of(record) in (Status.FAILED, Status.BLOCKED):
            cell.failed += 1
            continue
        dev = record.score(f"dev_{metric}") if record is not None else None
        if dev is None:
            continue
        if not math.isfinite(dev):
            cell.diverged += 1
            continue
        value = record.finite_score(f"{split}_{metric}")
        if value is not None:
            cell.values.append(value)
            cell.restarts.append(restart_of[trial_id])
            cell.dev.append(dev)
            cell.trial_of.append(trial_id)
    if not cell.values:
        cell.status = CellStatus.NO_SPLIT  # finished, but nothing was evaluated on `split`
        return cell
    cell.status = CellStatus.DONE if counts.get(Status.DONE) == len(trials) else CellStatus.PARTIAL
    return cell
