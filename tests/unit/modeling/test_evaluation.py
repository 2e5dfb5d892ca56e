"""The promotion gate's holdout scores: the CF blend weight fitted on the holdout (modeling/evaluation.py)."""
import random

from easyrec_online.modeling import evaluation
from easyrec_online.modeling.evaluation import CF_BLEND_FIT_MIN_ROWS, _auc, fit_cf_blend, user_pair_auc


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
