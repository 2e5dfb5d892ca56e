"""Examples -> model inputs: `encode` (one row) and `columns_for_pairs` (a scoring request), the one
definition training rows and serving requests share."""
from __future__ import annotations

import datetime as dt
import math
from collections import abc
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

from easyrec_online.artifacts.features.spec import (
    CSV_SEPARATOR,
    MAX_FLATTEN_DEPTH,
    MAX_HISTORY,
    MAX_TAGS,
    NO_HISTORY,
    TAG_SEPARATOR,
    UNKNOWN_ID,
    FeatureDef,
    FeatureSpec,
    Value,
)
from easyrec_online.ingest.actions import StoredAction, id_key, parse_timestamp


@dataclass(frozen=True)
class Context:
    """What surrounds a user-item pair: the kind of action, when (UTC) and its parameters."""

    action_type: str
    moment: dt.datetime
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, action: StoredAction) -> "Context":
        return cls(action.action_type or "", parse_timestamp(action.timestamp), action.parameters or {})


@dataclass(frozen=True)
class Example:
    """One labelled (user, item, context): an action, or a negative sampled beside one."""

    user_id: Union[int, str]
    item_id: Union[int, str]
    context: Context
    label: float = 0.0
    conversion: float = 0.0
    # The user's history at the time of the action (training); None: the Profiles' (serving).
    history: Optional[Tuple[str, ...]] = None
    # Encoded as a user (an item) the model does not know: the id feature is blank (UNKNOWN_ID), the
    # profile fields are the entity's own. Training copies teach the model new users and new items;
    # serving uses them for users and items the version never trained on.
    cold_user: bool = False
    cold_item: bool = False
    # The live features' values at the time of the action (features/live.py; training rows), and the
    # action the example comes from (its negatives and copies share it).
    live: Optional[Mapping[str, float]] = None
    event_id: str = ""

    def label_values(self) -> Tuple[float, float]:
        """The label columns (spec.LABEL_COLUMNS): label, conversion."""
        return float(self.label), float(self.conversion)


class Profiles:
    """User and item profile attributes by id (what the spec's user/item features read)."""

    def __init__(self, users: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 items: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 histories: Optional[Mapping[str, Sequence[str]]] = None) -> None:
        self.users = dict(users or {})
        self.items = dict(items or {})
        self.histories = dict(histories or {})
        self._flat: Dict[Tuple[str, str], Dict[str, Any]] = {}

    def history(self, user_id: Union[int, str]) -> Sequence[str]:
        return self.histories.get(id_key(user_id)) or ()

    def user(self, user_id: Union[int, str]) -> Mapping[str, Any]:
        return self.users.get(id_key(user_id)) or {}

    def item(self, item_id: Union[int, str]) -> Mapping[str, Any]:
        return self.items.get(id_key(item_id)) or {}

    def flat(self, kind: str, entity_id: Union[int, str]) -> Mapping[str, Any]:
        """The profile's fields by dotted name (flatten), computed once per entity: a training run encodes
        each user and item many times. Callers must not modify the result."""
        key = (kind, id_key(entity_id))
        found = self._flat.get(key)
        if found is None:
            attributes = self.user(entity_id) if kind == "user" else self.item(entity_id)
            if not attributes:
                return {}  # not cached: NO_PROFILES is shared by every request
            found = self._flat[key] = flatten(attributes)
        return found


NO_PROFILES = Profiles()


_UNSAFE = (CSV_SEPARATOR, "\n", "\r", '"')


def feature_value(value: Union[int, str]) -> str:
    if type(value) is int:  # the common case, and nothing to clean
        return str(value)
    text = id_key(value)
    for ch in _UNSAFE:
        if ch in text:
            text = text.replace(ch, " ")
    return text


def flatten(data: Optional[Mapping[str, Any]], prefix: str = "", depth: int = 0) -> Dict[str, Any]:
    """Nested objects -> dotted names: {"device": {"os": "ios"}} -> {"device.os": "ios"}."""
    flat: Dict[str, Any] = {}
    for key, value in (data or {}).items():
        name = prefix + str(key)
        if isinstance(value, abc.Mapping):  # collections.abc's: typing.Mapping's check is several times slower
            if depth + 1 < MAX_FLATTEN_DEPTH:
                flat.update(flatten(value, name + ".", depth + 1))
        elif value is not None:
            flat[name] = value
    return flat


def value_kind(value: Any) -> Optional[str]:
    if isinstance(value, bool) or isinstance(value, str):
        return "id"
    if isinstance(value, (int, float)):
        return "raw" if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return "tags"
    return None


