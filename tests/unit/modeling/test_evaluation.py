"""The promotion gate's holdout scores: the CF blend weight fitted on the holdout (modeling/evaluation.py)."""
import random

import pytest

from easyrec_online.modeling import evaluation
from easyrec_online.modeling.evaluation import CF_BLEND_FIT_MIN_ROWS, _auc, fit_cf_blend, user_pair_auc
from tests.unit.fakes import FakeScorer


def _holdout(cf_helps, n=CF_BLEND_FIT_MIN_ROWS, seed=3):
    rng = random.Random(seed)
    labels, probs, cf = [], [], []
    for _ in range(n):
        label = rng.random() < 0.4
        labels.append(1.0 if label else 0.0)
        probs.append(min(0.95, max(0.05, 0.4 + (0.1 if label else -0.1) + rng.gauss(0, 0.2))))  # a weak model
        informative = label if cf_helps else not label
        cf.append(max(0.0, rng.gauss(0.3 if informative else 0.0, 0.1)))
    return labels, probs, cf


def test_auc_by_ranks():
    assert _auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert _auc([0, 1], [0.5, 0.5]) == 0.5


def test_the_fit_blends_in_cf_where_it_tells_likes_apart():
    labels, probs, cf = _holdout(cf_helps=True)
    assert fit_cf_blend(labels, probs, cf, 0.15, 4.0) > 0
    assert fit_cf_blend(labels, probs, cf, 0.15, 0.0) == 0.0  # CF_BLEND_MAX=0: never


def test_the_fit_leaves_cf_out_where_it_misleads():
    labels, probs, cf = _holdout(cf_helps=False)
    assert fit_cf_blend(labels, probs, cf, 0.15, 4.0) == 0.0


def test_too_small_or_one_class_holdouts_keep_the_parents_weight():
    labels, probs, cf = _holdout(cf_helps=True, n=CF_BLEND_FIT_MIN_ROWS - 1)
    assert fit_cf_blend(labels, probs, cf, 0.15, 4.0) is None
    labels, probs, cf = _holdout(cf_helps=True)
    assert fit_cf_blend([1.0] * len(labels), probs, cf, 0.15, 4.0) is None


def test_user_pair_auc_compares_only_one_users_items():
    # Each user's items are ordered right, though user 2's all score below user 1's.
    assert user_pair_auc([1, 0, 1, 0], [0.9, 0.8, 0.2, 0.1], ["u1", "u1", "u2", "u2"]) == 1.0
    assert _auc([1, 0, 1, 0], [0.9, 0.8, 0.2, 0.1]) == 0.75
    assert user_pair_auc([1, 1, 0], [0.1, 0.2, 0.3], ["u1", "u1", "u2"]) is None  # nobody has both


def _two_kinds_of_users(n=CF_BLEND_FIT_MIN_ROWS):
    """Eager users (mostly likes, high model scores) and reluctant ones (mostly dislikes, low scores);
    within a user the model cannot tell, CF can, but the reluctant users' CF scores are all far above
    the eager ones'."""
    rng = random.Random(5)
    labels, probs, cf, users = [], [], [], []
    for row in range(n):
        user = row % 20
        eager = user < 10
        label = rng.random() < (0.7 if eager else 0.3)
        labels.append(1.0 if label else 0.0)
        probs.append(min(0.95, max(0.05, (0.7 if eager else 0.3) + rng.gauss(0, 0.05))))
        cf.append((0.0 if eager else 5.0) + (0.1 if label else 0.0) + rng.gauss(0, 0.01))
        users.append(user)
    return labels, probs, cf, users


def test_the_fit_ranks_each_users_items_but_keeps_the_global_auc(monkeypatch):
    labels, probs, cf, users = _two_kinds_of_users()
    assert fit_cf_blend(labels, probs, cf, 1.0, 4.0, users) == 0.0  # it would cost the global AUC
    monkeypatch.setattr(evaluation, "CF_BLEND_AUC_SLACK", 1.0)
    assert fit_cf_blend(labels, probs, cf, 1.0, 4.0, users) > 0  # what a per-user ranking alone wants


