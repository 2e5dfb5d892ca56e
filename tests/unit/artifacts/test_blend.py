"""The served score: the model's probability blended with the live CF score (artifacts/blend.py)."""
import math

import pytest

from easyrec_online.artifacts.blend import blend, cf_scale
from easyrec_online.artifacts.features.spec import FeatureDef, FeatureSpec


def test_no_cf_evidence_keeps_the_model_probability():
    assert blend([0.2, 0.9], [0.0, 0.0], 2.0, 0.5) == [0.2, 0.9]


def test_the_blend_adds_weight_logits_per_standard_deviation_of_cf_pos():
    [score] = blend([0.5], [0.5], 2.0, 0.5)  # one standard deviation: +2 logits
    assert math.isclose(score, 1.0 / (1.0 + math.exp(-2.0)))


def test_the_blend_is_monotone_in_both_terms_and_stays_a_probability():
    probabilities = [0.0, 1e-9, 0.1, 0.5, 0.9, 1.0]
    for cf in (0.01, 1.0, 1e6):
        scores = blend(probabilities, [cf] * len(probabilities), 2.0, 0.1)
        assert all(0.0 < s <= 1.0 for s in scores)
        assert scores == sorted(scores)
    by_cf = blend([0.3] * 4, [0.0, 0.1, 0.5, 2.0], 2.0, 0.1)
    assert by_cf == sorted(by_cf) and by_cf[0] < by_cf[-1]


def test_cf_scale_is_the_lineage_spread_of_cf_pos():
    live = FeatureSpec((FeatureDef("l_cf_pos", "raw", "live", "cf_pos", mean=0.1, std=0.4),))
    assert cf_scale(live) == 0.4
    assert cf_scale(FeatureSpec((FeatureDef("user_id", "id", "base", "user_id"),))) is None


def test_calibration_recovers_a_known_slope_and_intercept_and_shrinks_a_saturated_model():
    import numpy as np

    from easyrec_online.artifacts.blend import expected_calibration_error, fit_calibration

    rng = np.random.RandomState(0)
    z = rng.normal(0.0, 3.0, 4000)
    y = (rng.rand(4000) < 1.0 / (1.0 + np.exp(-(0.2 * z - 0.5)))).astype(float)
    a, b = fit_calibration(y, z)
    assert abs(a - 0.2) < 0.03 and abs(b + 0.5) < 0.1, (a, b)
    calibrated = 1.0 / (1.0 + np.exp(-(a * z + b)))
    assert expected_calibration_error(y, calibrated) < 0.03 < expected_calibration_error(y, 1.0 / (1.0 + np.exp(-z)))
    # A model trained to saturation on little data: logits of +-30, right four times in five. Calibrated
    # on a holdout of 40 rows, its scores are probabilities again (no 1.0 and 0.0), in the same order.
    right = rng.rand(4000) < 0.8
    saturated = np.where((y > 0) == right, 30.0, -30.0) + rng.normal(0.0, 1.0, 4000)
    a, b = fit_calibration(y[:40], saturated[:40])
    scores = 1.0 / (1.0 + np.exp(-(a * saturated + b)))
    assert 0.0 < a < 0.5 and scores.max() < 0.9999 and scores.min() > 1e-4, (a, b)
    assert list(np.argsort(scores)) == list(np.argsort(saturated))


def test_an_empty_holdout_keeps_the_models_own_scores_and_a_small_one_moves_them_little():
    from easyrec_online.artifacts.blend import fit_calibration

    assert fit_calibration([], []) == (1.0, 0.0)
    a, b = fit_calibration([1, 0], [1.0, -1.0])  # two rows that agree with the model
    assert 0.9 < a < 1.5 and abs(b) < 0.1, (a, b)
    assert fit_calibration([0, 1], [3.0, -3.0])[0] > 0  # the order is never reversed


