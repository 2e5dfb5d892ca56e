"""The score a client gets: the model's calibrated logit, blended with what the user did lately, calibrated.

  z     = a1 * model logit + b1
  u     = a2 * (z + w * cf_pos / std(cf_pos) - w_neg * cf_neg / std(cf_neg) + s * self) + b2
  score = sigmoid(R(u))

(a1, b1) calibrate the model's own logits on the version's holdout (Platt scaling): a model trained to
saturation on little data answers logits of +-30 (scores of exactly 1.0 and 0.0 for whole
categories), which no live term could move and whose order was rounding noise; calibrated, they are
log-odds again, and what the user just did can outweigh them. (a2, b2) then calibrate the blended
logit, so that the score served is a probability too (the blend's terms are fitted for ranking, not
for calibration); a monotone map, it leaves every ranking as the blend made it. R, where the holdout
is large enough to tell (RECALIBRATION_MIN_ROWS), is a strictly increasing piecewise-linear map of
log-odds (fit_recalibration) that corrects what a straight line cannot: the CF term gives the blended
logit a long right tail, and Platt scaling fitted on MovieLens left an ECE of 0.066 on rows it was
fitted on (scores of 0.85 were liked 63 % of the time, scores of 0.17 13 %); R brought it to 0.009 on
the other half. Elsewhere R is the identity.

self (features/live.py) is the user's own recent actions on this very item, newest weighing most:
+1 for each positive action, -1 for each other one, decayed by RECENCY per later action. It needs
no similarity and no training, so a new user's purchases of a new item put it above what they
bounced off at once; s is the SELF_BLEND setting, recorded in the version.

cf_pos (features/live.py) is how similar an item is to what the user liked lately; std(cf_pos) is
its spread over the lineage's training examples (the feature spec's normalisation), so w reads the
same on every data set: logits per standard deviation. The model reads cf_pos as an input too, but
measured it ranks far below what cf_pos alone does (MovieLens streaming replay, full ranking, HR@10
0.087 against 0.200): the term keeps what collaborative filtering knows in every ranking, and
follows each new action at once, while the weights learn the rest. Where CF says little (data
whose likes do not follow co-occurrence), the term would only add noise, so w is not a constant:
the trainer fits it per version on the holdout (modeling/evaluation.py, up to CF_BLEND_MAX) and
records it in the version (ModelVersion.cf_blend). cf_neg, how similar the item is to what the user did
not like lately (bounced off, rated low), counts the other way, with its own weight fitted beside w
(cf_neg_blend): after a reversal of taste, the category a user now bounces off goes down at once,
not only after the old likes have aged out of their history. A pair no live term has anything to say about
keeps the model's calibrated logit. Used by serving (every /recommend and /predict) and by the
promotion gate's holdout scores (served_scores), so the gate judges what is served.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

# Where the CF term applies, the model's probability is clipped this close to 0 and 1 first (logits
# within +-16): a model all but certain a user will not like an item (say 1e-9, for a category they
# used to bounce off) must not outvote what they did a moment ago. Pairs without CF evidence keep the
# model's own probability, ordered in float64 (artifacts/scorer.py).
_EPSILON = 1e-7


def live_moments(spec: object, key: str) -> Optional[Tuple[float, float]]:
    """(mean, std) of a live feature over the lineage's training examples, or None when it lacks it."""
    for feature in getattr(spec, "features", ()):
        if feature.source == "live" and feature.key == key:
            return float(feature.mean), float(feature.std) if feature.std > 0 else 1.0
    return None


def live_scale(spec: object, key: str) -> Optional[float]:
    """std of a live feature over the lineage's training examples, or None when the lineage lacks it."""
    moments = live_moments(spec, key)
    return moments[1] if moments is not None else None


def cf_scale(spec: object) -> Optional[float]:
    """std(cf_pos) over the lineage's training examples, or None when the lineage has no live features."""
    return live_scale(spec, "cf_pos")


