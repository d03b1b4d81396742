"""Uncertainty over fine-tuning restarts: a bootstrap interval and a paired significance test.

Both are written here (a few lines each) rather than taken from scipy, which is only a test
dependency: scipy's `permutation_test` would do the sign flips, but enumerating 2^n flips exactly
is simpler, needs no random state and gives the hand-checkable p-values the report promises.
"""

from __future__ import annotations

import itertools
import statistics

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
ALPHA = 0.05


def bootstrap_ci(
    values: list[float], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float] | None:
    """Seeded percentile bootstrap interval of the mean over restarts; None below 2 values.

    With few restarts the percentile bootstrap under-covers (it cannot reach beyond the observed
    range), so read it as a lower bound on the uncertainty.
    """
    if len(values) < 2:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    data = np.asarray(values, dtype=float)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_sign_flip_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided exact paired permutation (sign-flip) test of mean(a - b) = 0.

    Under the null hypothesis each paired difference is equally likely to have either sign, so
    p = (number of the 2^n sign assignments whose |mean| >= the observed |mean|) / 2^n. The
    smallest attainable p is 2 / 2^n: with 5 or fewer pairs no difference reaches p < 0.05.
    None below 2 pairs.
    """
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2:
        return None
    observed = abs(statistics.fmean(diffs))
    tolerance = 1e-12 * max(1.0, observed)  # float sums of the same numbers in another order
    extreme = sum(
        abs(statistics.fmean(s * d for s, d in zip(signs, diffs, strict=True)))
        >= observed - tolerance
        for signs in itertools.product((1, -1), repeat=len(diffs))
    )
    return extreme / 2 ** len(diffs)
