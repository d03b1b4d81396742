"""A cell against its baseline row: the paired test the report marks cells with, and the
variation behind it, which report/power.py turns into what the comparison could detect."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bertabl.matrix.plan import Plan
from bertabl.report import power
from bertabl.report.power import (
    BOOTSTRAP,
    POWER,
    SIGN_FLIP,
    Z_TEST,
    Variation,
)
from bertabl.report.select import Cell
from bertabl.report.significance import paired_bootstrap
from bertabl.report.stats import ALPHA, paired_sign_flip_p
from bertabl.tasks.evaluate_metric import evaluate_keys

# A trial's predictions on a split (the lines of trials/<id>/predictions/<split>.jsonl), or None
Predictions = Callable[[str, str], list[dict[str, Any]] | None]


@dataclass(frozen=True)
class Comparison:
    test: str  # power.BOOTSTRAP (per example) | power.SIGN_FLIP (over restart scores)
    p: float | None  # None: fewer than 2 paired restarts for the sign flip
    difference_ci: tuple[float, float] | None  # the bootstrap's 95% interval, 0-1 scale
    variation: Variation | None  # None: too few paired restarts to tell
    difference: float | None = None  # observed: the mean over paired restarts, 0-1 scale

    @property
    def mde(self) -> float | None:
        """The minimum detectable effect (0-1 scale; report/power.py), None where unknown or
        where the test can mark nothing."""
        return self.variation and self.variation.mde()

    @property
    def false_marks(self) -> float | None:
        """Where restart noise alone earns marks (Variation.unreliable): how often the test
        would mark a comparison with no true difference; else None."""
        if self.variation is None or not self.variation.unreliable():
            return None
        return self.variation.false_marks()


def compare(
    plan: Plan, cell: Cell, base: Cell, split: str, predictions: Predictions
) -> Comparison | None:
    """`cell` against `base` on `split`, paired by restart (restart i of both rows fine-tuned
    with the same seed): per example when both rows' predictions on the split are kept, else
    over restart scores. None when they share no finished restart."""
    ours = dict(zip(cell.restarts, cell.trial_of, strict=True))
    theirs = dict(zip(base.restarts, base.trial_of, strict=True))
    shared = sorted(set(ours) & set(theirs))
    if not shared:
        return None
    lines = [(predictions(ours[i], split), predictions(theirs[i], split)) for i in shared]
    if not from_evaluate(plan, cell) and all(a is not None and b is not None for a, b in lines):
        spec = plan.matrix.spec(cell.task)
        test = paired_bootstrap(spec, cell.metric, [a for a, _ in lines], [b for _, b in lines])
        if test is None:  # the rows' predictions are on different examples: nothing pairs up
            return Comparison(BOOTSTRAP, None, None, None)
        bounded = spec.family != "regression" and cell.metric != "matthews_corr"
        variation = power.from_bootstrap(test, bounded)
        difference = sum(test.per_restart) / len(test.per_restart)
        return Comparison(BOOTSTRAP, test.p, (test.low, test.high), variation, difference)
    values, base_values = cell.by_restart(), base.by_restart()
    differences = [values[i] - base_values[i] for i in shared]
    p = paired_sign_flip_p([values[i] for i in shared], [base_values[i] for i in shared])
    difference = sum(differences) / len(differences)
    return Comparison(SIGN_FLIP, p, None, power.from_restarts(differences), difference)


def from_evaluate(plan: Plan, cell: Cell) -> bool:
    """The cell's metric is an `evaluate` module's (a custom task's): report/significance.py
    has no per-example definition of it, so its restarts are compared by their scores."""
    return cell.metric in evaluate_keys(plan.matrix.spec(cell.task).custom)


def detection_note(comparison: Comparison) -> str | None:
    """The footnote a compared cell gets: what an unmarked one could have detected; for a
    marked one, a warning where restart noise alone earns marks at this design and could
    explain its difference: within z_0.975 standard errors of 0, the error counting the
    restarts' spread (None: nothing to say)."""
    if comparison.p is None:
        return None
    if comparison.p >= ALPHA:
        if comparison.mde is None:
            if comparison.variation is None:
                return None
            return (
                "no difference detected; this design detects none: without per-example "
                "predictions, 5 or fewer restarts cannot reach p < 0.05"
            )
        return f"no difference detected; this design detects ≥ {100 * comparison.mde:.1f} points"
    marks, variation = comparison.false_marks, comparison.variation
    if marks is None or abs(comparison.difference) >= Z_TEST * variation.se_total():
        return None
    return (
        "marked, but restart noise could explain it: its restarts disagree beyond the "
        "per-example test's spread, and with no true difference this design would mark "
        f"{100 * marks:.0f}% of comparisons (`bertabl power` gives the restarts a difference "
        "needs to stand out from them)"
    )


def mde_rule(baseline_label: str, tests_used: set[str]) -> str:
    """The report's paragraph on the MDE, for the tests its cells were compared with."""
    how = []
    if BOOTSTRAP in tests_used:
        how.append(
            "from this run's per-example and per-restart variation (a normal approximation "
            "over the bootstrap's own resamples, checked against simulated runs)"
        )
    if SIGN_FLIP in tests_used:
        how.append(
            "where no predictions were kept, from the spread of the restarts' differences "
            "(simulating the sign-flip test: none with 5 or fewer restarts)"
        )
    return (
        f'MDE (Cells in detail; "detects ≥ x points" under unmarked cells): the smallest '
        f"true difference to {baseline_label} that the test above marks, the right way round, "
        f"in {POWER:.0%} of runs like this one (new dev examples and restart seeds), "
        f"{'; '.join(how)}. `bertabl power RUN_DIR --effect D` says how many restarts a "
        "difference of D points needs."
    )


__all__ = [
    "BOOTSTRAP",
    "SIGN_FLIP",
    "Comparison",
    "compare",
    "detection_note",
    "from_evaluate",
    "mde_rule",
]