def new_user_popularity(scores: Sequence[float], live: Mapping[str, Sequence[float]], weight: float,
                        spec: object) -> List[float]:
    """The scores of pairs whose user has no history at all (user_actions 0: no live activity, not in
    the catalog) blended with the item's popularity, as the CF term is for users with a history:

      score = sigmoid(logit(score) + w * (item_pos - mean(item_pos)) / std(item_pos))

    A new user's score is the model's with a blank user id and no CF evidence; trained against
    negatives drawn by popularity (so that known users' rankings are not mere popularity), it ranks
    new users below plain "most popular" (MovieLens day-level HR@10 of new users 0.015-0.045 against
    popularity's 0.075). w is fitted per lineage on its full training's holdout
    (modeling/evaluation.fit_new_user_popularity) and recorded in the version; pairs of users with a
    history keep their score. Centred, so that popular items gain and obscure ones lose: uncentred,
    a large w pushed every popular item's score to 1.0 exactly, and the ties ranked new users'
    liked items nowhere (day-level HR@10 0.000 over 265 rankings, weight 12)."""
    unchanged = scores if isinstance(scores, list) else [float(s) for s in scores]
    moments = live_moments(spec, "item_pos")
    if not weight or moments is None:
        return unchanged
    import numpy as np

    fresh = np.asarray(live["user_actions"], dtype=np.float64) == 0.0
    if not fresh.any():
        return unchanged
    z = (np.asarray(live["item_pos"], dtype=np.float64) - moments[0]) / moments[1]
    blended = blend(scores, np.where(fresh, z, 0.0), weight, 1.0)
    # blend keeps the score of a pair whose term is 0: a fresh user's item exactly at the mean too
    return blended


def blend(probabilities: Iterable[float], cf_pos: Sequence[float], weight: float, scale: float) -> List[float]:
    """The blended scores, one per probability (cf_pos in the same order)."""
    import numpy as np  # where scoring runs; on arrays: a ranking of 1000 candidates is one pass

    p = np.asarray(probabilities if isinstance(probabilities, np.ndarray) else list(probabilities), dtype=np.float64)
    cf = np.asarray(cf_pos, dtype=np.float64)
    clipped = np.minimum(np.maximum(p, _EPSILON), 1.0 - _EPSILON)
    z = np.log(clipped / (1.0 - clipped)) + (weight / scale) * cf
    # sigmoid(z) = exp(-log(1 + exp(-z))): no overflow for large |z|
    return np.where(cf != 0.0, np.exp(-np.logaddexp(0.0, -z)), p).tolist()


Knots = Tuple[Tuple[float, ...], Tuple[float, ...]]


@dataclass(frozen=True)
class ServedBlend:
    """How a version's scores are served: the model's calibration, the weights of the live terms, and the
    calibration of the blended score."""

    calibration: Tuple[float, float] = (1.0, 0.0)
    cf: float = 0.0
    self_weight: float = 0.0
    new_user: float = 0.0
    final: Tuple[float, float] = (1.0, 0.0)
    cf_neg: float = 0.0
    recalibration: Knots = ((), ())  # R: (u, R(u)) at its knots; none: the identity

    @classmethod
    def of(cls, version: Any) -> "ServedBlend":
        """A registered version's (state/registry.ModelVersion)."""
        return cls(version.calibration, version.cf_blend, version.self_blend, version.new_user_popularity_blend,
                   version.final_calibration, version.cf_neg_blend, version.recalibration)


def live_offset(live: Mapping[str, Sequence[float]], spec: object, cf_weight: float, self_weight: float,
                new_user_weight: float, cf_neg_weight: float = 0.0) -> Any:
    """What the live terms add to each pair's logit (numpy array): the CF terms (up for items like what
    the user liked lately, down for items like what they did not), the user's own actions on the item,
    and for users with no history the item's popularity. 0 where none applies."""
    import numpy as np

    offset = np.zeros(len(live["cf_pos"]), dtype=np.float64)
    scale = cf_scale(spec)
    if cf_weight and scale is not None:
        offset += (cf_weight / scale) * np.asarray(live["cf_pos"], dtype=np.float64)
    neg_scale = live_scale(spec, "cf_neg")
    if cf_neg_weight and neg_scale is not None and "cf_neg" in live:
        offset -= (cf_neg_weight / neg_scale) * np.asarray(live["cf_neg"], dtype=np.float64)
    if self_weight and "self" in live:
        offset += self_weight * np.asarray(live["self"], dtype=np.float64)
    moments = live_moments(spec, "item_pos")
    if new_user_weight and moments is not None:
        fresh = np.asarray(live["user_actions"], dtype=np.float64) == 0.0
        z = (np.asarray(live["item_pos"], dtype=np.float64) - moments[0]) / moments[1]
        offset += np.where(fresh, new_user_weight * z, 0.0)
    return offset


# Where a live term applies, the model's calibrated logit is clipped to +-LOGIT_CLIP first (the
# probability's _EPSILON): a model all but certain must not outvote what the user just did.
LOGIT_CLIP = 16.118
# Where the user has acted on this very item lately (the self term), the model's calibrated logit counts
# at most +-SELF_PRIOR_BAND: their own newest actions on it are the strongest evidence there is, so about
# two net recent actions outweigh whatever the model learnt of the pair. A model that had learnt a group's
# first taste from a handful of rows answered logits of +-13 for those very pairs, and after the users
# turned round (3 purchases of what they had bounced off, 3 bounces off what they had bought) their
# rankings stayed as they were, before and after the next update.
SELF_PRIOR_BAND = 1.0


