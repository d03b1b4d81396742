"""The report's statistics on hand-computed cases."""

from __future__ import annotations

import statistics

import pytest

from bertabl.report.stats import bootstrap_ci, paired_sign_flip_p


def test_sign_flip_p_by_hand():
    # diffs (1, 2, 3), observed mean 2. Of the 8 sign patterns only (+,+,+) and (-,-,-) reach
    # |mean| >= 2 (e.g. (-1, +2, +3) has mean 4/3): p = 2/8.
    assert paired_sign_flip_p([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == pytest.approx(0.25)
    # diffs (3, 1): patterns give means 2, 1, -1, -2 -> two of four reach |2|: p = 1/2.
    assert paired_sign_flip_p([3.5, 1.5], [0.5, 0.5]) == pytest.approx(0.5)
    # diffs (1, -1): observed mean 0, every pattern reaches it: p = 1.
    assert paired_sign_flip_p([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    # six same-sign differences: the smallest p six pairs can give, 2 / 2^6.
    assert paired_sign_flip_p([0.6] * 6, [0.5] * 6) == pytest.approx(2 / 64)
    # five: 2 / 32 = 0.0625, never below 0.05 (the documented weakness)
    assert paired_sign_flip_p([0.9] * 5, [0.1] * 5) == pytest.approx(0.0625)
    assert paired_sign_flip_p([0.9], [0.1]) is None
    with pytest.raises(ValueError):
        paired_sign_flip_p([0.9, 0.8], [0.1])


def test_sign_flip_counts_ties_of_the_observed_mean():
    # diffs (2, 1, 1): mean 4/3; the pattern (+2, -1, -1) has mean 0, (-2, +1, +1) 0,
    # (+2, +1, -1) and (+2, -1, +1) 2/3: only the two all-same-sign patterns reach 4/3.
    assert paired_sign_flip_p([2.0, 1.0, 1.0], [0.0, 0.0, 0.0]) == pytest.approx(2 / 8)
    # diffs (1, 1, 2): (+1, +1, -2) has mean 0 while (-1, -1, +2) too: same answer, any order.
    assert paired_sign_flip_p([1.0, 1.0, 2.0], [0.0, 0.0, 0.0]) == pytest.approx(2 / 8)


def test_bootstrap_interval_contains_the_mean_and_is_seeded():
    values = [0.61, 0.64, 0.58, 0.66, 0.60]
    low, high = bootstrap_ci(values)
    assert low < statistics.fmean(values) < high
    assert min(values) <= low and high <= max(values)  # means of resamples stay in range
    assert bootstrap_ci(values) == (low, high)  # same seed, same interval
    assert bootstrap_ci([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))
    assert bootstrap_ci([0.7]) is None
    # two values: resample means are a, (a+b)/2 or b with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% percentiles are the two values themselves.
    assert bootstrap_ci([0.5, 0.9]) == pytest.approx((0.5, 0.9))
