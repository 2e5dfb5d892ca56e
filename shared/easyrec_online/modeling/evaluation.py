"""Holdout evaluation and the promotion gate (model runtime): a candidate and the current version are
scored on the same held-out actions, each with its own lineage's features."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from easyrec_online.artifacts.blend import blend, cf_scale
from easyrec_online.artifacts.features.encode import Example, Profiles, encode
from easyrec_online.artifacts.features.spec import FeatureSpec

# The weights a fit tries (up to CF_BLEND_MAX), and the fewest holdout rows it fits on: below that
# (a warm update of a few dozen actions) one weight more or less is noise, and the version keeps its
# parent's.
CF_BLEND_GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
CF_BLEND_FIT_MIN_ROWS = 1000
# How much global holdout AUC a weight may cost against the unblended model's and still be chosen.
CF_BLEND_AUC_SLACK = 0.01


def _auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """ROC AUC by ranks (ties share their mean rank): pure Python, so the fit runs in either runtime."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2.0 + 1.0
        start = end + 1
    positives = sum(labels)
    negatives = len(labels) - positives
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def user_pair_auc(labels: Sequence[int], scores: Sequence[float], users: Sequence[Any]) -> Optional[float]:
    """The share of (liked, not liked) pairs of one user's items that the scores order right, over all
    users (ties count half): what ranking items for one user needs, unlike the global AUC, which also
    compares one user's scores with another's. None when no user has both classes."""
    groups: Dict[Any, List[int]] = {}
    for row, user in enumerate(users):
        groups.setdefault(user, []).append(row)
    right, pairs = 0.0, 0
    for rows in groups.values():
        y = [labels[r] for r in rows]
        positives = sum(y)
        if 0 < positives < len(y):
            count = positives * (len(y) - positives)
            right += _auc(y, [scores[r] for r in rows]) * count
            pairs += count
    return right / pairs if pairs else None


def fit_cf_blend(labels: Sequence[float], probs: Sequence[float], cf_pos: Sequence[float], scale: float,
                 largest: float, users: Optional[Sequence[Any]] = None) -> Optional[float]:
    """The CF blend weight (artifacts/blend.py) that ranks each user's holdout items best (user_pair_auc;
    the smallest among equals), among the weights whose global AUC stays within CF_BLEND_AUC_SLACK of
    the unblended model's (so calibration across users, which the promotion gate reads, is not given up
    for it). Without users, or with no user holding both classes, the global AUC decides. None when the
    holdout cannot tell (too few rows, one class)."""
    y = [1 if label >= 0.5 else 0 for label in labels]
    if len(y) < CF_BLEND_FIT_MIN_ROWS or not 0 < sum(y) < len(y):
        return None
    floor = _auc(y, list(probs)) - CF_BLEND_AUC_SLACK
    ranked_by_user = users is not None and user_pair_auc(y, probs, users) is not None
    best, best_score = 0.0, -1.0
    for weight in (w for w in CF_BLEND_GRID if w <= largest):
        scores = blend(probs, cf_pos, weight, scale) if weight else list(probs)
        global_auc = _auc(y, scores)
        if weight and global_auc < floor:
            continue
        score = user_pair_auc(y, scores, users) if ranked_by_user else global_auc
        if score > best_score + 1e-4:
            best, best_score = weight, score
    return best


def score_examples(scorer: Any, examples: Sequence[Example], spec: FeatureSpec, profiles: Profiles,
                   cf_blend: float = 0.0, fit_up_to: float = 0.0) -> Dict[str, float]:
    """Holdout metrics of a loaded scorer, its inputs built with its own lineage's spec, its scores
    blended with the examples' cf_pos as serving blends them (artifacts/blend.py): with weight
    `cf_blend`, or (`fit_up_to` > 0) the weight fitted here on this holdout, when it can tell (else
    `cf_blend`). metrics["cf_blend"] is the weight used."""
    from easyrec_online.artifacts.scorer import auc_and_logloss

    rows = [encode(e, spec, profiles) for e in examples]
    probs = [float(p) for p in scorer.score({n: [r[n] for r in rows] for n in spec.names})]
    scale = cf_scale(spec)
    weight = 0.0
    if scale is not None:
        cf_pos = [float((e.live or {}).get("cf_pos", 0.0)) for e in examples]
        fitted = (fit_cf_blend([e.label for e in examples], probs, cf_pos, scale, fit_up_to,
                               [e.user_id for e in examples]) if fit_up_to > 0 else None)
        weight = cf_blend if fitted is None else fitted
        if weight:
            probs = blend(probs, cf_pos, weight, scale)
    metrics = auc_and_logloss([e.label for e in examples], probs)
    metrics["cf_blend"] = weight
    return metrics


def evaluate(export_dir: str, examples: Sequence[Example], spec: FeatureSpec, profiles: Profiles,
             cf_blend: float = 0.0, fit_up_to: float = 0.0) -> Dict[str, float]:
    """Holdout metrics of a SavedModel on disk."""
    from easyrec_online.artifacts.scorer import SavedModelScorer

    scorer = SavedModelScorer(export_dir)
    try:
        return score_examples(scorer, examples, spec, profiles, cf_blend, fit_up_to)
    finally:
        scorer.close()


def promotion_decision(candidate: Dict[str, float], baseline: Optional[Dict[str, float]], tolerance: float,
                       baseline_version: Optional[str]) -> Dict[str, Any]:
    decision: Dict[str, Any] = {"tolerance": tolerance, "candidate_auc": candidate.get("auc"),
                                "baseline_version": baseline_version,
                                "baseline_auc": baseline.get("auc") if baseline else None}
    if baseline is None or baseline.get("auc") is None or candidate.get("auc") is None:
        decision.update(promote=True, reason="no comparable baseline AUC on this holdout")
    elif candidate["auc"] >= baseline["auc"] - tolerance:
        decision.update(promote=True, reason="holdout AUC {:.4f} vs current {:.4f} (tolerance {})".format(
            candidate["auc"], baseline["auc"], tolerance))
    else:
        decision.update(promote=False, reason="holdout AUC {:.4f} is worse than current version {} ({:.4f}) by "
                        "more than {}".format(candidate["auc"], baseline_version, baseline["auc"], tolerance))
    return decision