def blended_logits(model_logits: Any, live: Optional[Mapping[str, Sequence[float]]], spec: object,
                   served: ServedBlend) -> Any:
    """z + the live terms, before the final calibration (the order every ranking follows)."""
    import numpy as np

    a, b = served.calibration
    z = a * np.asarray(model_logits, dtype=np.float64) + b
    if live is None:
        return z
    offset = live_offset(live, spec, served.cf, served.self_weight, served.new_user, served.cf_neg)
    band = np.full(len(z), LOGIT_CLIP)
    if served.self_weight and "self" in live:
        band = np.where(np.asarray(live["self"], dtype=np.float64) != 0.0, SELF_PRIOR_BAND, band)
    return np.where(offset != 0.0, np.clip(z, -band, band) + offset, z)


def served_scores(model_logits: Any, live: Optional[Mapping[str, Sequence[float]]], spec: object,
                  served: ServedBlend) -> List[float]:
    """The scores a client gets for these pairs (live: their live features, None for a lineage without).
    Serving and the promotion gate both score through here."""
    import numpy as np

    a, b = served.final
    z = recalibrated(a * blended_logits(model_logits, live, spec, served) + b, served.recalibration)
    return np.exp(-np.logaddexp(0.0, -z)).tolist()


# R is fitted on at least this many holdout rows (the split's fitting half), in equal-count bins of the
# Platt-calibrated logit, each bin's rate of positives smoothed (+0.5 / +1) and pooled with its
# neighbours until the rates increase (pool adjacent violators): fewer rows would fit noise. A version
# whose holdout is smaller (an update's, tens of rows) keeps its parent's (a2, b2) and R: fitted on
# thousands of rows, they calibrated MovieLens updates' holdouts better (pooled ECE 0.030) than a
# Platt refit on each update's own tens of rows (0.050, and judged on the rows it was fitted on).
RECALIBRATION_MIN_ROWS = 1000
RECALIBRATION_BINS = 20


def fit_recalibration(labels: Sequence[float], logits: Sequence[float]) -> Knots:
    """R's knots: (mean logit of each pooled bin, log-odds of its smoothed rate of positives), strictly
    increasing in both; none when there are fewer than RECALIBRATION_MIN_ROWS rows or one class only."""
    import numpy as np

    y = np.asarray([1.0 if label >= 0.5 else 0.0 for label in labels])
    u = np.asarray(logits, dtype=np.float64)
    if len(y) < RECALIBRATION_MIN_ROWS or y.min() == y.max():
        return (), ()
    order = np.argsort(u, kind="stable")
    blocks: List[List[float]] = []  # [sum of logits, positives, rows]
    for rows in np.array_split(order, RECALIBRATION_BINS):
        blocks.append([float(u[rows].sum()), float(y[rows].sum()), float(len(rows))])
        while len(blocks) > 1 and ((blocks[-2][1] + 0.5) / (blocks[-2][2] + 1.0)
                                   >= (blocks[-1][1] + 0.5) / (blocks[-1][2] + 1.0)
                                   or blocks[-2][0] / blocks[-2][2] >= blocks[-1][0] / blocks[-1][2]):
            last = blocks.pop()
            blocks[-1] = [blocks[-1][k] + last[k] for k in range(3)]
    xs = tuple(total / rows for total, _, rows in blocks)
    rates = [(positives + 0.5) / (rows + 1.0) for _, positives, rows in blocks]
    return xs, tuple(float(np.log(r / (1.0 - r))) for r in rates)


def recalibrated(u: Any, knots: Knots) -> Any:
    """R(u): linear between the knots, and beyond them parallel to the identity (so strictly increasing
    everywhere: no two scores tie that the blend ordered)."""
    import numpy as np

    xs, ys = knots
    u = np.asarray(u, dtype=np.float64)
    if not xs:
        return u
    inside = np.interp(u, xs, ys) if len(xs) > 1 else np.full(len(u), ys[0])
    return np.where(u < xs[0], ys[0] + (u - xs[0]), np.where(u > xs[-1], ys[-1] + (u - xs[-1]), inside))


def knots_text(knots: Knots) -> str:
    """As serving defaults keep R ("u:R(u),..."; "" for none: state/registry.ModelVersion.recalibration)."""
    return ",".join("{!r}:{!r}".format(x, y) for x, y in zip(*knots))