def _popularity_lineage(items=30):
    """A catalog where item-k has k likes (by distinct users), and a live-feature spec over it."""
    from easyrec_online.artifacts.catalog import Catalog
    from easyrec_online.artifacts.features.derive import derive_spec
    from easyrec_online.artifacts.features.live import LiveReplay
    from easyrec_online.artifacts.features.sampling import training_examples
    from easyrec_online.ingest.actions import ActionIn, StoredAction

    actions = [StoredAction.accept(ActionIn.model_validate({
        "user_id": "u{}".format(u), "item_id": "item-{}".format(k), "label": 1, "action_type": "like",
        "timestamp": 1764547200 + 10 * k + u})) for k in range(items) for u in range(k)]
    catalog = Catalog().add(actions)
    examples = training_examples(actions, 1, 3, sampling="always", live=LiveReplay(Catalog()))
    return catalog, derive_spec(actions, live_examples=examples), actions


class FavoursLowIds(FakeScorer):
    """Scores each item by how small its number is: a model with no idea of popularity."""

    def probabilities(self, columns):
        return [1.0 / (2.0 + int(str(v).split("-")[-1])) for v in columns["item_id"]]


def test_new_users_get_popularity_where_the_holdouts_likes_are_the_popular_items():
    from easyrec_online.artifacts.features.encode import NO_PROFILES, Context, Example
    from easyrec_online.ingest.actions import parse_timestamp

    catalog, spec, actions = _popularity_lineage()
    context = Context("like", parse_timestamp(actions[-1].timestamp))

    def holdout(items):
        return [Example("someone", item, context, 1.0) for item in items]

    popular = holdout(["item-{}".format(29 - k % 3) for k in range(evaluation.NEW_USER_FIT_MIN_LIKED)])
    obscure = holdout(["item-{}".format(1 + k % 3) for k in range(evaluation.NEW_USER_FIT_MIN_LIKED)])
    fit = evaluation.fit_new_user_popularity
    assert fit(FavoursLowIds(), popular, spec, NO_PROFILES, catalog, context) > 0
    assert fit(FavoursLowIds(), obscure, spec, NO_PROFILES, catalog, context) == 0.0  # the model is right as it is
    assert fit(FavoursLowIds(), popular[:-1], spec, NO_PROFILES, catalog, context) is None  # too few to tell


def _two_taste_lineage():
    """Users u0-u9 like items a0-a9, users v0-v9 like b0-b9: a catalog whose item similarities say so."""
    from easyrec_online.artifacts.catalog import Catalog
    from easyrec_online.artifacts.features.derive import derive_spec
    from easyrec_online.artifacts.features.live import LiveReplay
    from easyrec_online.artifacts.features.sampling import training_examples
    from easyrec_online.ingest.actions import ActionIn, StoredAction
    from easyrec_online.modeling.job import version_catalog

    actions = [StoredAction.accept(ActionIn.model_validate({
        "user_id": "{}{}".format(group, u), "item_id": "{}{}".format(kind, k), "label": 1, "action_type": "like",
        "timestamp": 1764547200 + 100 * u + k})) for group, kind in (("u", "a"), ("v", "b"))
        for u in range(10) for k in range(10) if (u + k) % 4]  # each user leaves some of their kind unliked
    catalog = version_catalog(Catalog(), actions, "cosine")
    examples = training_examples(actions, 1, 3, sampling="always", live=LiveReplay(Catalog()))
    return catalog, derive_spec(actions, live_examples=examples), actions


class FavoursB(FakeScorer):
    """A model that thinks everyone prefers the b items (slightly, by number)."""

    def probabilities(self, columns):
        return [(0.6 if str(v).startswith("b") else 0.4) - 0.001 * int(str(v)[1:]) for v in columns["item_id"]]


def test_the_cf_weight_is_fitted_in_full_ranking_over_the_catalog(monkeypatch):
    from easyrec_online.artifacts.features.encode import NO_PROFILES, Context, Example
    from easyrec_online.ingest.actions import parse_timestamp

    monkeypatch.setattr(evaluation, "NEW_USER_FIT_MIN_LIKED", 5)
    catalog, spec, actions = _two_taste_lineage()
    context = Context("like", parse_timestamp(actions[-1].timestamp))
    # What u-users went on to like: the a items they had left (co-occurring with their history).
    liked_a = [Example("u{}".format(u), "a{}".format(k), context, 1.0) for u in range(10) for k in range(10)
               if not (u + k) % 4]
    liked_b = [Example("u{}".format(u), "b{}".format(k), context, 1.0) for u in range(10) for k in range(3)]
    disliked = [Example("v{}".format(u), "a{}".format(u), context, 0.0) for u in range(10)]

    def fit(model, examples):
        probs = model.score({"item_id": [e.item_id for e in examples]})
        cf_pos = [float((e.live or {}).get("cf_pos", 0.0)) for e in examples]
        return evaluation.fit_cf_blend_in_ranking(model, examples, probs, cf_pos, spec, NO_PROFILES, catalog,
                                                  context, 8.0)

    assert fit(FavoursB(), liked_a + disliked)[0] > 0  # the model is wrong; the user's history is right
    assert fit(FavoursB(), liked_b + disliked) == (0.0, 0.0)  # the model is right: the history would mislead
    assert fit(FavoursB(), liked_a[:4] + disliked) is None  # too few liked actions to tell


