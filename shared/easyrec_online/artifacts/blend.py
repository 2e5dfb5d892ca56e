"""The score a client gets: the model's probability, blended with the live item-to-item CF score.

  score = sigmoid(logit(model probability) + w * cf_pos / std(cf_pos))

cf_pos (features/live.py) is how similar an item is to what the user liked lately; std(cf_pos) is
its spread over the lineage's training examples (the feature spec's normalisation), so w reads the
same on every data set: logits per standard deviation. The model reads cf_pos as an input too, but
measured it ranks far below what cf_pos alone does (MovieLens streaming replay, full ranking, HR@10
0.087 against 0.200): the term keeps what collaborative filtering knows in every ranking, and
follows each new action at once, while the weights learn the rest. Where CF says little (data
whose likes do not follow co-occurrence), the term would only add noise, so w is not a constant:
the trainer fits it per version on the holdout (modeling/evaluation.py, up to CF_BLEND_MAX) and
records it in the version (ModelVersion.cf_blend). A pair the
user's history says nothing about (cf_pos 0) keeps the model's probability; the blend is monotone
in both terms and stays in (0, 1). Used by serving (every /recommend and /predict) and by the
promotion gate's holdout scores, so the gate judges what is served.
"""
from __future__ import annotations

from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

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
