"""What a comparison could have detected: the minimum detectable effect (MDE) of a cell against
its baseline row, and the restarts or dev examples a difference of a given size needs.

The model. A cell's difference to its baseline, on dev example i and paired restart r, is
x_ri = mu + e_i + s_r + eps_ri: an example effect e (variance sigma_e^2: examples the row gets
right whatever the seed), a restart effect s (sigma_s^2: a whole restart moves, as when it
stalls at chance) and their interaction eps (sigma_eps^2: which examples a seed gets right).
Over new dev examples and new seeds, the observed difference D (the mean over n examples and R
restarts) varies with

    Var D = sigma_e^2/n + sigma_eps^2/(n R) + sigma_s^2/R.

The report's test (significance.paired_bootstrap) resamples examples and keeps the restarts:
its spread is SE_test^2 = sigma_e^2/n + sigma_eps^2/(n R), without sigma_s^2/R. It marks D at
p < 0.05 when |D| > z_0.975 SE_test, so a true difference d > 0 is marked, the right way round,
with probability

    power(d) = Phi((d - z_0.975 SE_test) / SE_total),   SE_total^2 = SE_test^2 + sigma_s^2/R,

and the MDE (80% power) is z_0.975 SE_test + z_0.8 SE_total: the textbook 2.80 SE when restarts
agree. Where they do not, the test also marks differences that are not there: with d = 0 it
marks 2 Phi(-z_0.975 SE_test / SE_total) of comparisons (`false_marks`), not 5%.

Estimated from the test's own resamples (the same seed and draws, so the same pairing):
b_R, the variance over resamples of the restart-averaged difference (= SE_test^2), and b_1, of
one pair's difference (mean over pairs) = (sigma_e^2 + sigma_eps^2)/n, give
sigma_eps^2/n = (b_1 - b_R) R/(R-1) and sigma_e^2/n = b_R - sigma_eps^2/(n R); the per-restart
differences on the whole split vary with sigma_s^2 + sigma_eps^2/n, which gives sigma_s^2. One
restart cannot tell restart variation apart (taken as 0). Two refinements: a metric on per-example
outcomes (accuracy, F1) gets a floor on the example variance where the rows agree on every
example (Variation, `bounded`); and planning (`restarts_for`) asks, where restarts vary beyond
the test's spread, that the difference also stand out from that spread (Variation.detects).

Analytic rather than simulated: simulating the test costs what the test costs (1,000 resamples
x n x R) per simulated run, a few hundred runs per power estimate, ~10 estimates to find the
80% crossing: minutes per cell on GLUE-sized dev sets, in every report. The closed form costs
nothing beyond the test; tests/report/test_power.py and bench/power.py check it against the
measured detection rate of the real test on synthetic runs with a planted effect.

Cells compared over restart scores (no predictions kept; the exact sign-flip test of
report/stats.py) have only the per-restart differences: their MDE is sd(differences) times the
sign-flip test's MDE in sds at R restarts, from a seeded simulation of that test with normal
restart noise. With 5 or fewer restarts it can mark nothing (its smallest p is 2/2^R).
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from bertabl.report.significance import Paired
from bertabl.report.stats import ALPHA

POWER = 0.8
FALSE_MARKS_LIMIT = 2 * ALPHA  # above it (and restart noise significant), a design is flagged
Z_TEST = NormalDist().inv_cdf(1 - ALPHA / 2)  # 1.960
Z_POWER = NormalDist().inv_cdf(POWER)  # 0.842
MAX_RESTARTS = 10_000  # searches stop here: beyond it, the answer is "restarts do not get there"
MAX_EXAMPLES = 10**9
SIGN_FLIP_SIMULATIONS = 1000
SIGN_FLIP_FLIPS = 4096  # exact enumeration up to 12 restarts, random sign vectors beyond
SIGN_FLIP_SIMULATED_UP_TO = 64  # more restarts: the normal approximation (t ~ z there)
SEED = 0

BOOTSTRAP, SIGN_FLIP = "bootstrap", "sign_flip"


@dataclass(frozen=True)
class Variation:
    """A comparison's variation on the metric's 0-1 scale, observed at `restarts` x `examples`.

    Bootstrap: `example` = sigma_e^2/n and `interaction` = sigma_eps^2/n (n = `examples`),
    `restart` = sigma_s^2. Both variances of effects are kept as estimated even where negative
    (an estimate from a few restarts often is: clipping each at 0 would bias an average of them
    upwards); they are taken as 0 where used. Sign flip: `restart` = the variance of the
    per-restart differences, the others 0 and `examples` 0 (unknown).

    `bounded`: per-example scores are outcomes in [0, 1] (accuracy, F1, exact match), so a true
    difference d has one restart's per-example differences vary by at least d(1 - d) (values in
    [-1, 1] with mean d: E x^2 >= E|x| >= d). Two rows that agree on every example (both at
    100%) show no variation at all, yet a difference would bring its own: the floor, taken as
    an example effect (restarts do not average it away), is what their MDE rests on.
    """

    test: str  # BOOTSTRAP | SIGN_FLIP: the report's test this models
    restarts: int
    examples: int
    example: float
    interaction: float
    restart: float
    bounded: bool = False

    def _example(self, at: float) -> float:
        """The example variance where the difference is `at` (the floor above, if bounded)."""
        floor = at * (1 - at) / self.examples - self.interaction if self.bounded else 0.0
        return max(self.example, floor, 0.0)

    def se_test(self, restarts: int | None = None, examples: int | None = None, at=0.0):
        """The test's standard error at `restarts` x `examples` (default: as observed), where
        the difference is `at`."""
        n, scale = restarts or self.restarts, self.examples / (examples or self.examples)
        return math.sqrt((self._example(abs(at)) + self.interaction / n) * scale)

    def se_total(self, restarts: int | None = None, examples: int | None = None, at=0.0):
        """The standard error of the observed difference over new examples and new seeds."""
        n = restarts or self.restarts
        return math.sqrt(self.se_test(n, examples, at) ** 2 + max(self.restart, 0.0) / n)

    def critical(self, restarts: int | None = None, examples: int | None = None) -> float:
        """The smallest observed difference the test marks: where D = z_0.975 SE_test(D)."""
        if not self.bounded:
            return Z_TEST * self.se_test(restarts, examples)
        low, high = 0.0, 1.0  # D - z SE_test(D) rises through 0 once on (0, 1]
        for _ in range(60):
            middle = (low + high) / 2
            if middle >= Z_TEST * self.se_test(restarts, examples, middle):
                high = middle
            else:
                low = middle
        return high

    def power(self, effect: float, restarts: int | None = None, examples: int | None = None):
        """The probability that the test marks a true difference of `effect` (> 0, 0-1 scale)
        at p < ALPHA, the right way round, at `restarts` x `examples`."""
        n = restarts or self.restarts
        if self.test == SIGN_FLIP:
            return _sign_flip_power(n, effect / math.sqrt(self.restart)) if self.restart else 1.0
        critical, spread = self.critical(n, examples), self.se_total(n, examples, effect)
        if spread == 0:
            return 1.0 if effect >= critical else 0.0
        return NormalDist().cdf((effect - critical) / spread)

    def mde(self, restarts: int | None = None, examples: int | None = None) -> float | None:
        """The smallest true difference (0-1 scale) marked with probability POWER; None where
        the test can mark nothing (the sign flip with 5 or fewer restarts). Without the floor it
        is z_0.975 SE_test + z_0.8 SE_total; with it, found by bisection."""
        n = restarts or self.restarts
        if self.test == SIGN_FLIP:
            scale = _sign_flip_mde(n)
            return None if scale is None else scale * math.sqrt(self.restart)
        low, high = 0.0, 1.0
        if self.power(high, n, examples) < POWER:
            return high  # a metric on a 0-1 scale differs by at most 1: no design detects less
        for _ in range(60):
            middle = (low + high) / 2
            if self.power(middle, n, examples) >= POWER:
                high = middle
            else:
                low = middle
        return high

    def false_marks(self, restarts: int | None = None, examples: int | None = None) -> float:
        """How often the test marks a comparison whose true difference is 0: ALPHA where the
        test accounts for all the variation (the sign flip over restarts does), more where
        restarts vary beyond the per-example test's spread."""
        if self.test == SIGN_FLIP:
            return ALPHA
        n = restarts or self.restarts
        spread = self.se_total(n, examples)
        if spread == 0:
            return 0.0
        return 2 * NormalDist().cdf(-self.critical(n, examples) / spread)

    def restart_noise_p(self) -> float:
        """The p of "restarts vary no more than the per-example test allows": their differences
        on the whole split vary by sigma_eps^2/n then, so (R-1) var(D_r) / (sigma_eps^2/n) is
        chi-square with R-1 degrees of freedom (Wilson-Hilferty's approximation of its tail).
        1 where it cannot be told (one restart, the sign flip)."""
        k = self.restarts - 1
        if self.test == SIGN_FLIP or k < 1:
            return 1.0
        observed = self.restart + self.interaction  # var(D_r)
        if self.interaction <= 0:
            return 0.0 if observed > 0 else 1.0
        ratio = observed / self.interaction  # chi-square_k / k under the null
        spread = math.sqrt(2 / (9 * k))
        return 1 - NormalDist().cdf((ratio ** (1 / 3) - (1 - 2 / (9 * k))) / spread)

    def unreliable(self, restarts: int | None = None, examples: int | None = None) -> bool:
        """Restart noise alone earns marks: the restarts vary more than the test allows (at
        p < ALPHA, so that 5 restarts' chance spread is no alarm) and, at this design, the test
        would mark more than FALSE_MARKS_LIMIT of comparisons with no true difference."""
        return (
            self.false_marks(restarts, examples) > FALSE_MARKS_LIMIT
            and self.restart_noise_p() < ALPHA
        )

    def detects(self, effect: float, restarts: int | None = None, examples: int | None = None):
        """Whether the design marks `effect` with probability POWER and, where the restarts
        vary beyond the per-example test's spread (restart_noise_p < ALPHA), whether `effect`
        also stands out from that spread: (z_0.975 + z_0.8) SE_total <= effect, the MDE of a
        test that counted it. Else marks that seed noise alone earns would pass for findings
        (the per-example test's false marks stay high however many restarts: its spread
        shrinks with them as fast as theirs)."""
        mde = self.mde(restarts, examples)
        if mde is None or mde > effect:
            return False
        if self.restart_noise_p() >= ALPHA:
            return True
        return (Z_TEST + Z_POWER) * self.se_total(restarts, examples, effect) <= effect


