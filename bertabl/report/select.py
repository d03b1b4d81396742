"""Selection and aggregation: for each (variant, task) cell, the best grid point on dev.

Rule (the paper's): among the grid points, pick the one whose *mean* dev score over its finished
restarts is highest (ties -> the earlier grid point in matrix order, so the choice is
deterministic); report that point's mean and sample standard deviation (ddof=1) over restarts,
and its best restart. Every restart is kept; none is dropped as an outlier.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bertabl.matrix.plan import FinetuneTrial, Plan, Row


@dataclass
class Cell:
    task: str
    metric: str
    status: str  # "done" | "partial" (some restarts missing) | "pending" | "failed" | "blocked"
    values: list[float] = field(default_factory=list)  # selected point's restarts, 0-1 scale
    grid_point: dict[str, Any] | None = None
    trial_ids: list[str] = field(default_factory=list)  # every trial behind the cell
    counts: dict[str, int] = field(default_factory=dict)  # by record status, "pending" too

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def best(self) -> float | None:
        return max(self.values) if self.values else None


@dataclass
class ResultTable:
    rows: list[Row]
    tasks: list[str]
    metrics: dict[str, str]  # task -> selection metric
    cells: dict[tuple[str, str], Cell]  # (row name, task) -> cell

    def cell(self, row: Row, task: str) -> Cell:
        return self.cells[(row.name, task)]


def build_table(plan: Plan, records: dict[str, dict[str, Any]]) -> ResultTable:
    """Select and aggregate every cell of the plan from the run's records."""
    tasks = list(plan.matrix.finetune.tasks)
    metrics = {task: plan.matrix.finetune.metric_for(task) for task in tasks}
    cells = {
        (row.name, task): select_cell(plan.cell(row, task), records, task, metrics[task])
        for row in plan.rows
        for task in tasks
    }
    return ResultTable(plan.rows, tasks, metrics, cells)


def select_cell(
    trials: list[FinetuneTrial], records: dict[str, dict[str, Any]], task: str, metric: str
) -> Cell:
    """The cell for these trials: best grid point by mean dev `metric`, ties to the earliest."""
    counts: dict[str, int] = {}
    by_point: dict[tuple, list[float]] = {}
    for trial in trials:
        record = records.get(trial.id)
        status = record["status"] if record else "pending"
        counts[status] = counts.get(status, 0) + 1
        if status == "done":
            by_point.setdefault(trial.grid_point, []).append(record["metrics"][f"dev_{metric}"])
    cell = Cell(task, metric, "pending", trial_ids=[t.id for t in trials], counts=counts)
    if not by_point:
        for status in ("blocked", "failed"):
            if counts.get(status):
                cell.status = status
        return cell
    best_point = None
    best_mean = float("-inf")
    for point, values in by_point.items():  # dict order = grid order: strict > keeps the first
        mean = statistics.fmean(values)
        if mean > best_mean:
            best_point, best_mean = point, mean
    cell.values = by_point[best_point]
    cell.grid_point = dict(best_point)
    cell.status = "done" if counts.get("done") == len(trials) else "partial"
    return cell