# Platt scaling: the penalty pulling (a, b) towards the model's own (1, 0), so that a holdout of a
# handful of rows moves them little; a stays positive (never reversing the model's order).
CALIBRATION_PRIOR_STRENGTH = 1.0
CALIBRATION_MIN_SLOPE = 0.01


def fit_calibration(labels: Sequence[float], logits: Sequence[float], offset: Optional[Sequence[float]] = None,
                    strength: float = CALIBRATION_PRIOR_STRENGTH) -> Tuple[float, float]:
    """(a, b) minimising the holdout's log loss of sigmoid(a * logit + b + offset), plus strength/2 *
    ((a - 1)^2 + b^2), with a >= CALIBRATION_MIN_SLOPE: Newton's method on two parameters, each step
    halved until the objective falls (logits of +-30 make plain Newton steps overshoot). `offset`: what
    the live terms add to each row (live_offset), so that the scores served, not the model's alone, are
    calibrated. (1, 0) when the holdout is empty."""
    import numpy as np

    y = np.asarray([1.0 if label >= 0.5 else 0.0 for label in labels])
    z = np.asarray(logits, dtype=np.float64)
    if not len(y):
        return 1.0, 0.0
    extra = np.zeros(len(y)) if offset is None else np.asarray(offset, dtype=np.float64)

    def objective(a: float, b: float) -> float:
        m = a * z + b + extra  # log(1 + e^-m) for positives, log(1 + e^m) for the others
        return float(np.logaddexp(0.0, np.where(y > 0, -m, m)).sum() + strength / 2.0 * ((a - 1.0) ** 2 + b * b))

    a, b = 1.0, 0.0
    current = objective(a, b)
    for _ in range(100):
        p = np.exp(-np.logaddexp(0.0, -(a * z + b + extra)))
        r, w = p - y, p * (1.0 - p)
        grad = np.array([np.dot(r, z) + strength * (a - 1.0), r.sum() + strength * b])
        hess = np.array([[np.dot(w, z * z) + strength, np.dot(w, z)], [np.dot(w, z), w.sum() + strength]])
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6:
            a_new, b_new = max(CALIBRATION_MIN_SLOPE, a - scale * step[0]), b - scale * step[1]
            candidate = objective(a_new, b_new)
            if candidate <= current:
                break
            scale /= 2.0
        else:
            break
        moved = max(abs(a_new - a), abs(b_new - b))
        a, b, current = a_new, b_new, candidate
        if moved < 1e-9:
            break
    return float(a), float(b)


# A new lineage with no holdout (a first training on a handful of actions) has no rows it has not learnt
# to fit a calibration on. Its logits are scaled to this standard deviation over its training rows
# (never up) and centred on their base rate instead: such a model has earned no more confidence than a
# couple of the user's own actions (the self term: +-1 each) can outweigh.
UNFITTED_LOGIT_STD = 1.0


def unfitted_calibration(labels: Sequence[float], logits: Sequence[float]) -> Tuple[float, float]:
    """(a, b) of a model judged on nothing it has not learnt: a temperature, not a fit."""
    import numpy as np

    z = np.asarray(logits, dtype=np.float64)
    if not len(z):
        return 1.0, 0.0
    spread = float(z.std())
    a = min(1.0, UNFITTED_LOGIT_STD / spread) if spread > 0 else 1.0
    rate = (sum(1.0 for y in labels if y >= 0.5) + 1.0) / (len(z) + 2.0)
    return a, float(np.log(rate / (1.0 - rate)) - a * z.mean())


def calibration_text(calibration: Tuple[float, float]) -> str:
    return "{!r},{!r}".format(*calibration)


def expected_calibration_error(labels: Sequence[float], probs: Sequence[float], bins: int = 10) -> float:
    """ECE: the mean, over equal-width probability bins weighted by their rows, of |mean score - rate of
    positives| in the bin."""
    import numpy as np

    y = np.asarray([1.0 if label >= 0.5 else 0.0 for label in labels])
    p = np.asarray(probs, dtype=np.float64)
    if not len(y):
        return 0.0
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for k in range(bins):
        rows = which == k
        if rows.any():
            total += rows.sum() * abs(p[rows].mean() - y[rows].mean())
    return float(total / len(y))


def base_rate_logloss(labels: Sequence[float]) -> Optional[float]:
    """The log loss of always answering the holdout's own rate of positives (None: one class only)."""
    import math

    y = [1.0 if label >= 0.5 else 0.0 for label in labels]
    rate = sum(y) / len(y) if y else 0.0
    if not 0.0 < rate < 1.0:
        return None
    return -(rate * math.log(rate) + (1.0 - rate) * math.log(1.0 - rate))

