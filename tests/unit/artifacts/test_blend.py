"""The served score: the model's probability blended with the live CF score (artifacts/blend.py)."""
import math

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