def test_the_own_actions_term_moves_only_the_items_the_user_acted_on():
    from easyrec_online.artifacts.blend import ServedBlend, served_scores

    spec = FeatureSpec((FeatureDef("l_cf_pos", "raw", "live", "cf_pos", mean=0.1, std=0.4),))
    live = {"cf_pos": [0.0, 0.0, 0.0], "self": [2.0, -1.5, 0.0], "user_actions": [1.0] * 3, "item_pos": [0.0] * 3}
    scores = served_scores([0.0, 0.0, 0.0], live, spec, ServedBlend(self_weight=1.0))
    assert math.isclose(scores[0], 1.0 / (1.0 + math.exp(-2.0))) and math.isclose(scores[1], 1.0 / (1.0 + math.exp(1.5)))
    assert scores[2] == 0.5
    assert served_scores([0.0] * 3, live, spec, ServedBlend()) == [0.5] * 3  # weight 0: the model's


def test_served_scores_calibrate_the_model_then_the_blend_and_clip_only_where_a_term_applies():
    from easyrec_online.artifacts.blend import ServedBlend, served_scores

    spec = FeatureSpec((FeatureDef("l_cf_pos", "raw", "live", "cf_pos", mean=0.1, std=0.5),))
    live = {"cf_pos": [0.0, 0.5, 0.5], "self": [0.0] * 3, "user_actions": [1.0] * 3, "item_pos": [0.0] * 3}
    served = ServedBlend(calibration=(0.5, 1.0), cf=2.0, final=(2.0, -1.0))
    scores = served_scores([4.0, 4.0, 40.0], live, spec, served)
    # 0.5 * 4 + 1 = 3, no term: 3; with one standard deviation of cf_pos: 3 + 2 = 5; a logit of 40
    # is 21 calibrated, clipped to 16.118 where a term applies: 18.118; then 2 z - 1.
    expected = [2 * 3.0 - 1, 2 * 5.0 - 1, 2 * (16.118 + 2.0) - 1]
    assert scores == pytest.approx([1.0 / (1.0 + math.exp(-z)) for z in expected])
    assert served_scores([0.3], None, spec, ServedBlend()) == pytest.approx([1.0 / (1.0 + math.exp(-0.3))])


def test_items_like_what_the_user_did_not_like_lately_go_down():
    from easyrec_online.artifacts.blend import ServedBlend, served_scores

    spec = FeatureSpec((FeatureDef("l_cf_pos", "raw", "live", "cf_pos", mean=0.1, std=0.5),
                        FeatureDef("l_cf_neg", "raw", "live", "cf_neg", mean=0.1, std=0.25)))
    live = {"cf_pos": [0.5, 0.0, 0.0], "cf_neg": [0.0, 0.25, 0.0], "self": [0.0] * 3, "user_actions": [1.0] * 3,
            "item_pos": [0.0] * 3}
    liked, disliked, untouched = served_scores([0.0] * 3, live, spec, ServedBlend(cf=1.0, cf_neg=2.0))
    assert liked == pytest.approx(1.0 / (1.0 + math.exp(-1.0))) and disliked == pytest.approx(1.0 / (1.0 + math.exp(2.0)))
    assert untouched == 0.5
    assert served_scores([0.0] * 3, live, spec, ServedBlend(cf=1.0))[1] == 0.5  # weight 0: no cf_neg term


def test_a_users_own_newest_actions_on_an_item_outweigh_what_the_model_learnt_of_the_pair():
    """A confident model (logits of +-13 after a group's first taste) cannot hold an item the user has since
    turned against: where the self term applies, the model counts at most SELF_PRIOR_BAND."""
    from easyrec_online.artifacts.blend import SELF_PRIOR_BAND, ServedBlend, served_scores

    spec = FeatureSpec((FeatureDef("l_cf_pos", "raw", "live", "cf_pos", mean=0.1, std=0.5),))
    # Bought X twice long ago, bounced off it 3 times lately; the other way round for Y.
    x_self, y_self = -(1.0 + 0.9 + 0.81) + 0.9 ** 4 + 0.9 ** 5, (1.0 + 0.9 + 0.81) - 0.9 ** 4 - 0.9 ** 5
    live = {"cf_pos": [0.0] * 3, "self": [x_self, y_self, 0.0], "user_actions": [5.0] * 3, "item_pos": [0.0] * 3}
    x, y, untouched = served_scores([13.0, -13.0, 13.0], live, spec, ServedBlend(self_weight=1.0))
    assert y > x and untouched > x
    assert x == pytest.approx(1.0 / (1.0 + math.exp(-(SELF_PRIOR_BAND + x_self))))