def test_the_gate_refuses_a_degenerate_candidate_whatever_the_current_version_scores():
    from easyrec_online.modeling.evaluation import degenerate, promotion_decision

    awful = {"auc": 0.14, "logloss": 0.5, "base_logloss": 0.6, "num_eval_rows": 100.0, "num_positive": 30.0}
    decision = promotion_decision(awful, {"auc": 0.14}, 0.02, "v1")  # as bad as the current: still refused
    assert decision["promote"] is False and decision["floor"] and "below chance" in decision["reason"]
    noisy = dict(awful, auc=0.40, num_eval_rows=10.0, num_positive=3.0)  # 21 pairs: cannot tell it from chance
    assert degenerate(noisy) is None and promotion_decision(noisy, None, 0.02, None)["promote"] is True
    overconfident = {"auc": 0.59, "logloss": 8.8, "base_logloss": 0.69, "num_eval_rows": 50.0, "num_positive": 25.0}
    assert "worse than the base rate" in promotion_decision(overconfident, {"auc": 0.5}, 0.02, "v1")["reason"]
    small = dict(overconfident, num_eval_rows=8.0, num_positive=4.0)  # too few rows to judge a log loss
    assert degenerate(small) is None
    fine = {"auc": 0.8, "logloss": 0.4, "base_logloss": 0.69, "num_eval_rows": 50.0, "num_positive": 25.0}
    assert promotion_decision(fine, {"auc": 0.79}, 0.02, "v1")["promote"] is True


def test_a_candidate_is_judged_on_calibrated_scores():
    """score_examples(fit=True) fits the calibration on the holdout: a saturated model's log loss falls
    below the base rate's, its AUC is the same, and the fitted (a, b) are reported for the version."""
    from easyrec_online.artifacts.features.encode import NO_PROFILES, Context, Example
    from easyrec_online.artifacts.features.spec import FeatureDef, FeatureSpec
    from easyrec_online.ingest.actions import parse_timestamp
    from easyrec_online.modeling.evaluation import score_examples

    class Saturated(FakeScorer):
        def probabilities(self, columns):  # right 70 % of the time (item n is liked when n is odd), and sure
            return [1.0 - 1e-12 if (int(n) % 2 == 1) == (int(n) % 10 < 7) else 1e-12 for n in columns["item_id"]]

    spec = FeatureSpec((FeatureDef("user_id", "id", "base", "user_id"), FeatureDef("item_id", "id", "base", "item_id")))
    context = Context("like", parse_timestamp("2026-11-20T12:00:00Z"))
    examples = [Example(1, str(n), context, float(n % 2)) for n in range(200)]
    raw = score_examples(Saturated(), examples, spec, NO_PROFILES)
    fitted = score_examples(Saturated(), examples, spec, NO_PROFILES, fit=True)
    assert raw["logloss"] > raw["base_logloss"] and fitted["logloss"] <= fitted["base_logloss"] + 1e-9, (raw, fitted)
    assert fitted["auc"] == raw["auc"] and 0 < fitted["calibration_a"] < 1.0 and fitted["ece"] < raw["ece"]


