"""Does the report's MDE mean what it says? Estimated vs measured detection rates on planted runs.

    python -m bench.power                  # the settings below, 400 simulated runs each
    python -m bench.power --runs 1000      # tighter (binomial error ~1.3 points at 80%)

Not a timing benchmark: the claim it checks is report/power.py's, "a true difference of MDE
points is marked by the report's test (p < 0.05, right sign) in 80% of runs". For each setting
it simulates runs of a cell and its baseline with a planted true difference and known example
and restart noise, runs the report's own test on each (significance.paired_bootstrap), and
prints the share of runs it marked beside the share report/power.py predicts from the runs'
observed variation: pooled over the runs (the estimator's answer without its sampling error),
and the median and 10-90% range of single runs' estimates (what one pilot run would say).
Then it plants the pooled MDE itself and measures the rate there (should be ~80%).

The planted run (accuracy of a binary task): example i has a baseline chance q_i ~ U(0.35,
0.65) of being right; the cell's is q_i + d + delta_i + s_r, delta_i ~ U(-a, a) per example
(rows differ per example), s_r ~ U(-b, b) per restart (a seed that helps or hurts every
example); in restart r both rows draw their outcome from the same uniform with probability
`shared` (the same seed and example order make them err alike), else independently. No
chance leaves [0, 1], so the true difference over examples and seeds is exactly d.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np

from bertabl.report.power import Variation, from_bootstrap
from bertabl.report.significance import paired_bootstrap
from bertabl.report.stats import ALPHA
from bertabl.tasks.builtin import BUILT_IN

SPEC = BUILT_IN["mrpc"]  # a binary classification task: labels "0", "1"


@dataclass(frozen=True)
class Setting:
    examples: int = 300
    restarts: int = 5
    effect: float = 0.03  # the planted true difference, 0-1 scale
    example_spread: float = 0.1  # a: delta_i ~ U(-a, a)
    restart_spread: float = 0.0  # b: s_r ~ U(-b, b)
    shared: float = 0.8  # how often a pair's outcomes come from the same uniform
    metric: str = "accuracy"
    ceiling: bool = False  # the cell right on every example, the baseline wrong on a fixed set

    def describe(self) -> str:
        if self.ceiling:
            return f"n={self.examples} R={self.restarts} {self.metric} at 100%"
        return (
            f"n={self.examples} R={self.restarts} {self.metric} a={self.example_spread:g} "
            f"b={self.restart_spread:g}"
        )


def planted_run(setting: Setting, rng: np.random.Generator) -> tuple[list, list]:
    """(the cell's, the baseline's) predictions-file lines, one list per restart."""
    n = setting.examples
    gold = rng.integers(0, 2, n)
    if setting.ceiling:  # rows at the ceiling: a difference is the baseline's own few errors
        right, wrong = np.ones(n, bool), rng.uniform(size=n) < setting.effect
        restarts = setting.restarts
        return [_lines(gold, right)] * restarts, [_lines(gold, ~wrong)] * restarts
    q = rng.uniform(0.35, 0.65, n)
    delta = rng.uniform(-setting.example_spread, setting.example_spread, n)
    ours, theirs = [], []
    for _ in range(setting.restarts):
        shift = rng.uniform(-setting.restart_spread, setting.restart_spread)
        uniform = rng.uniform(size=n)
        own = np.where(rng.uniform(size=n) < setting.shared, uniform, rng.uniform(size=n))
        ours.append(_lines(gold, uniform < q + setting.effect + delta + shift))
        theirs.append(_lines(gold, own < q))
    return ours, theirs


def _lines(gold: np.ndarray, right: np.ndarray) -> list[dict]:
    predicted = np.where(right, gold, 1 - gold)
    return [
        {"index": i, "prediction": str(p), "label": str(g)}
        for i, (p, g) in enumerate(zip(predicted, gold, strict=True))
    ]


@dataclass(frozen=True)
class Outcome:
    marked: float  # share of runs the test marked at p < ALPHA with the right sign
    runs: int
    effect: float  # the planted difference
    pooled: Variation  # the runs' estimated variation components, averaged
    estimates: list[float]  # each run's own estimate of the power at the planted effect

    @property
    def binomial_error(self) -> float:
        """The standard error of `marked` as an estimate of the true rate."""
        rate = self.predicted
        return (rate * (1 - rate) / self.runs) ** 0.5

    @property
    def predicted(self) -> float:
        """What report/power.py predicts from the pooled variation: the power at the planted
        difference, or with none planted, the share of false marks."""
        if self.effect == 0:
            return self.pooled.false_marks()
        return self.pooled.power(self.effect)


def simulate(setting: Setting, runs: int, seed: int = 0, resamples: int = 1000) -> Outcome:
    """`runs` planted runs through the report's test: how often it marks the effect, and what
    report/power.py estimates from each run's variation."""
    rng = np.random.default_rng(seed)
    marked, variations = 0, []
    for _ in range(runs):
        ours, theirs = planted_run(setting, rng)
        test = paired_bootstrap(SPEC, setting.metric, ours, theirs, resamples)
        # with a planted difference, marks the right way round count; with none, any mark
        marked += test.p < ALPHA and (sum(test.per_restart) > 0 or setting.effect == 0)
        variations.append(from_bootstrap(test, bounded=True))
    pooled = replace(
        variations[0],
        example=statistics.fmean(v.example for v in variations),
        interaction=statistics.fmean(v.interaction for v in variations),
        restart=statistics.fmean(v.restart for v in variations),
    )
    estimates = [
        v.false_marks() if setting.effect == 0 else v.power(setting.effect) for v in variations
    ]
    return Outcome(marked / runs, runs, setting.effect, pooled, estimates)


SETTINGS = [
    Setting(effect=0.02),
    Setting(effect=0.04),
    Setting(effect=0.03, restart_spread=0.05),
    Setting(effect=0.0, restart_spread=0.1),
    Setting(effect=0.06, restart_spread=0.1, restarts=10),
    Setting(effect=0.04, examples=500, restarts=3, example_spread=0.0, metric="f1"),
    Setting(effect=0.0, examples=500, ceiling=True),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=400, help="simulated runs per setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"{args.runs} simulated runs per setting, seed {args.seed}; rates in %")
    print(
        f"{'setting':<34} {'planted':>7} {'measured':>8} {'± 1 se':>6} {'pooled':>6} "
        f"{'1-run median [10%, 90%]':>24} {'MDE':>5} {'at MDE':>6}"
    )
    start = time.perf_counter()
    for setting in SETTINGS:
        outcome = simulate(setting, args.runs, args.seed)
        mde = outcome.pooled.mde()
        at_mde = simulate(replace(setting, effect=mde), args.runs, args.seed + 1)
        low, median, high = np.percentile(outcome.estimates, [10, 50, 90])
        print(
            f"{setting.describe():<34} {100 * setting.effect:>7.1f} {100 * outcome.marked:>8.1f} "
            f"{100 * outcome.binomial_error:>6.1f} {100 * outcome.predicted:>6.1f} "
            f"{100 * median:>8.1f} [{100 * low:>5.1f}, {100 * high:>5.1f}] "
            f"{100 * mde:>5.2f} {100 * at_mde.marked:>6.1f}"
        )
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
