"""Actions -> model feature rows: one code path for training and serving (no train/serve skew).

A lineage's features are a `FeatureSpec`, derived once from the data when a full training starts
the lineage and then fixed: incremental updates and serving use the spec stored with the version.

  base     user_id, item_id, action_type, hour (of day, UTC), dow (day of week, Monday = 0)
  param    action `parameters`, flattened: nested objects -> dotted names ("device.os")
  user     the user's profile fields (PUT /users/{id}), flattened the same way
  item     the item's profile fields (PUT /items/{id})

Each non-base field becomes one feature by the kind of its values:
  numbers           RawFeature, normalised with the mean/std of the data that derived the spec
                    (clipped to +-5 standard deviations; missing -> 0, the mean)
  strings, booleans IdFeature, hashed into buckets inside the graph (missing -> "")
  lists             TagFeature, one tag per element (missing -> no tags)

A field becomes a feature when enough of the data carries it (FEATURE_MIN_SUPPORT), up to
MAX_PARAMETER_FEATURES parameters and MAX_PROFILE_FEATURES per profile kind (the most frequent).
Parameters a label rule reads (e.g. rating `stars`) never become features: they are the label.
Keys that appear after a lineage started are stored with the action and ignored by that lineage;
the next full retrain (a new lineage) takes them in.

Every row is built by `encode` from an `Example` (user, item, Context, label), for training rows
and for serving requests alike; the CSV layout and the SavedModel inputs follow the spec's order.
"""
from __future__ import annotations

import datetime as dt
from collections import abc
import math
import random
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from .actions import StoredAction, id_key, parse_timestamp
from .labels import DEFAULT_LABEL_RULES

# CSVInput's field separator. Values are cleaned of it (and of line breaks) by feature_value.
CSV_SEPARATOR = "\t"
TAG_SEPARATOR = "|"
LABEL = "label"
# Second label, for multi-task models: the action was a positive conversion (a purchase, a booking),
# not just engagement. Single-task models ignore the column.
CONVERSION_LABEL = "conversion"
CONVERSION_ACTION_TYPES = frozenset(["purchase", "book_tickets"])

KINDS = ("id", "raw", "tags", "seq")
SOURCES = ("base", "param", "user", "item", "history")
# Sequence models (MIND) read the user's history: the items they acted on positively before, oldest
# first, up to MAX_HISTORY. An empty history is one placeholder token (a sequence is never empty).
MAX_HISTORY = 20
NO_HISTORY = "__none__"
# The id feature of a user or item the lineage does not know. Real ids are never blank (validated
# at the edge); inside the graph a blank id hashes to no bucket at all: a zero embedding.
UNKNOWN_ID = ""
HISTORY_FEATURE_NAME = "hist_item_id"
EMBEDDING_DIM = 16  # one dimension for every feature: FM and AutoInt interact embeddings pairwise
RAW_CLIP = 5.0
MAX_FLATTEN_DEPTH = 4
MAX_TAGS = 20
Value = Union[str, float]


@dataclass(frozen=True)
class FeatureDef:
    name: str  # model input / CSV column name
    kind: str  # id | raw | tags
    source: str  # base | param | user | item
    key: str  # dotted path inside the source (the base feature's own name for base)
    hash_bucket_size: int = 0  # id and tags
    mean: float = 0.0  # raw
    std: float = 1.0  # raw
    embedding_dim: int = EMBEDDING_DIM

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


BASE_FEATURES: Tuple[FeatureDef, ...] = (
    FeatureDef("user_id", "id", "base", "user_id", hash_bucket_size=200000),
    FeatureDef("item_id", "id", "base", "item_id", hash_bucket_size=200000),
    FeatureDef("action_type", "id", "base", "action_type", hash_bucket_size=1000),
    FeatureDef("hour", "id", "base", "hour", hash_bucket_size=100),
    FeatureDef("dow", "id", "base", "dow", hash_bucket_size=20),
)
BASE_NAMES: Tuple[str, ...] = tuple(f.name for f in BASE_FEATURES)
_PREFIX = {"param": "p", "user": "u", "item": "i"}


