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
