"""Holdout evaluation and the promotion gate (model runtime): a candidate and the current version are
scored on the same held-out actions, each with its own lineage's features."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from easyrec_online.artifacts.blend import blend, cf_scale
from easyrec_online.artifacts.features.encode import Example, Profiles, encode
from easyrec_online.artifacts.features.spec import FeatureSpec


def score_examples(scorer: Any, examples: Sequence[Example], spec: FeatureSpec, profiles: Profiles,
                   cf_blend: float = 0.0) -> Dict[str, float]:
    """Holdout metrics of a loaded scorer, its inputs built with its own lineage's spec, its scores
    blended with the examples' cf_pos as serving blends them (CF_BLEND, artifacts/blend.py)."""
    from easyrec_online.artifacts.scorer import auc_and_logloss

    rows = [encode(e, spec, profiles) for e in examples]
    probs = scorer.score({n: [r[n] for r in rows] for n in spec.names})
    scale = cf_scale(spec)
    if cf_blend and scale is not None:
        probs = blend(probs, [float((e.live or {}).get("cf_pos", 0.0)) for e in examples], cf_blend, scale)
    return auc_and_logloss([e.label for e in examples], probs)


def evaluate(export_dir: str, examples: Sequence[Example], spec: FeatureSpec, profiles: Profiles,
             cf_blend: float = 0.0) -> Dict[str, float]:
    """Holdout metrics of a SavedModel on disk."""
    from easyrec_online.artifacts.scorer import SavedModelScorer

    scorer = SavedModelScorer(export_dir)
    try:
        return score_examples(scorer, examples, spec, profiles, cf_blend)
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