@dataclass(frozen=True)
class FeatureSpec:
    features: Tuple[FeatureDef, ...] = BASE_FEATURES
    # Derived once: encode() asks for every row (hundreds of thousands in a full training).
    _sources: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sources", frozenset(f.source for f in self.features))

    @property
    def names(self) -> List[str]:
        return [f.name for f in self.features]

    def uses(self, source: str) -> bool:
        return source in self._sources

    def to_json(self) -> List[Dict[str, Any]]:
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_json(cls, data: Optional[Sequence[Mapping[str, Any]]]) -> "FeatureSpec":
        if not data:
            return cls()
        return cls(tuple(FeatureDef(**dict(d)) for d in data))


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


def _encode(feature: FeatureDef, value: Any) -> Value:
    if feature.kind == "raw":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return 0.0
        z = (float(value) - feature.mean) / (feature.std or 1.0)
        return max(-RAW_CLIP, min(RAW_CLIP, z))
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
        else:
            row[feature.name] = _encode(feature, sources[feature.source].get(feature.key))
    return row


def feature_row(user_id: Union[int, str], item_id: Union[int, str], context: Context,
                spec: Optional[FeatureSpec] = None, profiles: Profiles = NO_PROFILES) -> Dict[str, Value]:
    return encode(Example(user_id, item_id, context), spec or FeatureSpec(), profiles)


def columns_for_pairs(pairs: Sequence[Tuple[Union[int, str], Union[int, str]]], context: Context,
                      spec: Optional[FeatureSpec] = None, profiles: Profiles = NO_PROFILES,
                      cold_users: Optional[Set[str]] = None,
                      cold_items: Optional[Set[str]] = None) -> Dict[str, List[Value]]:
    """Model inputs for scoring pairs in one context (columnar, as the SavedModel wants).

    The same values as `encode` gives pair by pair (tested), computed once per context, per
    distinct user and per distinct item: a 1000-candidate request encodes one user, not 1000.
    Users in `cold_users` and items in `cold_items` (id keys) are encoded as `Example.cold_user` and
    `Example.cold_item` are.
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
                else _encode(f, flat.get(f.key)) for f in features}

    for name in spec.names:
        if name not in one_of:
            columns[name] = [first[name]] * n  # depends on the context alone
    for features, position, lookup in ((user_side, 0, profiles.user), (item_side, 1, profiles.item)):
        ids = [pair[position] for pair in pairs]
        if len(features) == 1:  # just the id: no profile fields to join
            if ids.count(ids[0]) == n:  # one user, many items (/recommend): encode the user once
                columns[features[0].name] = [feature_value(ids[0])] * n
            else:  # feature_value inlined for int ids (nothing to clean): one call fewer per candidate
                columns[features[0].name] = [str(i) if type(i) is int else feature_value(i) for i in ids]
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


# --- deriving a lineage's spec ---------------------------------------------------------------

def _column_name(source: str, key: str, taken: Set[str]) -> str:
    base = "{}_{}".format(_PREFIX[source], re.sub(r"[^A-Za-z0-9_]", "_", key))[:60]
    name, n = base, 1
    while name in taken:
        n += 1
        name = "{}_{}".format(base, n)
    taken.add(name)
    return name


@dataclass
class _FieldStats:
    count: int = 0
    kinds: Dict[str, int] = field(default_factory=dict)
    numbers: List[float] = field(default_factory=list)


def _collect(records: Iterable[Mapping[str, Any]]) -> Tuple[int, Dict[str, _FieldStats]]:
    total = 0
    stats: Dict[str, _FieldStats] = {}
    for record in records:
        total += 1
        for key, value in flatten(record).items():
            kind = value_kind(value)
            if kind is None:
                continue
            s = stats.setdefault(key, _FieldStats())
            s.count += 1
            s.kinds[kind] = s.kinds.get(kind, 0) + 1
            if kind == "raw":
                s.numbers.append(float(value))
    return total, stats


def _fields_to_features(source: str, records: Iterable[Mapping[str, Any]], min_support: float, limit: int,
                        exclude: Set[str], taken: Set[str], hash_bucket_size: int) -> List[FeatureDef]:
    total, stats = _collect(records)
    if total == 0 or limit <= 0:
        return []
    needed = max(2, int(math.ceil(min_support * total)))
    keys = [k for k, s in stats.items() if s.count >= needed and k not in exclude]
    keys = sorted(keys, key=lambda k: (-stats[k].count, k))[:limit]
    features = []
    for key in sorted(keys):
        s = stats[key]
        kind = max(sorted(s.kinds), key=lambda k: s.kinds[k])
        if kind == "raw" and s.kinds.get("raw", 0) == s.count:
            mean = sum(s.numbers) / len(s.numbers)
            std = math.sqrt(sum((x - mean) ** 2 for x in s.numbers) / len(s.numbers))
            if std == 0:
                continue  # a constant says nothing
            features.append(FeatureDef(_column_name(source, key, taken), "raw", source, key,
                                       mean=round(mean, 6), std=round(std, 6)))
        else:
            kind = "tags" if kind == "tags" else "id"
            features.append(FeatureDef(_column_name(source, key, taken), kind, source, key,
                                       hash_bucket_size=hash_bucket_size))
    return features


def label_parameters(label_rules: Optional[Mapping[str, Any]]) -> Set[str]:
    """Parameters the label rules read (None: the default rules): features made of them would leak the label."""
    rules = DEFAULT_LABEL_RULES if label_rules is None else label_rules
    return {str(rule["param"]) for rule in rules.values() if isinstance(rule, Mapping) and "param" in rule}


def derive_spec(actions: Sequence[StoredAction], profiles: Profiles = NO_PROFILES, *, min_support: float = 0.01,
                max_parameter_features: int = 20, max_profile_features: int = 20,
                exclude_parameters: Iterable[str] = (), label_rules: Optional[Mapping[str, Any]] = None,
                hash_bucket_size: int = 10000, with_history: bool = False,
                id_hash_buckets: Optional[int] = None) -> FeatureSpec:
    """A new lineage's features, from the actions (and the profiles of their users and items)."""
    taken = set(BASE_NAMES)
    excluded = set(exclude_parameters) | label_parameters(label_rules)
    features = [FeatureDef(f.name, f.kind, f.source, f.key, hash_bucket_size=id_hash_buckets)
                if id_hash_buckets and f.name in ("user_id", "item_id") else f for f in BASE_FEATURES]
    features += _fields_to_features("param", (a.parameters or {} for a in actions), min_support,
                                    max_parameter_features, excluded, taken, hash_bucket_size)
    users = sorted({id_key(a.user_id) for a in actions})
    items = sorted({id_key(a.item_id) for a in actions})
    features += _fields_to_features("user", (profiles.user(u) for u in users), min_support, max_profile_features,
                                    set(), taken, hash_bucket_size)
    features += _fields_to_features("item", (profiles.item(i) for i in items), min_support, max_profile_features,
                                    set(), taken, hash_bucket_size)
    if with_history:
        features.append(FeatureDef(HISTORY_FEATURE_NAME, "seq", "history", "items",
                                   hash_bucket_size=id_hash_buckets or 200000))
    return FeatureSpec(tuple(features))


