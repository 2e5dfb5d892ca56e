"""When a lineage has outgrown its birth: the continuous trainer's retraining triggers (model runtime).

A lineage's features, hash sizes and similarities are fixed by its full training. A continuous trainer
that only ever updated would serve, a month later, the model its first handful of actions allowed.
So it starts a new lineage (a full retraining on everything stored) by itself when:

  - fields seen since would now become features (FEATURE_MIN_SUPPORT, MAX_PARAMETER_FEATURES,
    MAX_PROFILE_FEATURES: what derive_spec would choose today and the lineage lacks);
  - its data has grown LINEAGE_GROWTH_FACTOR times since the lineage began (and by at least
    LINEAGE_GROWTH_MIN_ACTIONS actions);
  - drift: the current lineage's AUC on fresh actions (the holdouts of its updates, rows it had not
    trained when it scored them) is below AUTO_RETRAIN_AUC_THRESHOLD;
  - a user asks for it (POST /online/training/start {"mode": "full"});
  - RETRAIN_EVERY_H hours have passed since the lineage began (off by default).

A retraining that the gate refuses is not retried on the same grounds: the next growth trigger needs the
factor again over the refused attempt's size, a field it tried triggers no second attempt, and the drift
window starts again.
"""
from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass, field
from typing import Deque, List, Optional, Sequence, Set, Tuple

from easyrec_online.artifacts.features.derive import derive_spec
from easyrec_online.artifacts.features.encode import Profiles
from easyrec_online.artifacts.features.spec import FeatureSpec
from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import StoredAction, parse_timestamp

# The sources whose fields a lineage takes in at its birth (action parameters, user and item profiles).
GROWING_SOURCES = ("param", "user", "item")
# Drift is judged on the last DRIFT_WINDOW_ROWS fresh holdout rows, once there are DRIFT_MIN_ROWS with at
# least DRIFT_MIN_PER_CLASS of each label: an AUC of a dozen rows says nothing.
DRIFT_WINDOW_ROWS = 1000
DRIFT_MIN_ROWS = 100
DRIFT_MIN_PER_CLASS = 10


class FreshAuc:
    """The current lineage's served scores on fresh actions (each update's holdout, scored before the
    update trained on anything), over a sliding window: its AUC is the drift signal."""

    def __init__(self, window: int = DRIFT_WINDOW_ROWS) -> None:
        self._rows: Deque[Tuple[int, float]] = collections.deque(maxlen=window)

    def add(self, labels: Sequence[int], scores: Sequence[float]) -> None:
        self._rows.extend(zip((int(y) for y in labels), (float(p) for p in scores)))

    def reset(self) -> None:
        self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)

    def auc(self) -> Optional[float]:
        positives = sum(y for y, _ in self._rows)
        negatives = len(self._rows) - positives
        if len(self._rows) < DRIFT_MIN_ROWS or min(positives, negatives) < DRIFT_MIN_PER_CLASS:
            return None
        import numpy as np

        from easyrec_online.artifacts.scorer import roc_auc

        return float(roc_auc(np.asarray([y for y, _ in self._rows]), np.asarray([p for _, p in self._rows])))


def growing_fields(spec: FeatureSpec) -> Set[str]:
    """The lineage's parameter and profile fields, as "<source>.<key>"."""
    return {"{}.{}".format(f.source, f.key) for f in spec.features if f.source in GROWING_SOURCES}


def fields_a_retraining_would_add(settings: Settings, spec: FeatureSpec, actions: Sequence[StoredAction],
                                  profiles: Profiles) -> List[str]:
    """Fields that a full training on these actions would make features and the lineage lacks
    ("param.stars", "item.genre", ...), chosen as a full training chooses them (derive_spec)."""
    derived = derive_spec(actions, profiles, min_support=settings.feature_min_support,
                          max_parameter_features=settings.max_parameter_features,
                          max_profile_features=settings.max_profile_features,
                          exclude_parameters=settings.excluded_parameters, label_rules=settings.label_rules)
    return sorted(growing_fields(derived) - growing_fields(spec))


@dataclass
class RetrainingState:
    """What earlier retraining attempts of this trainer leave for the next decision."""

    attempted_at_actions: int = 0  # the lineage's trained actions when it last retrained (0: never)
    attempted_at: Optional[dt.datetime] = None
    tried_fields: Set[str] = field(default_factory=set)


def retraining_reason(settings: Settings, *, requested: bool, trained_actions: int, born_with: int,
                      born_at: Optional[str], new_fields: Sequence[str], fresh_auc: Optional[float],
                      history: RetrainingState, now: dt.datetime) -> Optional[str]:
    """Why the continuous trainer should start a new lineage now, or None. `trained_actions`: actions the
    current lineage has trained on; `born_with`/`born_at`: its first version's count and time."""
    if requested:
        return "requested: POST /online/training/start {\"mode\": \"full\"}"
    fresh = [f for f in new_fields if f not in history.tried_fields]
    if fresh:
        return "new features: {}".format(", ".join(fresh))
    factor = settings.lineage_growth_factor
    if factor > 0:
        since = max(born_with, history.attempted_at_actions, 1)
        if trained_actions >= factor * since and trained_actions - born_with >= settings.lineage_growth_min_actions:
            return "data grew {:.1f}x since the lineage began ({} -> {} actions)".format(
                trained_actions / float(max(born_with, 1)), born_with, trained_actions)
    if fresh_auc is not None and fresh_auc < settings.auto_retrain_auc_threshold:
        return "drift: AUC {:.3f} on fresh actions (< AUTO_RETRAIN_AUC_THRESHOLD {})".format(
            fresh_auc, settings.auto_retrain_auc_threshold)
    if settings.retrain_every_h > 0 and born_at:
        since_at = max([parse_timestamp(born_at)] + ([history.attempted_at] if history.attempted_at else []))
        age_h = (now - since_at).total_seconds() / 3600.0
        if age_h >= settings.retrain_every_h:
            return "schedule: the lineage began {:.1f} h ago (RETRAIN_EVERY_H {})".format(age_h, settings.retrain_every_h)
    return None


__all__ = ["FreshAuc", "RetrainingState", "fields_a_retraining_would_add", "retraining_reason", "growing_fields"]