def test_the_calibration_is_fitted_on_one_half_of_the_holdouts_users_and_judged_on_the_other():
    """Honest evaluation: nothing the gate judges on chose the candidate's calibration or weights."""
    from easyrec_online.artifacts.features.encode import NO_PROFILES, Context, Example
    from easyrec_online.artifacts.features.spec import FeatureDef, FeatureSpec
    from easyrec_online.ingest.actions import parse_timestamp
    from easyrec_online.modeling.evaluation import FIT_SPLIT_MIN_ROWS, score_examples, split_for_fitting

    class Odd(FakeScorer):
        def probabilities(self, columns):
            return [0.9 if int(n) % 2 else 0.3 for n in columns["item_id"]]

    spec = FeatureSpec((FeatureDef("user_id", "id", "base", "user_id"), FeatureDef("item_id", "id", "base", "item_id")))
    context = Context("like", parse_timestamp("2026-11-20T12:00:00Z"))
    examples = [Example(n % 40, str(n), context, float(n % 2)) for n in range(FIT_SPLIT_MIN_ROWS)]
    fit, judged = split_for_fitting(examples)
    assert fit and judged and not {e.user_id for e in fit} & {e.user_id for e in judged}
    assert len(fit) + len(judged) == len(examples)
    assert split_for_fitting(examples[:FIT_SPLIT_MIN_ROWS - 1]) == ([], examples[:FIT_SPLIT_MIN_ROWS - 1])
    honest = score_examples(Odd(), judged, spec, NO_PROFILES, fit=True, fit_on=fit)
    on_fit = score_examples(Odd(), fit, spec, NO_PROFILES, fit=True)
    assert honest["num_eval_rows"] == len(judged) and honest["num_fit_rows"] == len(fit)
    assert honest["calibration_a"] == on_fit["calibration_a"]  # the fit's, applied to the judged half


def test_a_run_too_small_to_hold_out_fits_nothing_on_its_own_training_rows():
    """Platt scaling on rows the model has learnt amplifies its confidence: a new lineage gets a temperature
    (its logits' spread brought to UNFITTED_LOGIT_STD), an update keeps its parent's calibration, and the
    floors say nothing of in-sample metrics."""
    from easyrec_online.artifacts.blend import UNFITTED_LOGIT_STD, ServedBlend
    from easyrec_online.artifacts.features.encode import NO_PROFILES, Context, Example
    from easyrec_online.artifacts.features.spec import FeatureDef, FeatureSpec
    from easyrec_online.ingest.actions import parse_timestamp
    from easyrec_online.modeling.evaluation import degenerate, score_examples

    class Sure(FakeScorer):  # right on every training row, and certain
        def probabilities(self, columns):
            return [1.0 - 1e-12 if int(n) % 2 else 1e-12 for n in columns["item_id"]]

    spec = FeatureSpec((FeatureDef("user_id", "id", "base", "user_id"), FeatureDef("item_id", "id", "base", "item_id")))
    context = Context("like", parse_timestamp("2026-11-20T12:00:00Z"))
    rows = [Example(1, str(n), context, float(n % 2)) for n in range(40)]
    first = score_examples(Sure(), rows, spec, NO_PROFILES, fit=True, honest=False)
    assert first["calibration_a"] == pytest.approx(UNFITTED_LOGIT_STD / 27.631, rel=1e-3)  # std of +-27.631
    assert (first["final_calibration_a"], first["final_calibration_b"]) == (1.0, 0.0) and first["in_sample"]
    parent = ServedBlend(calibration=(0.3, -0.1), final=(0.8, 0.2))
    update = score_examples(Sure(), rows, spec, NO_PROFILES, parent, fit=True, honest=False)
    assert (update["calibration_a"], update["calibration_b"]) == (0.3, -0.1)
    assert (update["final_calibration_a"], update["final_calibration_b"]) == (0.8, 0.2)
    assert degenerate(dict(first, auc=0.1, num_positive=20, num_eval_rows=40)) is None


def test_the_paired_auc_difference_agrees_with_a_bootstrap():
    import numpy as np

    from easyrec_online.modeling.evaluation import _auc, paired_auc_difference

    rng = np.random.RandomState(0)
    labels = rng.randint(0, 2, 300)
    sharp, blurred = labels + rng.normal(0, 1, 300), labels + rng.normal(0, 1.5, 300)
    difference, standard_error = paired_auc_difference(labels, sharp, blurred)
    assert abs(difference - (_auc(list(labels), list(sharp)) - _auc(list(labels), list(blurred)))) < 1e-12
    resampled = []
    for _ in range(500):
        rows = rng.randint(0, 300, 300)
        resampled.append(_auc(list(labels[rows]), list(sharp[rows])) - _auc(list(labels[rows]), list(blurred[rows])))
    assert abs(standard_error - np.std(resampled)) < 0.2 * standard_error
    assert paired_auc_difference(labels, sharp, sharp) == (0.0, 0.0)
    assert paired_auc_difference([1, 0, 0], [0.9, 0.1, 0.2], [0.8, 0.3, 0.1]) is None  # one positive


