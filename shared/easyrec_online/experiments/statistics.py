"""Statistics for experiments whose unit of randomisation is the user, read while they run.

Intervals. An arm's success rate per impression is a ratio of two per-user sums (successes over
impressions), and one user's impressions are not independent of each other, so its variance comes
from the users: the delta method, Var(Y/X) ~ (s_y^2 - 2 R s_xy + R^2 s_x^2) / (n mean_x^2)
(Deng, Knoblich and Lu, "Applying the Delta Method in Metric Analytics", KDD 2018).

Significance safe to peek at. Results are shown continuously, and a fixed-horizon p-value read
again and again until it dips below 0.05 is wrong far more often than 5 %. We use the mixture
sequential probability ratio test (mSPRT; Johari, Koomen, Pekelis and Walsh, "Always valid
inference", Operations Research 2022) with a normal mixture N(0, tau^2) over the effect theta:

  Lambda_n(tau) = sqrt(V / (V + tau^2)) * exp(theta_hat^2 tau^2 / (2 V (V + tau^2)))

for an estimate theta_hat with variance V after n users, averaged over a fixed grid of scales tau
(an average of test martingales is a test martingale: effects of any size are covered with no
scale tuned to the data). Under the null, P(Lambda_n >= 1/alpha for some n) <= alpha (Ville), so
the always-valid p-value p_n = min over the checks so far of 1 / Lambda_k stays below alpha with
probability at most alpha however often it is read. The matching confidence sequence, the effects
theta0 the same test would not reject, covers the true effect at every check at once with
probability 1 - alpha.

Sample-ratio mismatch: a chi-square goodness-of-fit test of users per arm against the weights; a
p-value below SRM_ALPHA means the split is broken (a bug in assignment, exposure or logging) and the
results cannot be trusted.
"""
from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional, Sequence

ALPHA = 0.05
SRM_ALPHA = 0.001
Z95 = 1.959963984540054


