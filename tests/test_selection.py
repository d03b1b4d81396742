"""The selected model of a cell (selection.py), on hand-made records with hand-computed answers."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bertabl.selection import Selection, best_index, select_model
from tests.conftest import make_record

LOW = (("batch_size", 16), ("learning_rate", 1e-3))
HIGH = (("batch_size", 16), ("learning_rate", 3e-3))


@dataclass(frozen=True)
class Trial:
    id: str
    grid_point: tuple


def _cell(scores: dict[str, tuple[tuple, float | str | None]]):
    """Trials in plan order and their records: id -> (grid point, dev accuracy, a status, or
    None for no record)."""
    trials = [Trial(i, point) for i, (point, _) in scores.items()]
    records = {}
    for trial_id, (_, score) in scores.items():
        if isinstance(score, str):
            records[trial_id] = make_record(trial_id, score)
        elif score is not None:
            records[trial_id] = make_record(trial_id, metrics={"dev_accuracy": score})
    return trials, records


def test_the_point_with_the_best_mean_and_its_best_restart():
    # LOW: 0.70, 0.90 (mean 0.80); HIGH: 0.85, 0.74 (mean 0.795). The best single restart
    # (0.90) and the best mean are LOW's: its restart b is the model.
    trials, records = _cell(
        {"a": (LOW, 0.70), "b": (LOW, 0.90), "c": (HIGH, 0.85), "d": (HIGH, 0.74)}
    )
    assert select_model(trials, records, "accuracy") == Selection(LOW, ("a", "b"), "b")


def test_the_mean_decides_not_the_best_single_restart():
    # LOW: 0.95, 0.55 (mean 0.75); HIGH: 0.80, 0.78 (mean 0.79): HIGH, though 0.95 is LOW's.
    trials, records = _cell(
        {"a": (LOW, 0.95), "b": (LOW, 0.55), "c": (HIGH, 0.80), "d": (HIGH, 0.78)}
    )
    selected = select_model(trials, records, "accuracy")
    assert (selected.point, selected.best) == (HIGH, "c")


def test_ties_go_to_the_earlier_point_and_the_earlier_restart():
    trials, records = _cell(
        {"a": (LOW, 0.80), "b": (LOW, 0.80), "c": (HIGH, 0.90), "d": (HIGH, 0.70)}
    )
    assert select_model(trials, records, "accuracy") == Selection(LOW, ("a", "b"), "a")


def test_failed_pending_and_diverged_restarts_are_left_out_of_the_mean():
    # LOW: one finished 0.60, one failed, one NaN (diverged); HIGH: 0.59 and pending.
    # LOW's mean is 0.60 over its one finite score; HIGH's 0.59: LOW, its model restart a.
    trials, records = _cell(
        {
            "a": (LOW, 0.60),
            "b": (LOW, "failed"),
            "c": (LOW, math.nan),
            "d": (HIGH, 0.59),
            "e": (HIGH, None),
        }
    )
    assert select_model(trials, records, "accuracy") == Selection(LOW, ("a", "b", "c"), "a")


def test_nothing_finished_selects_nothing():
    trials, records = _cell({"a": (LOW, "failed"), "b": (LOW, None), "c": (HIGH, math.inf)})
    assert select_model(trials, records, "accuracy") == Selection(None, (), None)
    assert select_model([], {}, "accuracy") == Selection(None, (), None)


def test_a_record_without_the_metric_is_not_a_score():
    trials = [Trial("a", LOW), Trial("b", HIGH)]
    records = {
        "a": make_record("a", metrics={"dev_f1": 0.99}),
        "b": make_record("b", metrics={"dev_accuracy": 0.5}),
    }
    assert select_model(trials, records, "accuracy").point == HIGH
    assert select_model(trials, records, "f1") == Selection(LOW, ("a",), "a")


def test_best_index_is_the_first_highest_score():
    assert best_index([0.2, 0.9, 0.9, None]) == 1
    assert best_index([None, 0.1]) == 1
    assert best_index([None, None]) is None
    assert best_index([]) is None