def from_bootstrap(test: Paired, bounded: bool = False) -> Variation:
    """The variation behind one per-example paired bootstrap (see the module docstring);
    `bounded`: the metric scores per-example outcomes in [0, 1] (Variation)."""
    r = len(test.per_restart)
    interaction = max(test.single_variance - test.variance, 0.0) * r / (r - 1) if r > 1 else 0.0
    example = test.variance - interaction / r
    restart = 0.0
    if r > 1:  # var(D_r) = sigma_s^2 + sigma_eps^2/n
        restart = statistics.variance(test.per_restart) - interaction
    return Variation(BOOTSTRAP, r, test.examples, example, interaction, restart, bounded)


def from_restarts(differences: Sequence[float]) -> Variation | None:
    """The variation behind a sign-flip test over these per-restart differences; None below 2."""
    if len(differences) < 2:
        return None
    return Variation(SIGN_FLIP, len(differences), 0, 0.0, 0.0, statistics.variance(differences))


def restarts_for(variation: Variation, effect: float) -> int | None:
    """The fewest restarts (at the observed dev examples) at which the design detects `effect`
    (Variation.detects); None where no number up to MAX_RESTARTS does."""
    return _smallest(lambda n: variation.detects(effect, restarts=n), 1, MAX_RESTARTS)