def _token(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return feature_value(value if isinstance(value, (int, str)) else str(value))


def encode_value(feature: FeatureDef, value: Any) -> Value:
    if feature.kind == "raw":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return 0.0
        z = (float(value) - feature.mean) / (feature.std or 1.0)
        low, high = feature.z_bounds
        return max(low, min(high, z))
    if value is None:
        return ""
    if feature.kind == "tags":
        values = value if isinstance(value, (list, tuple)) else [value]
        tags = [_token(v).replace(TAG_SEPARATOR, " ") for v in values[:MAX_TAGS] if v is not None]
        return TAG_SEPARATOR.join(t for t in tags if t)
    return _token(value)


def encode_history(items: Sequence[str]) -> str:
    tokens = [feature_value(i).replace(TAG_SEPARATOR, " ") for i in list(items)[-MAX_HISTORY:]]
    return TAG_SEPARATOR.join(tokens) if tokens else NO_HISTORY


def encode(example: Example, spec: FeatureSpec, profiles: Profiles = NO_PROFILES) -> Dict[str, Value]:
    """The model inputs of one example: the single definition shared by training and serving."""
    moment = example.context.moment.astimezone(dt.timezone.utc)
    base: Dict[str, Value] = {"user_id": UNKNOWN_ID if example.cold_user else feature_value(example.user_id),
                              "item_id": UNKNOWN_ID if example.cold_item else feature_value(example.item_id),
                              "action_type": feature_value(example.context.action_type),
                              "hour": str(moment.hour), "dow": str(moment.weekday())}
    sources: Dict[str, Mapping[str, Any]] = {}
    if spec.uses("param"):
        sources["param"] = flatten(example.context.parameters)
    if spec.uses("user"):
        sources["user"] = profiles.flat("user", example.user_id)
    if spec.uses("item"):
        sources["item"] = profiles.flat("item", example.item_id)
    row: Dict[str, Value] = {}
    for feature in spec.features:
        if feature.source == "base":
            row[feature.name] = base[feature.key]
        elif feature.source == "history":
            row[feature.name] = encode_history(
                example.history if example.history is not None else profiles.history(example.user_id))
        elif feature.source == "live":
            row[feature.name] = encode_value(feature, (example.live or {}).get(feature.key))
        else:
            row[feature.name] = encode_value(feature, sources[feature.source].get(feature.key))
    return row


def feature_row(user_id: Union[int, str], item_id: Union[int, str], context: Context,
                spec: Optional[FeatureSpec] = None, profiles: Profiles = NO_PROFILES) -> Dict[str, Value]:
    return encode(Example(user_id, item_id, context), spec or FeatureSpec(), profiles)


def _id_column(ids: Sequence[Union[int, str]]) -> List[str]:
    """feature_value of each id: their keys as they are when none has a character to clean (checked on
    the keys joined, in C: 1000 candidates without a call per id)."""
    keys = list(map(id_key, ids))
    joined = "".join(keys)
    if any(ch in joined for ch in _UNSAFE):
        return [feature_value(i) for i in ids]
    return keys


def columns_for_pairs(pairs: Sequence[Tuple[Union[int, str], Union[int, str]]], context: Context,
                      spec: Optional[FeatureSpec] = None, profiles: Profiles = NO_PROFILES,
                      cold_users: Optional[Set[str]] = None,
                      cold_items: Optional[Set[str]] = None,
                      live: Optional[Mapping[str, Sequence[float]]] = None) -> Dict[str, List[Value]]:
    """Model inputs for scoring pairs in one context (columnar, as the SavedModel wants).

    The same values as `encode` gives pair by pair (tested), computed once per context, per
    distinct user and per distinct item: a 1000-candidate request encodes one user, not 1000.
    Users in `cold_users` and items in `cold_items` (id keys) are encoded as `Example.cold_user` and
    `Example.cold_item` are. `live`: the pairs' live features (live.live_columns, in pair order), as
    `Example.live` is for one pair.
    """
    spec = spec or FeatureSpec()
    if not pairs:
        return {name: [] for name in spec.names}
    user_side = [f for f in spec.features if f.name == "user_id" or f.source in ("user", "history")]
    item_side = [f for f in spec.features if f.name == "item_id" or f.source == "item"]
    one_of = {f.name for f in user_side + item_side}
    first = encode(Example(pairs[0][0], pairs[0][1], context), spec, profiles)
    n = len(pairs)
    columns: Dict[str, List[Value]] = {}

    def side(entity_id: Union[int, str], features: List[FeatureDef], attributes: Mapping[str, Any]) -> Dict[str, Value]:
        flat = flatten(attributes) if len(features) > 1 else {}
        return {f.name: feature_value(entity_id) if f.source == "base"
                else encode_history(profiles.history(entity_id)) if f.source == "history"
                else encode_value(f, flat.get(f.key)) for f in features}

    for f in spec.features:
        if f.source == "live":  # per pair: encode_value's arithmetic, on arrays (1000 candidates, 8 features)
            values = (live or {}).get(f.key)
            if values is None:
                columns[f.name] = [encode_value(f, None)] * n
            else:
                import numpy as np  # where scoring runs; the same IEEE arithmetic as encode_value's

                z = (np.asarray(values, dtype=np.float64) - f.mean) / (f.std or 1.0)
                low, high = f.z_bounds
                columns[f.name] = np.minimum(np.maximum(z, low), high)  # np.clip, without its overhead
        elif f.name not in one_of:
            columns[f.name] = [first[f.name]] * n  # depends on the context alone
    for features, position, lookup in ((user_side, 0, profiles.user), (item_side, 1, profiles.item)):
        ids = list(map(itemgetter(position), pairs))
        if len(features) == 1:  # just the id: no profile fields to join
            if ids.count(ids[0]) == n:  # one user, many items (/recommend): encode the user once
                columns[features[0].name] = [feature_value(ids[0])] * n
            else:
                columns[features[0].name] = _id_column(ids)
            continue
        keys = [id_key(i) for i in ids]
        encoded: Dict[str, Dict[str, Value]] = {}
        for entity_id, key in zip(ids, keys):
            if key not in encoded:
                encoded[key] = side(entity_id, features, lookup(entity_id))
        for f in features:
            by_key = {k: v[f.name] for k, v in encoded.items()}
            columns[f.name] = [by_key[k] for k in keys]
    for name, unknown in (("user_id", cold_users), ("item_id", cold_items)):
        if unknown and name in columns:
            # By encoded value (one set lookup per pair, no call): 1000 candidates with one new item.
            blank = {feature_value(key) for key in unknown}
            columns[name] = [UNKNOWN_ID if value in blank else value for value in columns[name]]
    return {name: columns[name] for name in spec.names}
