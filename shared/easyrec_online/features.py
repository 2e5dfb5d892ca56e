"""Actions -> model feature rows: one code path for training and serving (no train/serve skew).

The training task turns stored actions into rows with `training_rows`; the inference function
turns a request into columns with `serving_columns`. Both go through `feature_value`, so an id is
encoded identically on both sides. The feature set is declared once in FEATURES and drives the
EasyRec pipeline config (modeling/pipeline.py) as well as the SavedModel's inputs.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from .actions import StoredAction, id_key

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
)
FEATURE_NAMES: Tuple[str, ...] = tuple(f.name for f in FEATURES)
LABEL = "label"


def feature_value(value: Union[int, str]) -> str:
    text = id_key(value)
    for ch in (CSV_SEPARATOR, "\n", "\r", '"'):
        text = text.replace(ch, " ")
    return text


@dataclass
class TrainingRow:
    label: float
    features: Dict[str, str]


def feature_row(user_id: Union[int, str], item_id: Union[int, str]) -> Dict[str, str]:
    return {"user_id": feature_value(user_id), "item_id": feature_value(item_id)}


def training_rows(
    actions: Sequence[StoredAction], negatives_per_positive: int, seed: int, catalog: Optional[Sequence[str]] = None
) -> List[TrainingRow]:
    """One row per action, plus sampled negatives when the data is (almost) all positive.

    Implicit feedback (clicks, likes, purchases) rarely carries negatives; a model trained on
    positives alone learns nothing. We then pair each positive with `negatives_per_positive`
    random catalog items (default: the items of `actions`) the user has not acted on here,
    labelled 0 (the standard approach).
    """
    rows = [TrainingRow(a.label, feature_row(a.user_id, a.item_id)) for a in actions]
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
            rows.append(TrainingRow(0.0, feature_row(a.user_id, item)))
    return rows


def csv_lines(rows: Iterable[TrainingRow]) -> Iterable[str]:
    for row in rows:
        yield CSV_SEPARATOR.join([repr(float(row.label))] + [row.features[n] for n in FEATURE_NAMES]) + "\n"


def serving_columns(user_id: Union[int, str], item_ids: Sequence[Union[int, str]]) -> Dict[str, List[str]]:
    """Model inputs for scoring one user against many items (columnar, as the SavedModel wants)."""
    return columns_for_pairs([(user_id, item) for item in item_ids])


def columns_for_pairs(pairs: Sequence[Tuple[Union[int, str], Union[int, str]]]) -> Dict[str, List[str]]:
    columns: Dict[str, List[str]] = {name: [] for name in FEATURE_NAMES}
    for user_id, item_id in pairs:
        for name, value in feature_row(user_id, item_id).items():
            columns[name].append(value)
    return columns
