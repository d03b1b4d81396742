"""The minimum detectable effect: hand-computed answers of its formulas, and its promise checked
on known answers: runs with a planted difference through the report's own test, whose measured
detection rate must match the estimate within the simulation's binomial error."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pytest

from bench.power import Setting, simulate
from bertabl.report.power import (
    BOOTSTRAP,
    SIGN_FLIP,
    Variation,
    _sign_flip_mde,
    examples_for,
    from_bootstrap,
    from_restarts,
    restarts_for,
)
from bertabl.report.significance import Paired
from bertabl.report.stats import paired_sign_flip_p

Z, Z8 = 1.959963984540054, 0.8416212335729143  # the normal's 97.5% and 80% quantiles
RUNS = 300  # simulated runs per check: the binomial error at 80% is 2.3 points


def _variation(example=0.0, interaction=0.0, restart=0.0, restarts=5, examples=500, **kw):
    return Variation(BOOTSTRAP, restarts, examples, example, interaction, restart, **kw)


def test_without_restart_noise_the_mde_is_the_textbook_2_8_standard_errors():
    v = _variation(example=1e-4, interaction=5e-4)  # SE^2 = 1e-4 + 5e-4/5 = 2e-4
    se = math.sqrt(2e-4)
    assert v.se_test() == pytest.approx(se)
    assert v.mde() == pytest.approx((Z + Z8) * se)
    assert v.power(v.mde()) == pytest.approx(0.8)
    assert v.false_marks() == pytest.approx(0.05)


def test_restart_noise_widens_the_spread_but_not_the_tests_threshold():
    v = _variation(example=1e-4, interaction=5e-4, restart=1e-3)  # + 1e-3/5: SE_total = 0.02
    se_test = math.sqrt(2e-4)
    assert v.se_total() == pytest.approx(0.02)
    assert v.mde() == pytest.approx(Z * se_test + Z8 * 0.02)
    # with no true difference the test marks |D| > z SE_test with D ~ N(0, SE_total^2)
    assert v.false_marks() == pytest.approx(2 * NormalDist().cdf(-Z * se_test / 0.02))
    assert v.false_marks() == pytest.approx(0.1658, abs=1e-4)


def test_the_bootstraps_variances_split_into_example_interaction_and_restart_parts():
    # b_1 = 0.0010 (one pair), b_R = 0.0004 (the average of 4): interaction = 0.0006 * 4/3;
    # example = b_R - interaction/4; var(D_r) = 0.002/3, restart = var(D_r) - interaction
    test = Paired(0.5, -0.1, 0.1, 100, 0.0004, 0.0010, (0.01, 0.03, 0.05, 0.07))
    v = from_bootstrap(test, bounded=True)
    assert (v.restarts, v.examples, v.bounded) == (4, 100, True)
    assert v.interaction == pytest.approx(0.0008)
    assert v.example == pytest.approx(0.0002)
    assert v.restart == pytest.approx(0.002 / 3 - 0.0008)  # negative: kept, used as 0
    assert v.se_test() ** 2 == pytest.approx(0.0004)  # the test's own spread, as observed
    assert v.se_total() == pytest.approx(v.se_test())


def test_rows_that_agree_on_every_example_still_have_an_mde():
    # Both rows right on all 500 examples: no variation observed, yet a difference d brings
    # at least d(1-d) per example. The test marks D > z sqrt(D(1-D)/n), i.e. D > c = z^2/(n+z^2);
    # 80% power where (d - c)^2 = z8^2 d(1-d)/n: a quadratic in d.
    n = 500
    v = _variation(examples=n, bounded=True)
    c, k = Z**2 / (n + Z**2), Z8**2 / n
    d = ((2 * c + k) + math.sqrt((2 * c + k) ** 2 - 4 * (1 + k) * c**2)) / (2 * (1 + k))
    assert v.critical() == pytest.approx(c)
    assert v.mde() == pytest.approx(d, rel=1e-6)
    assert round(100 * d, 2) == 1.17
    assert v.false_marks() == 0.0  # identical rows are never marked
    assert _variation(examples=n).mde() == pytest.approx(0.0, abs=1e-12)  # no floor: nothing


def test_restarts_and_examples_needed_for_an_effect():
    # interaction only: MDE(N) = 2.80 sqrt(I/N) <= 0.02 from N = 2.80^2 * 1e-3 / 4e-4 = 19.6
    assert restarts_for(_variation(interaction=1e-3), 0.02) == 20
    # example only: restarts do not help; MDE(m) = 2.80 sqrt(E * 500/m) <= 0.02 from m = 981.1
    example_only = _variation(example=1e-4)
    assert restarts_for(example_only, 0.02) is None
    assert examples_for(example_only, 0.02) == 982


def test_restart_noise_must_be_outgrown_by_restarts_not_by_examples():
    # restarts vary far beyond the per-example spread: a difference counts once it stands out
    # from that spread too, (z + z8) sqrt((I + s)/N) <= 0.02: N >= 7.849 * 0.0101 / 4e-4 = 198.2
    v = _variation(interaction=1e-4, restart=0.01)
    assert v.restart_noise_p() < 1e-6 and v.unreliable()
    assert restarts_for(v, 0.02) == 199
    assert examples_for(v, 0.02) is None  # seed noise does not average out over examples


def test_restart_noise_p_is_the_chi_square_tail():
    # chi-square(4) has its 95% quantile at 9.4877: var(D_r) that large over the interaction
    v = _variation(interaction=1e-4, restart=1e-4 * (9.4877 / 4 - 1))
    assert v.restart_noise_p() == pytest.approx(0.05, abs=0.002)
    assert _variation(interaction=1e-4, restarts=1).restart_noise_p() == 1.0


def test_the_sign_flip_over_5_or_fewer_restarts_detects_nothing():
    assert from_restarts([0.01, 0.02]).mde() is None
    assert from_restarts([0.01, 0.02, 0.0, 0.03, 0.01]).mde() is None
    assert from_restarts([0.01]) is None
    differences = [0.01, 0.03, 0.0, 0.02, 0.01, 0.02]
    six = from_restarts(differences)  # sd 0.0105: the MDE scales with it
    assert six.test == SIGN_FLIP
    assert six.mde() == pytest.approx(_sign_flip_mde(6) * statistics.stdev(differences))


def test_the_sign_flip_mde_is_detected_80_percent_of_the_time():
    scale = _sign_flip_mde(6)  # in sds of the restart differences
    rng = np.random.default_rng(1)
    runs = [rng.normal(scale, 1.0, 6) for _ in range(RUNS)]
    rate = np.mean([paired_sign_flip_p(list(d), [0.0] * 6) < 0.05 and d.mean() > 0 for d in runs])
    assert abs(rate - 0.8) <= 3 * math.sqrt(0.8 * 0.2 / RUNS)


def _within_binomial_error(setting: Setting, seed: int) -> tuple[float, float]:
    """(measured, predicted): the report's test on RUNS planted runs, against report/power.py's
    estimate from their pooled variation; they must agree within 3 binomial standard errors."""
    outcome = simulate(setting, RUNS, seed=seed, resamples=300)
    tolerance = 3 * math.sqrt(outcome.predicted * (1 - outcome.predicted) / RUNS)
    assert abs(outcome.marked - outcome.predicted) <= tolerance, (outcome.marked, tolerance)
    return outcome.marked, outcome.predicted


SMALL = Setting(examples=200, restarts=5, example_spread=0.1)


@pytest.mark.parametrize(
    "setting",
    [
        replace(SMALL, effect=0.03),  # example and interaction noise, power ~60%
        replace(SMALL, effect=0.04, restart_spread=0.05),  # + restarts that move every example
    ],
    ids=["examples", "examples+restarts"],
)
def test_planted_effects_are_detected_as_often_as_estimated(setting):
    measured, predicted = _within_binomial_error(setting, seed=0)
    assert 0.3 < predicted < 0.95  # a check on the steep part of the power curve


def test_restart_noise_earns_as_many_false_marks_as_estimated():
    measured, predicted = _within_binomial_error(replace(SMALL, restart_spread=0.1), seed=1)
    assert predicted > 0.2  # far above the nominal 5%: what the report's warning is about


def test_the_mde_of_rows_at_100_percent_is_detected_80_percent_of_the_time():
    ceiling = Setting(examples=300, effect=0.0, ceiling=True)
    mde = simulate(ceiling, 1, resamples=300).pooled.mde()  # from a run with nothing to see
    outcome = simulate(replace(ceiling, effect=mde), RUNS, seed=2, resamples=300)
    # the normal approximation of a count of a few errors: allow its discreteness on top
    assert abs(outcome.marked - 0.8) <= 3 * math.sqrt(0.8 * 0.2 / RUNS) + 0.02


def test_the_bench_prints_a_line_per_setting(capsys):
    from bench import power as bench

    bench.main(["--runs", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 + len(bench.SETTINGS) + 1  # title, header, settings, seconds
    assert lines[2].startswith(bench.SETTINGS[0].describe())
