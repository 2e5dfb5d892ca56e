"""Holdout evaluation and the promotion gate (model runtime): a candidate and the current version are
scored on the same held-out actions, each with its own lineage's features."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from easyrec_online.artifacts.blend import (
    ServedBlend,
    base_rate_logloss,
    blend,
    blended_logits,
    cf_scale,
    expected_calibration_error,
    fit_calibration,
    fit_recalibration,
    live_scale,
    new_user_popularity,
    recalibrated,
    unfitted_calibration,
)
from easyrec_online.artifacts.catalog import Catalog
from easyrec_online.artifacts.features.encode import Context, Example, Profiles, columns_for_pairs, encode
from easyrec_online.artifacts.features.live import live_columns
from easyrec_online.artifacts.features.spec import FeatureSpec
from easyrec_online.ingest.actions import id_key
from easyrec_online.state.registry import NEW_USER_POPULARITY_KEY

# The weights a fit tries (up to CF_BLEND_MAX), and the fewest holdout rows it fits on: below that
# (a warm update of a few dozen actions) one weight more or less is noise, and the version keeps its
# parent's.
CF_BLEND_GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
CF_BLEND_FIT_MIN_ROWS = 1000
# The CF weight a new lineage serves with when its holdout cannot fit one (a young deployment: a few
# hundred actions): with 0, what the user did lately would count in no ranking until a holdout had
# CF_BLEND_FIT_MIN_ROWS rows. On MovieLens the fits chose 3-4.
CF_BLEND_PRIOR = 1.0
# The weights of cf_neg (items like what the user did not like lately go down) that the ranking fit
# tries beside each CF weight, and what a new lineage serves with when its holdout cannot tell.
CF_NEG_BLEND_GRID = (0.0, 0.5, 1.0, 2.0)
CF_NEG_BLEND_PRIOR = 1.0
# How much global holdout AUC a weight may cost against the unblended model's and still be chosen.
CF_BLEND_AUC_SLACK = 0.01
# The new-user popularity weight (artifacts/blend.new_user_popularity): the weights tried, and the
# fewest liked holdout actions it is fitted on (fewer: the lineage keeps 0, the model's own scores).
NEW_USER_BLEND_GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
NEW_USER_FIT_MIN_LIKED = 100
NEW_USER_NAME = "\x00new-user"  # a user id no client can send (ids are cleaned of control characters)
# The CF weight in full ranking (fit_cf_blend_in_ranking): at most this many holdout users are ranked
# over the whole catalog (each ranking scores every item once: 60 users of MovieLens are 100k rows).
CF_RANK_FIT_USERS = 60


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


def _ndcg_at_10(scores: Any, targets: Any) -> float:
    """Summed NDCG@10 of the rows `targets` in one ranking by `scores` (callers divide by how many they
    ranked); tied scores share their places
    (a fit must not gain by tying scores)."""
    import numpy as np

    ordered = np.sort(scores)
    right = np.searchsorted(ordered, scores[targets], side="right")
    rank = (len(scores) - right) + (right - np.searchsorted(ordered, scores[targets], side="left") - 1) / 2.0
    return float(np.where(rank < 10, 1.0 / np.log2(np.minimum(rank, 9) + 2.0), 0.0).sum())


def fit_cf_blend_in_ranking(scorer: Any, examples: Sequence[Example], probs: Sequence[float],
                            cf_pos: Sequence[float], spec: FeatureSpec, profiles: Profiles, catalog: Catalog,
                            context: Context, largest: float, calibration: Tuple[float, float] = (1.0, 0.0),
                            cf_neg: Optional[Sequence[float]] = None) -> Optional[Tuple[float, float]]:
    """The CF blend weights (of cf_pos, and of cf_neg, which counts the other way: CF_NEG_BLEND_GRID)
    that rank the holdout's liked items best in full ranking, as /recommend
    ranks for a user with a history: each sampled user's liked holdout items among every catalog item
    the user has not acted on, scored with the version's catalog (the user's history, the item
    similarities), NDCG@10 (the smallest weight among equals). Among the weights whose holdout AUC
    stays within CF_BLEND_AUC_SLACK of the unblended model's, as fit_cf_blend. None when the holdout
    has fewer than NEW_USER_FIT_MIN_LIKED liked actions of users the catalog knows, or no live features.

    fit_cf_blend's per-user pairs judge the weight on (liked, not liked) among items the user rated,
    where co-occurrence with the user's history says little (they rated both kinds); the blend is
    there for the ranking among everything else, and fitted so its weight moved between 0 and 4 from
    one MovieLens training to the next."""
    import random

    import numpy as np

    scale = cf_scale(spec)
    if scale is None:
        return None
    y = [1 if e.label >= 0.5 else 0 for e in examples]
    if not 0 < sum(y) < len(y):
        return None
    liked: Dict[str, List[str]] = {}
    for e, positive in zip(examples, y):
        user = id_key(e.user_id)
        if positive and not e.cold_user and not e.cold_item and catalog.users.get(user):
            liked.setdefault(user, []).append(id_key(e.item_id))
    if sum(len(v) for v in liked.values()) < NEW_USER_FIT_MIN_LIKED:
        return None
    neg_scale = live_scale(spec, "cf_neg")
    negatives = np.asarray(cf_neg if cf_neg is not None else np.zeros(len(y)), dtype=np.float64)

    def offset(columns: Any, weight: float, neg_weight: float) -> Any:
        out = (weight / scale) * np.asarray(columns[0], dtype=np.float64)
        if neg_weight and neg_scale is not None:
            out = out - (neg_weight / neg_scale) * np.asarray(columns[1], dtype=np.float64)
        return out

    floor = _auc(y, list(probs)) - CF_BLEND_AUC_SLACK
    weights = [(w, wn) for w in CF_BLEND_GRID for wn in CF_NEG_BLEND_GRID if w <= largest and wn <= largest and (
        w == wn == 0.0 or _auc(y, blend(probs, offset((cf_pos, negatives), w, wn), 1.0, 1.0)) >= floor)]
    users = sorted(liked)
    random.Random(0).shuffle(users)
    items = catalog.all_items()
    moment = context.moment.timestamp()
    totals, ranked = np.zeros(len(weights)), 0
    for user in users[:CF_RANK_FIT_USERS]:
        history = catalog.users[user]
        acted = {entry[0] for entry in history}
        targets_of = set(liked[user])
        candidates = [i for i in items if i not in acted or i in targets_of]
        row_of = {item: row for row, item in enumerate(candidates)}
        targets = np.array([row_of[i] for i in liked[user] if i in row_of])
        if not len(targets):
            continue
        live = live_columns(catalog, history, candidates, moment)
        columns = columns_for_pairs([(user, item) for item in candidates], context, spec, profiles, live=live)
        model = np.asarray(scorer.score(columns, calibration), dtype=np.float64)
        for k, (weight, neg_weight) in enumerate(weights):
            scores = (np.asarray(blend(model, offset((live["cf_pos"], live["cf_neg"]), weight, neg_weight), 1.0, 1.0))
                      if weight or neg_weight else model)
            totals[k] += _ndcg_at_10(scores, targets)
        ranked += len(targets)
    if not ranked:
        return None
    best, best_ndcg = (0.0, 0.0), -1.0
    for pair, total in zip(weights, totals):
        if total / ranked > best_ndcg + 1e-4:
            best, best_ndcg = pair, total / ranked
    return best


def fit_new_user_popularity(scorer: Any, examples: Sequence[Example], spec: FeatureSpec, profiles: Profiles,
                            catalog: Catalog, context: Context,
                            calibration: Tuple[float, float] = (1.0, 0.0)) -> Optional[float]:
    """The popularity weight of users without any history that ranks the holdout's liked items best
    in full ranking (NDCG@10 among all the catalog's items; the smallest weight among equals).

    A user with no history scores alike with every item (a blank user id, no profile, empty live
    history: what serving computes for a brand-new user), so one pass over the catalog scores them
    all; each liked holdout action (its item, what some user went on to like) is then ranked among
    them. Judged so, not on the holdout's (liked, not liked) pairs: its negatives are drawn by
    popularity, against which popularity cannot win, while a new user's ranking is over the whole
    catalog, where it does. None when the holdout has fewer than NEW_USER_FIT_MIN_LIKED liked
    actions, the lineage has no live features, or the catalog is too small to rank."""
    import numpy as np

    liked = [id_key(e.item_id) for e in examples if e.label >= 0.5 and not e.cold_user and not e.cold_item]
    items = catalog.all_items()
    if live_scale(spec, "item_pos") is None or len(liked) < NEW_USER_FIT_MIN_LIKED or len(items) < 20:
        return None
    live = live_columns(catalog, [], items, context.moment.timestamp())
    pairs = [(NEW_USER_NAME, item) for item in items]
    columns = columns_for_pairs(pairs, context, spec, profiles, cold_users={id_key(NEW_USER_NAME)}, live=live)
    probs = np.asarray(scorer.score(columns, calibration), dtype=np.float64)
    row_of = {item: row for row, item in enumerate(items)}
    targets = np.array([row_of[item] for item in liked if item in row_of])
    if not len(targets):
        return None
    best, best_ndcg = 0.0, -1.0
    for weight in NEW_USER_BLEND_GRID:
        scores = np.asarray(new_user_popularity(probs, live, weight, spec))  # as serving computes it
        ndcg = _ndcg_at_10(scores, targets) / len(targets)
        if ndcg > best_ndcg + 1e-4:
            best, best_ndcg = weight, ndcg
    return best


def _live_columns_of(examples: Sequence[Example]) -> Dict[str, List[float]]:
    """The examples' live values (as replayed for each row), as live_columns answers them."""
    keys = ("cf_pos", "cf_neg", "self", "user_actions", "item_pos")
    return {key: [float((e.live or {}).get(key, 0.0)) for e in examples] for key in keys}


# A candidate's calibrations and blend weights are fitted on one half of its holdout's users, and the gate
# judges it (and the current version) on the other half, so that nothing it is judged on chose its weights;
# from FIT_SPLIT_MIN_ROWS holdout rows on. A smaller holdout is fitted and judged whole: halves of a few
# dozen rows would fit noise and judge on less.
FIT_SPLIT_MIN_ROWS = 200


def split_for_fitting(examples: Sequence[Example]) -> Tuple[List[Example], List[Example]]:
    """(rows to fit on, rows to judge on): by a stable hash of the user id; ([], all) when the holdout is too
    small or a half would lack a label."""
    import hashlib

    every = list(examples)
    if len(every) < FIT_SPLIT_MIN_ROWS:
        return [], every
    halves: Tuple[List[Example], List[Example]] = ([], [])
    for e in every:
        halves[int(hashlib.sha1(id_key(e.user_id).encode()).hexdigest()[:8], 16) % 2].append(e)
    for half in halves:
        labels = {1 if e.label >= 0.5 else 0 for e in half}
        if labels != {0, 1}:
            return [], every
    return halves[0], halves[1]


def score_examples(scorer: Any, examples: Sequence[Example], spec: FeatureSpec, profiles: Profiles,
                   served: ServedBlend = ServedBlend(), fit_up_to: float = 0.0,
                   ranking: Optional[Tuple[Catalog, Context]] = None, fit: bool = False,
                   scores_out: Optional[List[float]] = None,
                   fit_on: Optional[Sequence[Example]] = None, honest: bool = True,
                   blend_out: Optional[List[ServedBlend]] = None) -> Dict[str, float]:
    """Holdout metrics of a loaded scorer, its inputs built with its own lineage's spec, its scores as
    serving computes them (artifacts/blend.served_scores): the model's logits calibrated, blended with
    the examples' live terms, the blend calibrated. `served`: the version's calibrations and weights.
    `fit` (a candidate): both calibrations are fitted here, and with `fit_up_to` > 0 the CF weight too,
    when the holdout can tell (else `served.cf`): in full ranking with `ranking` (the version's catalog
    and serving context), else on the holdout's per-user pairs. metrics: auc (when both classes),
    logloss, ece, base_logloss (the constant predictor's), and what was used: cf_blend, calibration_a /
    _b, final_calibration_a / _b. `scores_out`: extended with each example's served score. `fit_on` (with
    `fit`): the calibrations and weights are fitted on these rows, and the metrics are of `examples`
    (split_for_fitting). `blend_out`: extended with the blend the metrics were scored with (with `fit`: what
    was fitted, as the version will be served). With `fit`, the final calibration's recalibration R is
    fitted too where the rows suffice (artifacts/blend.fit_recalibration); where they do not, a parent's R
    and final calibration are kept. `honest=False`: the examples are the candidate's own training rows (a run too small
    to hold any out), which it has learnt: nothing is fitted on them. Platt scaling fitted there amplified
    the model's confidence (a = 1.9: scores of 1.0 and 0.0 for whole categories, which no action of the
    user could move). The candidate keeps `served`'s calibrations and weights (its parent's), and a new
    lineage gets a temperature (artifacts/blend.unfitted_calibration)."""
    import numpy as np

    from easyrec_online.artifacts.scorer import auc_and_logloss, sigmoid

    if fit and fit_on:
        fitted: List[ServedBlend] = []
        score_examples(scorer, fit_on, spec, profiles, served, fit_up_to, ranking, fit=True, blend_out=fitted)
        metrics = score_examples(scorer, examples, spec, profiles, fitted[0], scores_out=scores_out,
                                 blend_out=blend_out)
        metrics["num_fit_rows"] = len(fit_on)
        return metrics

    rows = [encode(e, spec, profiles) for e in examples]
    labels = [e.label for e in examples]
    logits = np.asarray(scorer.logits({n: [r[n] for r in rows] for n in spec.names}) if rows else [], dtype=np.float64)
    fitting = fit and len(rows) > 0 and honest
    if fit and not honest and len(rows) and served.calibration == (1.0, 0.0) and served.final == (1.0, 0.0):
        served = replace(served, calibration=unfitted_calibration(labels, logits))  # a new lineage's first
    calibration = fit_calibration(labels, logits) if fitting else served.calibration
    probs = [float(p) for p in sigmoid(calibration[0] * logits + calibration[1])]
    scale = cf_scale(spec)
    live = _live_columns_of(examples) if scale is not None else None
    weight, neg_weight = (served.cf, served.cf_neg) if live is not None else (0.0, 0.0)
    if live is not None and fitting and fit_up_to > 0:
        pair = None
        if ranking is not None:
            pair = fit_cf_blend_in_ranking(scorer, examples, probs, live["cf_pos"], spec, profiles, ranking[0],
                                           ranking[1], fit_up_to, calibration, live["cf_neg"])
        if pair is not None:
            weight, neg_weight = pair
        else:  # the CF weight alone, on the holdout's rated pairs (an update with a large holdout)
            fitted = fit_cf_blend(labels, probs, live["cf_pos"], scale, fit_up_to, [e.user_id for e in examples])
            weight = weight if fitted is None else fitted
    # The new-user term is fitted and judged in full ranking (fit_new_user_popularity), not here.
    blended = blended_logits(logits, live, spec, replace(served, calibration=calibration, cf=weight, cf_neg=neg_weight,
                                                         new_user=0.0))
    final = fit_calibration(labels, blended) if fitting else served.final
    knots = served.recalibration
    if fitting:
        knots = fit_recalibration(labels, final[0] * blended + final[1])
        if not knots[0] and served.recalibration[0]:  # too few rows to fit R: the lineage's own is better
            final, knots = served.final, served.recalibration
    probs = [float(p) for p in sigmoid(recalibrated(final[0] * blended + final[1], knots))]
    if blend_out is not None:
        blend_out.append(replace(served, calibration=calibration, cf=weight, cf_neg=neg_weight, final=final,
                                 recalibration=knots))
    if scores_out is not None:  # the served score of each example, for who judges them later (drift)
        scores_out.extend(probs)
    metrics = auc_and_logloss(labels, probs)
    metrics["ece"] = expected_calibration_error(labels, probs)
    base = base_rate_logloss(labels)
    if base is not None:
        metrics["base_logloss"] = base
    if fit and not honest:
        metrics["in_sample"] = 1.0  # judged on rows it trained on: the floors cannot tell (degenerate)
    metrics.update(cf_blend=weight, cf_neg_blend=neg_weight, calibration_a=calibration[0], calibration_b=calibration[1],
                   final_calibration_a=final[0], final_calibration_b=final[1], recalibration_knots=float(len(knots[0])))
    return metrics


def evaluate(export_dir: str, examples: Sequence[Example], spec: FeatureSpec, profiles: Profiles,
             served: ServedBlend = ServedBlend(), fit_up_to: float = 0.0,
             serving: Optional[Tuple[Catalog, Context]] = None, fit: bool = False,
             fit_on: Optional[Sequence[Example]] = None, honest: bool = True,
             scores_out: Optional[List[float]] = None,
             blend_out: Optional[List[ServedBlend]] = None) -> Dict[str, float]:
    """Holdout metrics of a SavedModel on disk (score_examples). With `serving` (the version's catalog
    and serving context) and `fit`, the CF weight is fitted in full ranking (fit_cf_blend_in_ranking)
    and metrics[NEW_USER_POPULARITY_KEY] is the fitted new-user popularity weight, when the holdout can
    tell. `fit_on`: the rows fitted on, apart from those judged (split_for_fitting). `scores_out`: extended
    with each example's served score."""
    from easyrec_online.artifacts.scorer import SavedModelScorer

    scorer = SavedModelScorer(export_dir)
    try:
        metrics = score_examples(scorer, examples, spec, profiles, served, fit_up_to, serving, fit, fit_on=fit_on,
                                 honest=honest, scores_out=scores_out, blend_out=blend_out)
        if serving is not None and fit and honest:
            fitted = fit_new_user_popularity(scorer, fit_on or examples, spec, profiles, serving[0], serving[1],
                                             (metrics["calibration_a"], metrics["calibration_b"]))
            if fitted is not None:
                metrics[NEW_USER_POPULARITY_KEY] = fitted
        return metrics
    finally:
        scorer.close()


# The gate's floors: a candidate is never promoted, whatever the current version scores, when its
# holdout says it is degenerate: an AUC clearly below chance (below 0.5 by more than two standard
# errors, Hanley & McNeil), or served scores that tell less than answering the holdout's base rate
# (log loss above the constant predictor's by more than LOGLOSS_FLOOR_MARGIN, on at least
# FLOOR_MIN_ROWS rows). Seen before the floors: AUC 0.14 promoted because the current version scored
# 0.14 too, logloss 8.8 against a base rate's 0.6.
LOGLOSS_FLOOR_MARGIN = 0.05
FLOOR_MIN_ROWS = 20


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982)'s standard error of an AUC over `positives` x `negatives` pairs."""
    import math

    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    variance = (auc * (1.0 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives)
    return math.sqrt(max(variance, 0.0))


def degenerate(metrics: Dict[str, float]) -> Optional[str]:
    """Why the holdout says these scores are degenerate, or None (metrics of a candidate's own training
    rows, a run too small to hold any out, say nothing either way)."""
    if metrics.get("in_sample"):
        return None
    rows = int(metrics.get("num_eval_rows", 0))
    positives = int(metrics.get("num_positive", 0))
    auc = metrics.get("auc")
    if auc is not None and positives and rows > positives:
        bound = auc + 2.0 * auc_standard_error(auc, positives, rows - positives)
        if bound < 0.5:
            return "holdout AUC {:.4f} is below chance (upper bound {:.4f} < 0.5)".format(auc, bound)
    base = metrics.get("base_logloss")
    if base is not None and rows >= FLOOR_MIN_ROWS and metrics["logloss"] > base + LOGLOSS_FLOOR_MARGIN:
        return "holdout log loss {:.4f} is worse than the base rate's {:.4f}".format(metrics["logloss"], base)
    return None


# The gate refuses a candidate for a lower AUC only when the holdout shows it is worse than the current
# version by more than the tolerance: the drop exceeds the tolerance by GATE_SIGNIFICANCE_Z standard
# errors of the paired difference (DeLong; both versions score the same rows). Seen without it: an update on 2,400 actions refused for 0.654
# against 0.706 on a holdout where that difference is noise, and an update that followed a reversal of
# taste refused for scoring its own 115 rows 0.63 against 0.75 (no newer action came, so it never
# trained).
GATE_SIGNIFICANCE_Z = 2.0


def _midranks(values: Any) -> Any:
    """1-based ranks, ties sharing their mean rank."""
    import numpy as np

    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(ordered):
        end = start
        while end < len(ordered) and ordered[end] == ordered[start]:
            end += 1
        ranks[start:end] = 0.5 * (start + end - 1) + 1.0
        start = end
    out = np.empty(len(values), dtype=np.float64)
    out[order] = ranks
    return out


def paired_auc_difference(labels: Sequence[int], scores_a: Sequence[float],
                          scores_b: Sequence[float]) -> Optional[Tuple[float, float]]:
    """(AUC of a - AUC of b, its standard error) for two scorings of the same rows: DeLong, DeLong &
    Clarke-Pearson (1988), with Sun & Xu (2014)'s midrank computation. None without two rows of each
    class."""
    import numpy as np

    y = (np.asarray(labels, dtype=np.float64) >= 0.5).astype(np.int64)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if positives < 2 or negatives < 2 or len(scores_a) != len(y) or len(scores_b) != len(y):
        return None
    aucs, v_pos, v_neg = [], [], []
    for scores in (scores_a, scores_b):
        s = np.asarray(scores, dtype=np.float64)
        pos, neg = s[y == 1], s[y == 0]
        both = _midranks(np.concatenate([pos, neg]))
        in_pos, in_neg = _midranks(pos), _midranks(neg)
        aucs.append((both[:positives].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))
        v_pos.append((both[:positives] - in_pos) / negatives)  # per positive: share of negatives below it
        v_neg.append(1.0 - (both[positives:] - in_neg) / positives)  # per negative: share of positives above
    s_pos, s_neg = np.cov(np.vstack(v_pos)), np.cov(np.vstack(v_neg))
    variance = ((s_pos[0, 0] + s_pos[1, 1] - 2 * s_pos[0, 1]) / positives
                + (s_neg[0, 0] + s_neg[1, 1] - 2 * s_neg[0, 1]) / negatives)
    return float(aucs[0] - aucs[1]), float(np.sqrt(max(variance, 0.0)))


@dataclass(frozen=True)
class PairedScores:
    """Both versions' served scores on the rows the gate judges on (the same rows, in the same order)."""
    labels: Sequence[int]
    candidate: Sequence[float]
    baseline: Sequence[float]


def promotion_decision(candidate: Dict[str, float], baseline: Optional[Dict[str, float]], tolerance: float,
                       baseline_version: Optional[str], paired: Optional[PairedScores] = None) -> Dict[str, Any]:
    """Whether the candidate may become current: never when degenerate (the floors); else unless its AUC
    is worse than the current version's by more than `tolerance` and, with `paired` scores, by more than
    that plus GATE_SIGNIFICANCE_Z standard errors of the paired difference. A negative tolerance demands
    a gain of that much, noise or not."""
    decision: Dict[str, Any] = {"tolerance": tolerance, "candidate_auc": candidate.get("auc"),
                                "baseline_version": baseline_version,
                                "baseline_auc": baseline.get("auc") if baseline else None}
    floor = degenerate(candidate)
    if floor is not None:
        decision.update(promote=False, reason=floor, floor=True)
        return decision
    if baseline is None or baseline.get("auc") is None or candidate.get("auc") is None:
        decision.update(promote=True, reason="no comparable baseline AUC on this holdout")
        return decision
    drop = baseline["auc"] - candidate["auc"]
    difference = paired_auc_difference(paired.labels, paired.candidate, paired.baseline) if paired else None
    standard_error = difference[1] if difference is not None else None
    if standard_error is not None:
        decision["auc_drop_se"] = round(standard_error, 6)
    if drop <= tolerance:
        decision.update(promote=True, reason="holdout AUC {:.4f} vs current {:.4f} (tolerance {})".format(
            candidate["auc"], baseline["auc"], tolerance))
    elif standard_error is not None and tolerance >= 0 and drop - tolerance <= GATE_SIGNIFICANCE_Z * standard_error:
        decision.update(promote=True, reason="holdout AUC {:.4f} vs current {:.4f} (tolerance {}): within noise, "
                        "{:.1f} standard errors of the paired difference past the tolerance (< {})".format(
                            candidate["auc"], baseline["auc"], tolerance, (drop - tolerance) / standard_error,
                            GATE_SIGNIFICANCE_Z))
    else:
        decision.update(promote=False, reason="holdout AUC {:.4f} is worse than current version {} ({:.4f}) by "
                        "more than {}{}".format(candidate["auc"], baseline_version, baseline["auc"], tolerance,
                                                ", {:.1f} standard errors past it".format(
                                                    (drop - tolerance) / standard_error) if standard_error else ""))
    return decision
