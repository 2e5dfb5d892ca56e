"""The statistics against closed forms and published values, and the always-valid test's promise:
read after every few users, it is wrong at most alpha of the time."""
import math
import random

import pytest
from pytest import approx

from easyrec_online.experiments import statistics as st
from easyrec_online.experiments.results import AB_TAUS


def test_ratio_of_one_impression_per_user_is_a_proportion():
    # Every user one impression: successes per impression is a mean of 0/1, variance p(1-p)/n (sample var).
    successes = [1] * 30 + [0] * 70
    estimate = st.ratio(successes, [1] * 100)
    assert estimate.value == approx(0.3)
    assert estimate.variance == approx(0.3 * 0.7 * 100 / 99 / 100)


def test_ratio_variance_follows_the_delta_method():
    # Users with different numbers of impressions: the variance counts users, not impressions.
    ys, xs = [2, 0, 1, 3, 0, 1], [4, 2, 2, 5, 1, 3]
    n, mx, my = len(xs), sum(xs) / 6.0, sum(ys) / 6.0
    r = my / mx

    def cov(a, b):
        ma, mb = sum(a) / n, sum(b) / n
        return sum((p - ma) * (q - mb) for p, q in zip(a, b)) / (n - 1)

    expected = (cov(ys, ys) - 2 * r * cov(ys, xs) + r * r * cov(xs, xs)) / (n * mx * mx)
    estimate = st.ratio(ys, xs)
    floor = (7.5 / 18) * (1 - 7.5 / 18) / 18
    assert estimate.value == approx(7 / 17.0) and estimate.variance == approx(max(expected, floor))
    # An arm where every impression succeeded is not certain to be perfect.
    assert st.ratio([3, 2], [3, 2]).variance > 0
    # Users who succeed on all or none of their impressions: wider than if impressions were independent.
    assert st.ratio([5, 0, 5, 0], [5, 5, 5, 5]).variance == approx((25.0 / 3) / (4 * 25))
    assert st.ratio([5, 0, 5, 0], [5, 5, 5, 5]).variance > 0.5 * 0.5 / 20


@pytest.mark.parametrize("statistic, dof, p", [(3.841458820694124, 1, 0.05), (5.991464547107979, 2, 0.05),
                                               (11.344866730144373, 3, 0.01), (0.5, 4, 0.9735009788),
                                               (30.0, 10, 0.000857)])
def test_chi_square_survival_matches_tables(statistic, dof, p):
    assert st.chi_square_sf(statistic, dof) == approx(p, rel=2e-3)


def test_sample_ratio_mismatch_flags_a_broken_split_only():
    assert not st.sample_ratio_mismatch([5030, 4970], [50, 50]).mismatch
    broken = st.sample_ratio_mismatch([5300, 4700], [50, 50])
    assert broken.mismatch and broken.statistic == approx(36.0) and broken.p_value < 1e-8
    assert not st.sample_ratio_mismatch([2010, 990], [2, 1]).mismatch


def test_msprt_lambda_is_the_normal_mixture_likelihood_ratio_averaged_over_scales():
    estimate, v = st.Estimate(0.03, 0.0001), 0.0001

    def one(tau2):
        return math.sqrt(v / (v + tau2)) * math.exp(0.03 ** 2 * tau2 / (2 * v * (v + tau2)))

    assert st.msprt_lambda(estimate, [0.02]) == approx(one(0.0004))
    assert st.msprt_lambda(estimate, [0.02, 0.1]) == approx((one(0.0004) + one(0.01)) / 2)
    # No effect estimated: the ratio is below 1 (evidence for the null), p stays 1.
    assert st.always_valid_p([st.Estimate(0.0, v)], [0.02]) == 1.0


def test_the_always_valid_p_is_the_running_minimum_and_the_sequence_matches_it():
    taus = [0.05, 0.1, 0.2]
    checks = [st.Estimate(0.05, 0.001), st.Estimate(0.2, 0.001), st.Estimate(0.0, 0.0005)]
    p = st.always_valid_p(checks, taus)
    assert p == approx(1.0 / st.msprt_lambda(checks[1], taus))
    # At a check, 0 lies outside the confidence sequence exactly when 1/Lambda < alpha there.
    for estimate in (st.Estimate(0.2, 0.001), st.Estimate(0.05, 0.001), st.Estimate(-0.15, 0.001)):
        low, high = st.confidence_sequence(estimate, taus)
        outside = not low <= 0 <= high
        assert outside == (1.0 / st.msprt_lambda(estimate, taus) < st.ALPHA)
    # The single-scale closed form (Johari et al.) is what the bisection finds.
    v, tau2 = 0.001, 0.01
    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / st.ALPHA) + math.log((v + tau2) / v)))
    assert st.confidence_sequence(st.Estimate(0.1, v), [0.1]) == approx([0.1 - half, 0.1 + half])


def test_fixed_horizon_p_of_1_96_standard_errors_is_0_05():
    assert st.normal_two_sided_p(st.Estimate(1.959963984540054 * 0.1, 0.01)) == approx(0.05)


def _peeking_run(rng, effect, users=600, every=20, base=0.1):
    """Users alternate between arms; each has 1-5 impressions with success rate base (+effect in B).
    Returns (significant at some check, fixed-horizon test significant at some check)."""
    a, b = ([], []), ([], [])
    estimates, fixed_hits = [], False
    for n in range(1, users + 1):
        arm = a if n % 2 else b
        impressions = rng.randint(1, 5)
        rate = base + (effect if arm is b else 0.0)
        arm[0].append(sum(rng.random() < rate for _ in range(impressions)))
        arm[1].append(impressions)
        if n % every == 0:
            d = st.difference(st.ratio(*b), st.ratio(*a))
            estimates.append(d)
            fixed_hits = fixed_hits or st.normal_two_sided_p(d) < st.ALPHA
    return st.always_valid_p(estimates, AB_TAUS) < st.ALPHA, fixed_hits


def test_peeking_at_an_a_a_test_keeps_the_false_positive_rate_below_alpha():
    rng = random.Random(11)
    runs = [_peeking_run(rng, 0.0) for _ in range(200)]
    always_valid = sum(r[0] for r in runs) / 200.0
    fixed = sum(r[1] for r in runs) / 200.0
    assert always_valid <= st.ALPHA
    # Reading a fixed-horizon p-value at each of the 30 checks would have been wrong far more often.
    assert fixed > 2 * st.ALPHA


def test_a_real_difference_becomes_significant():
    rng = random.Random(12)
    found = [_peeking_run(rng, 0.05, users=2000)[0] for _ in range(20)]
    assert sum(found) >= 16
