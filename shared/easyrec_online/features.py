"""Actions -> model feature rows: one code path for training and serving (no train/serve skew).

The training task turns stored actions into rows with `training_rows`; the inference function
turns a request into columns with `columns_for_pairs`. Both build every row with `feature_row`
from (user, item, Context), so a value is encoded identically on both sides. The Context is the
action's own (its action_type and timestamp) in training, and at serving the version's serving
default action type and the request's time. The feature set is declared once in FEATURES and drives
the EasyRec pipeline config (modeling/pipeline.py) as well as the SavedModel's inputs; a SavedModel
only reads the inputs of its own lineage, so older lineages keep serving when features are added.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from .actions import StoredAction, id_key, parse_timestamp

# CSVInput's field separator. Values are cleaned of it (and of line breaks) by feature_value.
CSV_SEPARATOR = "\t"


@dataclass(frozen=True)
class IdFeature:
    """A categorical feature hashed into buckets inside the model graph."""

    name: str
    hash_bucket_size: int
    embedding_dim: int


FEATURES: Tuple[IdFeature, ...] = (
    IdFeature("user_id", hash_bucket_size=200000, embedding_dim=16),
    IdFeature("item_id", hash_bucket_size=200000, embedding_dim=16),
    IdFeature("action_type", hash_bucket_size=1000, embedding_dim=16),
    IdFeature("hour", hash_bucket_size=100, embedding_dim=16),  # hour of day, UTC
    IdFeature("dow", hash_bucket_size=20, embedding_dim=16),  # day of week, Monday = 0
)
FEATURE_NAMES: Tuple[str, ...] = tuple(f.name for f in FEATURES)
LABEL = "label"
# Second label, for multi-task models: the action was a positive conversion (a purchase, a booking),
# not just engagement. Single-task models ignore the column.
CONVERSION_LABEL = "conversion"
CONVERSION_ACTION_TYPES = frozenset(["purchase", "book_tickets"])


def feature_value(value: Union[int, str]) -> str:
    text = id_key(value)
    for ch in (CSV_SEPARATOR, "\n", "\r", '"'):
        text = text.replace(ch, " ")
    return text


@dataclass
class TrainingRow:
    label: float
    features: Dict[str, str]
    conversion: float = 0.0


@dataclass(frozen=True)
class Context:
    """What surrounds a user-item pair: the kind of action and when (UTC)."""

    action_type: str
    moment: dt.datetime

    @classmethod
    def of(cls, action: StoredAction) -> "Context":
        return cls(action.action_type or "", parse_timestamp(action.timestamp))


def feature_row(user_id: Union[int, str], item_id: Union[int, str], context: Context) -> Dict[str, str]:
    moment = context.moment.astimezone(dt.timezone.utc)
    return {"user_id": feature_value(user_id), "item_id": feature_value(item_id),
            "action_type": feature_value(context.action_type), "hour": str(moment.hour),
            "dow": str(moment.weekday())}


def training_rows(
    actions: Sequence[StoredAction], negatives_per_positive: int, seed: int, catalog: Optional[Sequence[str]] = None
) -> List[TrainingRow]:
    """One row per action, plus sampled negatives when the data is (almost) all positive.

    Implicit feedback (clicks, likes, purchases) rarely carries negatives; a model trained on
    positives alone learns nothing. We then pair each positive with `negatives_per_positive`
    random catalog items (default: the items of `actions`) the user has not acted on here,
    labelled 0 (the standard approach).
    """
    rows = [TrainingRow(a.label, feature_row(a.user_id, a.item_id, Context.of(a)),
                        float(a.label >= 0.5 and a.action_type in CONVERSION_ACTION_TYPES)) for a in actions]
    positives = [a for a in actions if a.label >= 0.5]
    if not positives or negatives_per_positive <= 0 or len(positives) < 0.8 * len(actions):
        return rows
    items = sorted(set(catalog) if catalog is not None else {id_key(a.item_id) for a in actions})
    seen: Dict[str, Set[str]] = {}
    for a in actions:
        seen.setdefault(id_key(a.user_id), set()).add(id_key(a.item_id))
    rng = random.Random(seed)
    for a in positives:
        unseen = [item for item in items if item not in seen[id_key(a.user_id)]]
        for item in rng.sample(unseen, min(negatives_per_positive, len(unseen))):
            rows.append(TrainingRow(0.0, feature_row(a.user_id, item, Context.of(a))))
    return rows


def csv_lines(rows: Iterable[TrainingRow]) -> Iterable[str]:
    for row in rows:
        yield CSV_SEPARATOR.join([repr(float(row.label)), repr(float(row.conversion))]
                                 + [row.features[n] for n in FEATURE_NAMES]) + "\n"


def columns_for_pairs(pairs: Sequence[Tuple[Union[int, str], Union[int, str]]], context: Context) -> Dict[str, List[str]]:
    """Model inputs for scoring pairs in one context (columnar, as the SavedModel wants)."""
    columns: Dict[str, List[str]] = {name: [] for name in FEATURE_NAMES}
    for user_id, item_id in pairs:
        for name, value in feature_row(user_id, item_id, context).items():
            columns[name].append(value)
    return columns


def serving_action_type(actions: Sequence[StoredAction]) -> str:
    """The action type a version predicts at serving: the most common one among positives."""
    counts: Dict[str, int] = {}
    for a in actions:
        if a.label >= 0.5:
            counts[a.action_type or ""] = counts.get(a.action_type or "", 0) + 1
    return max(sorted(counts), key=lambda k: counts[k]) if counts else ""
