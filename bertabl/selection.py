"""The selection rule (the paper's): among a cell's grid points, the one whose mean dev score
over its finished restarts is highest (ties: the earlier grid point in matrix order). Used by
the report, and by the run to know which trials' models to keep and to score on test splits.

Works on trial records (dicts, as the run directory holds them), so it needs neither torch nor
a plan.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

Point = tuple[tuple[str, Any], ...]


def score(record: dict[str, Any] | None, key: str) -> float | None:
    """A finished trial's metric `key` (e.g. "dev_accuracy"), or None."""
    if not record or record["status"] != "done":
        return None
    value = record.get("metrics", {}).get(key)
    return float(value) if value is not None else None


def best_point(runs: Sequence[tuple[Point, dict[str, Any] | None]], metric: str) -> Point | None:
    """The grid point of (grid point, record) runs with the best mean finite dev `metric`;
    None when no run has one."""
    by_point: dict[Point, list[float]] = {}
    for point, record in runs:
        value = score(record, f"dev_{metric}")
        scores = by_point.setdefault(point, [])
        if value is not None and math.isfinite(value):
            scores.append(value)
    best, best_mean = None, -math.inf
    for point, scores in by_point.items():  # insertion order = grid order: strict > keeps the first
        if scores and statistics.fmean(scores) > best_mean:
            best, best_mean = point, statistics.fmean(scores)
    return best


def best_restart(records: Sequence[dict[str, Any] | None], metric: str) -> int | None:
    """Index of the record with the best finite dev `metric` (ties: the earlier), or None."""
    best, best_value = None, -math.inf
    for index, record in enumerate(records):
        value = score(record, f"dev_{metric}")
        if value is not None and math.isfinite(value) and value > best_value:
            best, best_value = index, value
    return best
