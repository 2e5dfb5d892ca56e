"""Live features: what popularity and collaborative filtering know, as model inputs that follow each action.

A lineage with live features (LIVE_FEATURES, on by default) reads, for every (user, item) pair:

  item_pos, item_actions   log(1 + positives), log(1 + actions) of the item
  item_rate                its positive rate, (positives + 1) / (actions + 2)
  item_trend               log(1 + trend): positives decayed with TRENDING_HALF_LIFE_HOURS
  user_actions, user_rate  the same for the user's last LIVE_HISTORY actions
  cf_pos, cf_neg           item-to-item CF: how similar the item is to what the user liked (cf_pos) and
                           did not like (cf_neg) lately, sum over their last LIVE_HISTORY actions of
                           RECENCY**age * similarity(action's item -> this item)

At serving the user side comes from the user's live activity (state/activity.py: what they did
moments ago) and the item side and the similarities from the serving version's catalog, so a new
action changes the user's next ranking before any weight update. For a training row the same
values are computed as they were just before its action (the catalog replayed action by action,
similarities from the version trained before), by the same function, `live_columns`: no skew, no
look-ahead.
"""
from __future__ import annotations

import heapq
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from easyrec_online.artifacts.catalog import Catalog
from easyrec_online.ingest.actions import StoredAction, id_key, parse_timestamp

LIVE_HISTORY = 50
RECENCY = 0.9
LIVE_KEYS: Tuple[str, ...] = ("item_pos", "item_actions", "item_rate", "item_trend", "user_actions", "user_rate",
                              "cf_pos", "cf_neg")
_ZERO_STATS = (0.0, 0.0, 0.5, 0.0)


def neighbour_index(catalog: Catalog) -> Dict[str, Dict[str, float]]:
    """item -> {similar item: similarity}, built once per catalog object (a served version's is reused)."""
    index = catalog.__dict__.get("_neighbour_index")
    if index is None:
        index = {item: {other: float(sim) for other, sim in pairs} for item, pairs in catalog.neighbours.items()}
        catalog.__dict__["_neighbour_index"] = index
    return index


def _stats(raw: Optional[Sequence[float]]) -> Tuple[float, float, float, float]:
    """(log positives, log actions, positive rate, stored trend) of a catalog item entry."""
    if raw is None:
        return _ZERO_STATS
    return math.log1p(raw[1]), math.log1p(raw[0]), (raw[1] + 1.0) / (raw[0] + 2.0), raw[2]


def _item_stats(catalog: Catalog) -> Dict[str, Tuple[float, float, float, float]]:
    """item -> _stats, once per catalog object and size (a served version's, for its rankings)."""
    cached = catalog.__dict__.get("_item_stats")
    if cached is None or cached[0] != catalog.actions:
        cached = (catalog.actions, {item: _stats(raw) for item, raw in catalog.items.items()})
        catalog.__dict__["_item_stats"] = cached
    return cached[1]


def live_columns(catalog: Catalog, history: Sequence[Sequence[Any]], items: Sequence[str],
                 moment: float) -> Dict[str, List[float]]:
    """The live features of one user (their `history`: [item, action_type, positive] entries, oldest
    first) with each of `items` (id keys), at `moment` (epoch seconds): a list per key in LIVE_KEYS."""
    recent = list(history)[-LIVE_HISTORY:]
    n = len(recent)
    liked = sum(1 for entry in recent if entry[2])
    user_actions, user_rate = math.log1p(n), (liked + 1.0) / (n + 2.0)
    index = neighbour_index(catalog)
    weights = [(RECENCY ** (n - 1 - k), entry[0], bool(entry[2])) for k, entry in enumerate(recent)]
    if len(items) <= 64:  # a training row (a handful of items): look each similarity up
        cf_pos, cf_neg = [], []
        for item in items:
            pos = neg = 0.0
            for weight, source, positive in weights:
                sim = index.get(source, {}).get(item)
                if sim:
                    if positive:
                        pos += weight * sim
                    else:
                        neg += weight * sim
            cf_pos.append(pos)
            cf_neg.append(neg)
    else:  # a ranking (many items): spread the history's neighbours once, then one lookup per item
        pos_by, neg_by = _spread(weights, index)
        cf_pos = [pos_by.get(item, 0.0) for item in items]
        cf_neg = [neg_by.get(item, 0.0) for item in items]
    factor = catalog.trend_factor(moment)
    if len(items) <= 64:  # a catalog being replayed changes at every action: read its entries
        rows = [_stats(catalog.items.get(item)) for item in items]
    else:
        table = _item_stats(catalog)
        rows = [table.get(item, _ZERO_STATS) for item in items]
    return {
        "item_pos": [r[0] for r in rows], "item_actions": [r[1] for r in rows], "item_rate": [r[2] for r in rows],
        "item_trend": [math.log1p(r[3] * factor) for r in rows],
        "user_actions": [user_actions] * len(items), "user_rate": [user_rate] * len(items),
        "cf_pos": cf_pos, "cf_neg": cf_neg,
    }


def _spread(weights: Sequence[Tuple[float, str, bool]], index: Mapping[str, Mapping[str, float]]
            ) -> Tuple[Dict[str, float], Dict[str, float]]:
    """cf_pos and cf_neg of every item similar to some history entry: {item: score} each."""
    pos_by: Dict[str, float] = {}
    neg_by: Dict[str, float] = {}
    for weight, source, positive in weights:
        target = pos_by if positive else neg_by
        for other, sim in index.get(source, {}).items():
            target[other] = target.get(other, 0.0) + weight * sim
    return pos_by, neg_by


def similar_items(catalog: Catalog, history: Sequence[Sequence[Any]], n: int) -> List[str]:
    """The `n` items with the largest cf_pos for this history (what the user liked lately, by the
    catalog's similarities), best first, the history's own items left out: a co-occurrence candidate
    source for catalog recommendations that follows the user's latest actions."""
    recent = list(history)[-LIVE_HISTORY:]
    weights = [(RECENCY ** (len(recent) - 1 - k), entry[0], True) for k, entry in enumerate(recent) if entry[2]]
    scores, _ = _spread(weights, neighbour_index(catalog))
    for entry in recent:
        scores.pop(entry[0], None)
    return heapq.nlargest(n, scores, key=scores.__getitem__)


def live_row(columns: Mapping[str, Sequence[float]], index: int) -> Dict[str, float]:
    """One pair's values out of live_columns' answer."""
    return {key: float(columns[key][index]) for key in LIVE_KEYS}


class LiveReplay:
    """A catalog replayed action by action: the live features of each training row as they were just
    before its action. Actions must come in time order. `refresh(catalog)` recomputes the
    similarities every `refresh_every` actions (a full training, whose catalog starts empty: as a
    continuous trainer's versions would have had them); 0 keeps the starting catalog's similarities
    (an update: those of the version it continues from, which served those actions)."""

    def __init__(self, catalog: Catalog, refresh_every: int = 0,
                 refresh: Optional[Callable[[Catalog], None]] = None) -> None:
        self.catalog = catalog.copy()
        self._every = refresh_every
        self._refresh = refresh
        self._added = 0

    def before(self, action: StoredAction, items: Sequence[str]) -> Dict[str, List[float]]:
        history = self.catalog.users.get(id_key(action.user_id), [])
        return live_columns(self.catalog, history, items, parse_timestamp(action.timestamp).timestamp())

    def add(self, action: StoredAction) -> None:
        self.catalog.add_one(action)
        self._added += 1
        if self._every and self._refresh is not None and self._added % self._every == 0:
            self._refresh(self.catalog)
            self.catalog.__dict__.pop("_neighbour_index", None)