# --- training examples -------------------------------------------------------------------------

def histories_before(actions: Sequence[StoredAction],
                     initial: Optional[Mapping[str, Sequence[str]]] = None) -> Dict[str, Tuple[str, ...]]:
    """event_id -> the user's positive items strictly before that action (after `initial`)."""
    running: Dict[str, List[str]] = {u: list(h)[-MAX_HISTORY:] for u, h in (initial or {}).items()}
    out: Dict[str, Tuple[str, ...]] = {}
    for a in sorted(actions, key=lambda a: (parse_timestamp(a.timestamp), a.event_id)):
        seen = running.setdefault(id_key(a.user_id), [])
        out[a.event_id] = tuple(seen)
        if a.label >= 0.5:
            seen.append(id_key(a.item_id))
            del seen[:-MAX_HISTORY]
    return out


def training_examples(
    actions: Sequence[StoredAction], negatives_per_positive: int, seed: int, catalog: Optional[Sequence[str]] = None,
    histories: Optional[Mapping[str, Tuple[str, ...]]] = None, sampling: str = "auto",
    acted_on: Optional[Mapping[str, Set[str]]] = None, cold_start_rate: float = 0.0,
) -> List[Example]:
    """One example per action, plus sampled negatives when the data is (almost) all positive.

    Implicit feedback (clicks, likes, purchases) rarely carries negatives; a model trained on
    positives alone learns nothing. We then pair each positive with `negatives_per_positive`
    random catalog items (default: the items of `actions`) the user has not acted on, here or
    before (`acted_on`: user -> items, the lineage's catalog in an update), labelled 0 (the
    standard approach), in the positive's context. Without `acted_on` an update would label the
    items a user liked last week as negatives and pull the user's scores down for buying more.
    `sampling`: "auto" (only for (almost) all-positive data), "always" (also beside explicit
    negatives), "never".

    `cold_start_rate`: that share of the examples (a seeded draw) is added once more as from a new
    user (`cold_user`: no user id, no history, the same profile, item, context and label), and in a
    second draw as about a new item (`cold_item`: no item id, the item's profile), so the model also
    learns what to say about users and items it has never seen.
    """
    def history(a: StoredAction) -> Optional[Tuple[str, ...]]:
        return histories.get(a.event_id, ()) if histories is not None else None

    examples = [Example(a.user_id, a.item_id, Context.of(a), a.label,
                        float(a.label >= 0.5 and a.action_type in CONVERSION_ACTION_TYPES), history(a))
                for a in actions]
    positives = [a for a in actions if a.label >= 0.5]
    mostly_positive = len(positives) >= 0.8 * len(actions)
    if (not positives or negatives_per_positive <= 0 or sampling == "never"
            or (sampling != "always" and not mostly_positive)):
        return examples + _cold_start_copies(examples, cold_start_rate, seed)
    items = sorted(set(catalog) if catalog is not None else {id_key(a.item_id) for a in actions})
    seen: Dict[str, Set[str]] = {}
    for a in actions:
        user = id_key(a.user_id)
        if user not in seen:
            seen[user] = set(acted_on.get(user, ())) if acted_on is not None else set()
        seen[user].add(id_key(a.item_id))
    rng = random.Random(seed)
    for a in positives:
        for item in sample_unseen(rng, items, seen[id_key(a.user_id)], negatives_per_positive):
            examples.append(Example(a.user_id, item, Context.of(a), 0.0, history=history(a)))
    return examples + _cold_start_copies(examples, cold_start_rate, seed)