def _miscalibrated(n, seed):
    """Logits whose true log-odds are not a straight line of them: a long right tail (as the CF term
    gives the blended logit) that a sigmoid fitted through the bulk overstates."""
    import numpy as np

    rng = np.random.RandomState(seed)
    u = np.concatenate([rng.normal(-1.5, 0.6, int(n * 0.8)), rng.exponential(6.0, n - int(n * 0.8))])
    truth = np.where(u < 0, u - 0.3, 0.15 * u - 0.3)  # bends: u = 6 is liked 65 %, not 99.7 %
    labels = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-truth))).astype(float)
    return u, labels


def test_the_recalibration_corrects_what_a_straight_line_cannot_on_rows_it_was_not_fitted_on():
    import numpy as np

    from easyrec_online.artifacts.blend import (
        expected_calibration_error,
        fit_calibration,
        fit_recalibration,
        recalibrated,
    )

    u, y = _miscalibrated(8000, seed=1)
    held_u, held_y = _miscalibrated(8000, seed=2)
    a, b = fit_calibration(y, u)
    platt = 1.0 / (1.0 + np.exp(-(a * held_u + b)))
    knots = fit_recalibration(y, a * u + b)
    fixed = 1.0 / (1.0 + np.exp(-recalibrated(a * held_u + b, knots)))
    assert expected_calibration_error(held_y, platt) > 0.03
    assert expected_calibration_error(held_y, fixed) < 0.02


def test_the_recalibration_is_strictly_increasing_everywhere_and_needs_enough_rows():
    import numpy as np

    from easyrec_online.artifacts.blend import RECALIBRATION_MIN_ROWS, fit_recalibration, recalibrated

    u, y = _miscalibrated(3000, seed=3)
    xs, ys = fit_recalibration(y, u)
    assert len(xs) >= 3 and all(np.diff(xs) > 0) and all(np.diff(ys) > 0)
    grid = np.linspace(-40.0, 40.0, 4001)  # beyond the knots too: parallel to the identity, no ties
    assert all(np.diff(recalibrated(grid, (xs, ys))) > 0)
    assert fit_recalibration(y[:RECALIBRATION_MIN_ROWS - 1], u[:RECALIBRATION_MIN_ROWS - 1]) == ((), ())
    assert fit_recalibration([1.0] * 2000, u[:2000]) == ((), ())  # one class: nothing to fit
    assert list(recalibrated([0.5, -2.0], ((), ()))) == [0.5, -2.0]  # none: the identity


def test_served_scores_apply_the_recalibration_after_the_final_calibration():
    from easyrec_online.artifacts.blend import ServedBlend, served_scores

    served = ServedBlend(final=(2.0, -1.0), recalibration=((0.0, 4.0), (-1.0, 1.0)))
    # u = 2 * 1 - 1 = 1: a quarter of the way from knot 0 to knot 4, R(1) = -0.5; u = 2 * 5 - 1 = 9: past
    # the last knot, R(9) = 1 + (9 - 4) = 6.
    assert served_scores([1.0, 5.0], None, FeatureSpec(()), served) == pytest.approx(
        [1.0 / (1.0 + math.exp(0.5)), 1.0 / (1.0 + math.exp(-6.0))])


def test_a_version_serves_the_blend_its_evaluation_decided():
    """What the trainer writes into serving_defaults (modeling/job.blend_defaults) is what serving reads
    back (ServedBlend.of), the recalibration's knots to the last bit."""
    from easyrec_online.artifacts.blend import ServedBlend
    from easyrec_online.modeling.job import blend_defaults
    from easyrec_online.state.registry import ModelVersion

    decided = ServedBlend(calibration=(0.7, -0.2), cf=1.5, self_weight=1.0, final=(0.3, -1.1), cf_neg=0.25,
                          recalibration=((-2.1234567890123, 0.5, 7.25), (-1.9, 0.1, 1.3333333333333333)))
    def version(blend):
        return ModelVersion(version="v1", lineage="v1", model_name="deepfm", s3_prefix="models/v1/v1/",
                            created_at="2026-12-07T00:00:00Z", serving_defaults=blend_defaults(blend))

    assert ServedBlend.of(version(decided)) == decided
    assert ServedBlend.of(version(ServedBlend())).recalibration == ((), ())
