"""Live features: what popularity and collaborative filtering know, as model inputs that follow each action.

A lineage with live features (LIVE_FEATURES, on by default) reads, for every (user, item) pair:

  item_pos, item_actions   log(1 + positives), log(1 + actions) of the item
  item_rate                its positive rate, (positives + 1) / (actions + 2)
  item_trend               log(1 + trend): positives decayed with TRENDING_HALF_LIFE_HOURS
  user_actions, user_rate  the same for the user's last LIVE_HISTORY actions
  cf_pos, cf_neg           item-to-item CF: how similar the item is to what the user liked (cf_pos) and
                           did not like (cf_neg) lately, sum over their last LIVE_HISTORY actions of
                           RECENCY**age * similarity(action's item -> this item)

and, for the served score's blend only (artifacts/blend.py, not a model input):

  self                     the user's own recent actions on this very item: sum over their last
                           LIVE_HISTORY actions on it of RECENCY**age, positive ones counted +1 and
                           the others -1 (newer actions outweigh older, contradicting ones). Needs no
                           similarity, so it counts for items and users no version has seen yet.

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
# Computed beside them for the served score's blend (artifacts/blend.py), never a model input.
BLEND_KEYS: Tuple[str, ...] = ("self",)
# The keys that describe the user's own recent history (the rest describe the item).
USER_HISTORY_KEYS: Tuple[str, ...] = ("user_actions", "user_rate", "cf_pos", "cf_neg")
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


def live_columns(catalog: Catalog, history: Sequence[Sequence[Any]], items: Sequence[str],
                 moment: float) -> Dict[str, Sequence[float]]:
    """The live features of one user (their `history`: [item, action_type, positive] entries, oldest
    first) with each of `items` (id keys), at `moment` (epoch seconds): a list per key in LIVE_KEYS
    (float64 arrays for a ranking of more than 64 items)."""
    recent = list(history)[-LIVE_HISTORY:]
    n = len(recent)
    liked = sum(1 for entry in recent if entry[2])
    user_actions, user_rate = math.log1p(n), (liked + 1.0) / (n + 2.0)
    own: Dict[str, float] = {}  # the `self` key: the user's own recent actions on each item
    for k, entry in enumerate(recent):
        own[entry[0]] = own.get(entry[0], 0.0) + (RECENCY ** (n - 1 - k)) * (1.0 if entry[2] else -1.0)
    self_term = [own.get(item, 0.0) for item in items] if own else [0.0] * len(items)
    if len(items) <= 64:  # a training row (a handful of items): look each similarity up
        index = neighbour_index(catalog)
        weights = [(RECENCY ** (n - 1 - k), entry[0], bool(entry[2])) for k, entry in enumerate(recent)]
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
        pos_by, neg_by = _spread_of(catalog, recent)
        cf_pos = [pos_by.get(item, 0.0) for item in items]
        cf_neg = [neg_by.get(item, 0.0) for item in items]
    factor = catalog.trend_factor(moment)
    if len(items) <= 64:  # a catalog being replayed changes at every action: read its entries
        rows = [_stats(catalog.items.get(item)) for item in items]
        return {
            "item_pos": [r[0] for r in rows], "item_actions": [r[1] for r in rows],
            "item_rate": [r[2] for r in rows], "item_trend": [math.log1p(r[3] * factor) for r in rows],
            "user_actions": [user_actions] * len(items), "user_rate": [user_rate] * len(items),
            "cf_pos": cf_pos, "cf_neg": cf_neg, "self": self_term,
        }
    # A ranking: float64 arrays (what the model is fed), the item side gathered from a per-catalog table.
    import numpy as np  # where scoring runs

    table, row_of = _item_table(catalog)
    absent = len(table) - 1  # the last row: _ZERO_STATS
    stats = table[[row_of.get(item, absent) for item in items]]
    return {
        "item_pos": stats[:, 0], "item_actions": stats[:, 1], "item_rate": stats[:, 2],
        "item_trend": np.log1p(stats[:, 3] * factor),
        "user_actions": np.full(len(items), user_actions), "user_rate": np.full(len(items), user_rate),
        "cf_pos": np.asarray(cf_pos, dtype=np.float64), "cf_neg": np.asarray(cf_neg, dtype=np.float64),
        "self": np.asarray(self_term, dtype=np.float64),
    }


def _item_table(catalog: Catalog) -> Tuple[Any, Dict[str, int]]:
    """(array of _stats rows, one per item and a last one of _ZERO_STATS; item -> its row), once per
    catalog object and size."""
    cached = catalog.__dict__.get("_item_table")
    if cached is None or cached[0] != catalog.actions:
        import numpy as np

        items = list(catalog.items)
        table = np.array([_stats(catalog.items[item]) for item in items] + [_ZERO_STATS], dtype=np.float64)
        cached = (catalog.actions, table, {item: row for row, item in enumerate(items)})
        catalog.__dict__["_item_table"] = cached
    return cached[1], cached[2]


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


# Histories remembered per catalog. A spread holds up to LIVE_HISTORY x the neighbours kept per item
# scores (about 250 KB at 50 x 50): 256 of them stay within about 64 MB of an inference container.
_SPREAD_CACHE_SIZE = 256


def _spread_of(catalog: Catalog, recent: Sequence[Sequence[Any]]) -> Tuple[Dict[str, float], Dict[str, float]]:
    """_spread of a history's last LIVE_HISTORY entries over the catalog's similarities, remembered per
    history: a user's rankings between two of their actions (a refresh, the next page, the candidate
    source and the live features of one /recommend) spread it once. Kept with the neighbour index it
    was computed from, so a catalog whose similarities are recomputed starts afresh. Callers must not
    change the answer."""
    index = neighbour_index(catalog)
    cached = catalog.__dict__.get("_spread_cache")
    if cached is None or cached[0] is not index:
        cached = (index, {})
        catalog.__dict__["_spread_cache"] = cached
    memo: Dict[Tuple[Tuple[str, bool], ...], Tuple[Dict[str, float], Dict[str, float]]] = cached[1]
    key = tuple((entry[0], bool(entry[2])) for entry in recent)
    found = memo.get(key)
    if found is None:
        n = len(recent)
        found = _spread([(RECENCY ** (n - 1 - k), item, positive) for k, (item, positive) in enumerate(key)], index)
        if len(memo) >= _SPREAD_CACHE_SIZE:
            memo.clear()
        memo[key] = found
    return found


def similar_items(catalog: Catalog, history: Sequence[Sequence[Any]], n: int) -> List[str]:
    """The `n` items with the largest cf_pos for this history (what the user liked lately, by the
    catalog's similarities), best first, the history's own items left out: a co-occurrence candidate
    source for catalog recommendations that follows the user's latest actions."""
    recent = list(history)[-LIVE_HISTORY:]
    scores = dict(_spread_of(catalog, recent)[0])  # cf_pos of every item the history reaches
    for entry in recent:
        scores.pop(entry[0], None)
    return heapq.nlargest(n, scores, key=scores.__getitem__)


def live_row(columns: Mapping[str, Sequence[float]], index: int) -> Dict[str, float]:
    """One pair's values out of live_columns' answer."""
    return {key: float(columns[key][index]) for key in LIVE_KEYS + BLEND_KEYS if key in columns}


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

    def before(self, action: StoredAction, items: Sequence[str]) -> Dict[str, Sequence[float]]:
        history = self.catalog.users.get(id_key(action.user_id), [])
        return live_columns(self.catalog, history, items, parse_timestamp(action.timestamp).timestamp())

    def add(self, action: StoredAction) -> None:
        self.catalog.add_one(action)
        self._added += 1
        if self._every and self._refresh is not None and self._added % self._every == 0:
            self._refresh(self.catalog)
            self.catalog.__dict__.pop("_neighbour_index", None)