def sample_unseen(rng: random.Random, items: Sequence[str], seen: Set[str], k: int) -> List[str]:
    """Up to k distinct items not in `seen`, uniformly. Draws and rejects while most items are unseen (the
    usual case: O(k) a positive); lists the unseen ones otherwise. Listing them for every positive made
    building a MovieLens full training's examples (44,000 positives x 1,600 items) take 39 s instead of 3."""
    if len(seen) * 2 < len(items):
        picked: List[str] = []
        for _ in range(8 * k + 16):  # at least half are unseen: running out of draws is rare
            item = items[rng.randrange(len(items))]
            if item not in seen and item not in picked:
                picked.append(item)
                if len(picked) == k:
                    return picked
    unseen = [item for item in items if item not in seen]
    return rng.sample(unseen, min(k, len(unseen)))


def _cold_start_copies(examples: Sequence[Example], rate: float, seed: int) -> List[Example]:
    """New-user copies: a share `rate` of the examples. New-item copies: as many, but drawn evenly over
    the items rather than over the examples; drawn by example, they would be mostly the positives of
    popular items, and a new item (no one has liked it yet) would score like a hit."""
    if rate <= 0 or not examples:
        return []
    rng = random.Random(seed + 1)
    per_item: Dict[str, int] = {}
    for e in examples:
        key = id_key(e.item_id)
        per_item[key] = per_item.get(key, 0) + 1
    even = rate * len(examples) / float(len(per_item))  # copies per item
    copies = []
    for e in examples:
        if rng.random() < rate:
            copies.append(replace(e, cold_user=True, history=() if e.history is not None else None))
        if rng.random() < even / per_item[id_key(e.item_id)]:
            copies.append(replace(e, cold_item=True))
    return copies


def _csv_value(value: Value) -> str:
    return repr(float(value)) if isinstance(value, float) else value


def csv_lines(examples: Iterable[Example], spec: FeatureSpec, profiles: Profiles = NO_PROFILES) -> Iterable[str]:
    """CSV rows in the pipeline config's column order: label, conversion, then the spec's features."""
    names = spec.names
    for example in examples:
        row = encode(example, spec, profiles)
        yield CSV_SEPARATOR.join([repr(float(example.label)), repr(float(example.conversion))]
                                 + [_csv_value(row[n]) for n in names]) + "\n"


def serving_action_type(actions: Sequence[StoredAction]) -> str:
    """The action type a version predicts at serving: the most common one among positives."""
    counts: Dict[str, int] = {}
    for a in actions:
        if a.label >= 0.5:
            counts[a.action_type or ""] = counts.get(a.action_type or "", 0) + 1
    return max(sorted(counts), key=lambda k: counts[k]) if counts else ""