def test_the_gate_refuses_a_drop_only_when_it_is_material_and_beyond_noise():
    import numpy as np

    from easyrec_online.modeling.evaluation import PairedScores, _auc, promotion_decision

    rng = np.random.RandomState(1)

    def judged(rows, candidate_noise, baseline_noise):
        labels = rng.randint(0, 2, rows)
        candidate, baseline = labels + rng.normal(0, candidate_noise, rows), labels + rng.normal(0, baseline_noise, rows)
        metrics = [{"auc": _auc(list(labels), list(s)), "logloss": 0.5, "base_logloss": 0.69,
                    "num_eval_rows": float(rows), "num_positive": float(labels.sum())} for s in (candidate, baseline)]
        return metrics[0], metrics[1], PairedScores(list(labels), list(candidate), list(baseline))

    candidate, baseline, paired = judged(60, 1.1, 0.9)  # worse by chance on a small holdout
    assert baseline["auc"] - candidate["auc"] > 0.02
    decision = promotion_decision(candidate, baseline, 0.02, "v1", paired)
    assert decision["promote"] is True and "within noise" in decision["reason"], decision
    assert promotion_decision(candidate, baseline, 0.02, "v1")["promote"] is False  # without the scores: as before
    candidate, baseline, paired = judged(2000, 3.0, 0.5)  # much worse, on many rows
    decision = promotion_decision(candidate, baseline, 0.02, "v1", paired)
    assert decision["promote"] is False and "standard errors past it" in decision["reason"], decision
    assert promotion_decision(baseline, baseline, -1.0, "v1", PairedScores(paired.labels, paired.baseline, paired.baseline))[
        "promote"] is False  # a negative tolerance demands a gain: none is no gain
    _, _, paired = judged(60, 1.0, 1.0)  # two noisy scorings: a standard error well above 0.01
    even = {"auc": 0.7, "logloss": 0.5, "base_logloss": 0.69, "num_eval_rows": 60.0, "num_positive": 30.0}
    assert promotion_decision(even, even, -0.01, "v1", paired)["promote"] is False  # no gain of 0.01: refused


def test_a_large_holdout_fits_the_recalibration_and_a_small_one_keeps_the_parents():
    """R is fitted on the fitting half where it has RECALIBRATION_MIN_ROWS rows, and the version is
    served (blend_out) and judged with it; an update's holdout of tens of rows keeps its parent's final
    calibration and R rather than fitting a line to them."""
    import math as m

    from easyrec_online.artifacts.blend import ServedBlend
    from easyrec_online.artifacts.features.encode import NO_PROFILES, Context, Example
    from easyrec_online.artifacts.features.spec import FeatureDef, FeatureSpec
    from easyrec_online.ingest.actions import parse_timestamp
    from easyrec_online.modeling.evaluation import score_examples, split_for_fitting

    class Bent(FakeScorer):  # its logit is the item id's, and the truth bends away from it above 0
        def probabilities(self, columns):
            return [1.0 / (1.0 + m.exp(-float(n) / 100.0)) for n in columns["item_id"]]

    rng = random.Random(3)
    spec = FeatureSpec((FeatureDef("user_id", "id", "base", "user_id"), FeatureDef("item_id", "id", "base", "item_id")))
    context = Context("like", parse_timestamp("2026-11-20T12:00:00Z"))
    rows = []
    for k in range(4000):
        z = rng.gauss(-1.5, 0.6) if k % 5 else rng.expovariate(1.0 / 6.0)
        truth = z - 0.3 if z < 0 else 0.15 * z - 0.3
        rows.append(Example("u{}".format(k), str(int(round(z * 100))), context,
                            1.0 if rng.random() < 1.0 / (1.0 + m.exp(-truth)) else 0.0))
    fit_on, judged = split_for_fitting(rows)
    served = []
    metrics = score_examples(Bent(), judged, spec, NO_PROFILES, fit=True, fit_on=fit_on, blend_out=served)
    (fitted,) = served
    assert metrics["recalibration_knots"] >= 3 and len(fitted.recalibration[0]) == metrics["recalibration_knots"]
    assert metrics["ece"] < 0.03
    plain = score_examples(Bent(), judged, spec, NO_PROFILES, ServedBlend(final=fitted.final, calibration=fitted.calibration))
    assert plain["ece"] > metrics["ece"] + 0.01  # the straight line alone, on the same judged rows
    update = []
    score_examples(Bent(), rows[:80], spec, NO_PROFILES, fitted, fit=True, blend_out=update)
    assert update[0].final == fitted.final and update[0].recalibration == fitted.recalibration