class Estimate(NamedTuple):
    value: float
    variance: float  # of the estimate

    @property
    def se(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    def interval(self, z: float = Z95) -> List[float]:
        return [self.value - z * self.se, self.value + z * self.se]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _cov(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = _mean(xs), _mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (n - 1)


class Sums(NamedTuple):
    """Running sums over users of (x, y) pairs: enough for a ratio's delta-method variance, so that a
    test can be checked as users arrive without keeping them."""

    n: int = 0
    x: float = 0.0
    y: float = 0.0
    xx: float = 0.0
    yy: float = 0.0
    xy: float = 0.0

    def add(self, y: float, x: float) -> "Sums":
        return Sums(self.n + 1, self.x + x, self.y + y, self.xx + x * x, self.yy + y * y, self.xy + x * y)

    def remove(self, y: float, x: float) -> "Sums":
        """Take a user's (x, y) out again (before adding their updated one)."""
        return Sums(self.n - 1, self.x - x, self.y - y, self.xx - x * x, self.yy - y * y, self.xy - x * y)


def ratio_of_sums(sums: Sums) -> Estimate:
    """sum(y) / sum(x) over users, with its delta-method variance.

    The variance is at least a binomial one with half a success and half a failure added (Jeffreys):
    an arm where every impression succeeded, or none did, has a sample variance of 0, which would make
    any difference from it look infinitely certain, or (as 0/0) undefined."""
    n = sums.n
    if n == 0 or sums.x <= 0:
        return Estimate(0.0, 0.0)
    mean_x, mean_y = sums.x / n, sums.y / n
    r = mean_y / mean_x
    if n > 1:
        var_y = (sums.yy - n * mean_y * mean_y) / (n - 1)
        var_x = (sums.xx - n * mean_x * mean_x) / (n - 1)
        cov_xy = (sums.xy - n * mean_x * mean_y) / (n - 1)
        variance = (var_y - 2 * r * cov_xy + r * r * var_x) / (n * mean_x * mean_x)
    else:
        variance = 0.0
    smoothed = (sums.y + 0.5) / (sums.x + 1.0)
    return Estimate(r, max(variance, smoothed * (1.0 - smoothed) / (sums.x + 1.0)))


def vote_mean_of_sums(sums: Sums) -> Estimate:
    """The mean of per-user preferences (y: symmetric about 0 under no preference), with its variance under the null of no preference,
    mean(v^2) / n: unlike the sample variance, it does not shrink when a small sample happens to vote
    one way, which made early checks overconfident."""
    if sums.n == 0:
        return Estimate(0.0, 0.0)
    return Estimate(sums.y / sums.n, sums.yy / sums.n / sums.n)


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> Estimate:
    """sum(numerators) / sum(denominators) over users (see ratio_of_sums)."""
    sums = Sums()
    for y, x in zip(numerators, denominators):
        sums = sums.add(y, x)
    return ratio_of_sums(sums)


def mean(values: Sequence[float]) -> Estimate:
    """A mean over users (e.g. the share of users with a success) and its variance."""
    n = len(values)
    if n == 0:
        return Estimate(0.0, 0.0)
    return Estimate(_mean(values), _cov(values, values) / n)


def difference(treatment: Estimate, control: Estimate) -> Estimate:
    """Independent groups (users are randomised to one arm)."""
    return Estimate(treatment.value - control.value, treatment.variance + control.variance)


def _lambda_one(value: float, v: float, tau2: float) -> float:
    exponent = value ** 2 * tau2 / (2.0 * v * (v + tau2))
    return math.sqrt(v / (v + tau2)) * math.exp(min(exponent, 700.0))


def msprt_lambda(estimate: Estimate, taus: Sequence[float]) -> float:
    """The mixture likelihood ratio against "no effect", averaged over the scales `taus` with equal
    weights. An average of test martingales is one, so the guarantee holds for the average; a grid of
    scales tests effects of any size without tuning one to the data, at the price of a factor of at
    most len(taus) against the best single scale."""
    v = estimate.variance
    if v <= 0:
        return 1.0 if estimate.value == 0 else float("inf")
    return sum(_lambda_one(estimate.value, v, tau * tau) for tau in taus) / len(taus)


def always_valid_p(checks: Sequence[Estimate], taus: Sequence[float]) -> float:
    """The mSPRT p-value after a sequence of checks of the same effect (the running minimum)."""
    p = 1.0
    for estimate in checks:
        p = min(p, 1.0 / max(msprt_lambda(estimate, taus), 1e-300))
    return min(1.0, p)


def confidence_sequence(estimate: Estimate, taus: Sequence[float], alpha: float = ALPHA) -> List[float]:
    """The always-valid (1 - alpha) interval matching the mSPRT at this check: the effects theta0 for
    which the test of "effect = theta0" would not reject (found by bisection on |theta_hat - theta0|)."""
    v = estimate.variance
    if v <= 0:
        return [estimate.value, estimate.value]
    low, high = 0.0, math.sqrt(v)
    while msprt_lambda(Estimate(high, v), taus) < 1.0 / alpha:
        high *= 2.0
    for _ in range(40):  # to 1e-12 of the bracket: far below any figure shown
        middle = (low + high) / 2.0
        if msprt_lambda(Estimate(middle, v), taus) < 1.0 / alpha:
            low = middle
        else:
            high = middle
    return [estimate.value - high, estimate.value + high]


def normal_two_sided_p(estimate: Estimate) -> float:
    """The fixed-horizon p-value (only valid when read once, at a horizon fixed in advance)."""
    if estimate.variance <= 0:
        return 1.0 if estimate.value == 0 else 0.0
    return math.erfc(abs(estimate.value) / estimate.se / math.sqrt(2.0))


# --- sample-ratio mismatch -----------------------------------------------------------------------
def _upper_gamma_regularized(s: float, x: float) -> float:
    """Q(s, x) = Gamma(s, x) / Gamma(s) (Numerical Recipes 6.2: series below s + 1, continued fraction above)."""
    if x <= 0:
        return 1.0
    if x < s + 1.0:
        term = total = 1.0 / s
        a = s
        for _ in range(1000):
            a += 1.0
            term *= x / a
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + s * math.log(x) - math.lgamma(s)))
    tiny = 1e-300
    b = x + 1.0 - s
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - s)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return math.exp(-x + s * math.log(x) - math.lgamma(s)) * h


def chi_square_sf(statistic: float, dof: int) -> float:
    return _upper_gamma_regularized(dof / 2.0, statistic / 2.0)


class SampleRatio(NamedTuple):
    statistic: float
    p_value: float
    mismatch: bool


def sample_ratio_mismatch(observed: Sequence[int], weights: Sequence[float], alpha: float = SRM_ALPHA) -> SampleRatio:
    total = sum(observed)
    if total == 0 or len(observed) < 2:
        return SampleRatio(0.0, 1.0, False)
    scale = total / float(sum(weights))
    statistic = sum((o - w * scale) ** 2 / (w * scale) for o, w in zip(observed, weights))
    p = chi_square_sf(statistic, len(observed) - 1)
    return SampleRatio(statistic, p, p < alpha)


# --- the sequence of checks ----------------------------------------------------------------------
class Sequential(NamedTuple):
    estimate: Estimate
    p_value: float
    interval: List[float]
    significant: bool


def sequential_test(estimates: Sequence[Estimate], taus: Sequence[float], alpha: float = ALPHA) -> Optional[Sequential]:
    """The mSPRT over checks of one effect, the last being now: the running minimum of the p-value and
    the running intersection of the confidence sequence (both valid at every check at once)."""
    if not estimates:
        return None
    p = always_valid_p(estimates, taus)
    low, high = float("-inf"), float("inf")
    for estimate in estimates:
        at = confidence_sequence(estimate, taus, alpha)
        low, high = max(low, at[0]), min(high, at[1])
    return Sequential(estimates[-1], p, [low, high], p < alpha)


def summary(estimate: Estimate) -> Dict[str, object]:
    return {"value": round(estimate.value, 6), "ci95": [round(v, 6) for v in estimate.interval()]}
