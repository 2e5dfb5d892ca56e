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

import math
from typing import Iterable, List, Optional, Sequence

# Where the CF term applies, the model's probability is clipped this close to 0 and 1 first (logits
# within +-16): a model all but certain a user will not like an item (say 1e-9, for a category they
# used to bounce off) must not outvote what they did a moment ago. Pairs without CF evidence keep the
# model's own probability, ordered in float64 (artifacts/scorer.py).
_EPSILON = 1e-7


def cf_scale(spec: object) -> Optional[float]:
    """std(cf_pos) over the lineage's training examples, or None when the lineage has no live features."""
    for feature in getattr(spec, "features", ()):
        if feature.source == "live" and feature.key == "cf_pos":
            return float(feature.std) if feature.std > 0 else 1.0
    return None


def blend(probabilities: Iterable[float], cf_pos: Sequence[float], weight: float, scale: float) -> List[float]:
    """The blended scores, one per probability (cf_pos in the same order)."""
    factor = weight / scale
    out = []
    for p, cf in zip(probabilities, cf_pos):
        if not cf:
            out.append(float(p))
            continue
        p = min(max(float(p), _EPSILON), 1.0 - _EPSILON)
        z = math.log(p / (1.0 - p)) + factor * cf
        # sigmoid without overflow for large |z|
        out.append(1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z)))
    return out