def examples_for(variation: Variation, effect: float, restarts: int | None = None) -> int | None:
    """The fewest dev examples at which `restarts` (default: as observed) detect `effect`
    (Variation.detects), assuming new examples vary as the observed ones; None where no number
    does (restart noise alone is too large) or the test does not use examples (the sign flip)."""
    if variation.test == SIGN_FLIP:
        return None
    return _smallest(lambda m: variation.detects(effect, restarts, m), 1, MAX_EXAMPLES)


def _smallest(ok: Callable[[int], bool], low: int, high: int) -> int | None:
    """The smallest integer in [low, high] where `ok` (monotone: false, then true) holds."""
    if not ok(high):
        return None
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if ok(middle) else (middle + 1, high)
    return low


# -- the sign-flip test over restarts ------------------------------------------------------------
@functools.cache
def _sign_flip_draws(restarts: int) -> tuple[np.ndarray, np.ndarray]:
    """(standard normal restart noise, simulated runs x restarts; the sign vectors) for
    simulating the exact sign-flip test of report/stats.py, seeded."""
    rng = np.random.default_rng(SEED)
    noise = rng.standard_normal((SIGN_FLIP_SIMULATIONS, restarts))
    if 2**restarts <= SIGN_FLIP_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=restarts)))
    else:  # a Monte Carlo permutation test: its p is an estimate, as good as its flips
        signs = rng.choice((1.0, -1.0), size=(SIGN_FLIP_FLIPS, restarts))
    return noise, signs


def _sign_flip_power(restarts: int, effect_in_sds: float) -> float:
    """The share of simulated runs (restart differences ~ N(effect, 1)) that the sign-flip test
    marks at p < ALPHA with a positive mean."""
    if 2 / 2**restarts >= ALPHA:  # its smallest attainable p
        return 0.0
    if restarts > SIGN_FLIP_SIMULATED_UP_TO:
        return NormalDist().cdf(effect_in_sds * math.sqrt(restarts) - Z_TEST)
    noise, signs = _sign_flip_draws(restarts)
    differences = noise + effect_in_sds
    observed = differences.mean(1)
    flipped = np.abs(differences @ signs.T) / restarts
    p = (flipped >= np.abs(observed)[:, None] - 1e-12).mean(1)
    return float(np.mean((p < ALPHA) & (observed > 0)))


@functools.cache
def _sign_flip_mde(restarts: int) -> float | None:
    """The sign-flip test's MDE in sds of the per-restart differences (bisection to 0.005 sd
    over the seeded simulation); None where it cannot mark anything."""
    if 2 / 2**restarts >= ALPHA:
        return None
    low, high = 0.0, 1.0
    while _sign_flip_power(restarts, high) < POWER:
        low, high = high, 2 * high
    while high - low > 0.005:
        middle = (low + high) / 2
        low, high = (low, middle) if _sign_flip_power(restarts, middle) >= POWER else (middle, high)
    return high
