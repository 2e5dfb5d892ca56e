"""Deriving a new lineage's FeatureSpec from its first training data (actions and profiles)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from easyrec_online.artifacts.features.encode import NO_PROFILES, Example, Profiles, flatten, value_kind
from easyrec_online.artifacts.features.live import LIVE_KEYS, USER_HISTORY_KEYS
from easyrec_online.artifacts.features.spec import (
    BASE_FEATURES,
    BASE_NAMES,
    HISTORY_FEATURE_NAME,
    PREFIXES,
    FeatureDef,
    FeatureSpec,
)
from easyrec_online.ingest.actions import StoredAction, id_key
from easyrec_online.ingest.labels import DEFAULT_LABEL_RULES


def _column_name(source: str, key: str, taken: Set[str]) -> str:
    base = "{}_{}".format(PREFIXES[source], re.sub(r"[^A-Za-z0-9_]", "_", key))[:60]
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
                id_hash_buckets: Optional[int] = None,
                live_examples: Optional[Sequence[Example]] = None) -> FeatureSpec:
    """A new lineage's features, from the actions (and the profiles of their users and items).
    `live_examples`: the lineage reads live features (features/live.py), normalised with the mean and
    standard deviation of these training examples' values."""
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
    if live_examples is not None:
        features += _live_features(live_examples, taken)
    return FeatureSpec(tuple(features))


def _live_features(examples: Sequence[Example], taken: Set[str]) -> List[FeatureDef]:
    """Every live feature, even one constant on this data (no similar items yet, say): it will vary."""
    features = []
    for key in LIVE_KEYS:
        values = [float(e.live[key]) for e in examples if e.live]
        mean = sum(values) / len(values) if values else 0.0
        std = math.sqrt(sum((x - mean) ** 2 for x in values) / len(values)) if values else 0.0
        # The range seen (features/spec.FeatureDef.lo, hi) of what describes the user's own recent
        # history; none for a constant one, which is to vary. The item side is left unbounded: an
        # item's counts grow for as long as the lineage lives (bounded at the first training's most
        # popular item, the MovieLens holdout's popular items lost their order and the fitted CF blend
        # weight fell from 4 to 0).
        bounded = std > 0 and key in USER_HISTORY_KEYS
        features.append(FeatureDef(_column_name("live", key, taken), "raw", "live", key, mean=round(mean, 6),
                                   std=round(std, 6) or 1.0, lo=min(values) if bounded else None,
                                   hi=max(values) if bounded else None))
    return features
