"""What a model version knows about items and users: the catalog behind candidates, cold start and the
live features.

Written by the training task next to each version (models/<lineage>/<version>/catalog.json) and
carried forward by incremental updates, so it always covers every action the lineage trained on:

  items       per item: actions, positives, and a trend score (positives decayed with a half-life of
              TRENDING_HALF_LIFE_HOURS, measured on the actions' own timestamps). A user's repeated
              actions on one item with one label within an hour (REPEAT_WINDOW_S) count at most
              `repeats_max` times (REPEAT_ACTIONS_MAX, as in training rows): one user's forty
              purchases in a burst made the item look more popular and trending than one thirty
              users liked, and every user's ranking followed that one user's burst
  users       per user: the most recent items acted on, with the action type and whether it was a
              positive (newest last): "already acted on" filters, sequence models' history, and the
              history behind training rows' live features
  neighbours  per item: its most similar items (item-to-item collaborative filtering, computed by
              the trainer with artifacts/cf.py): the live features' CF scores

Serving uses it for
  - candidates when /recommend names none: popular items (most positives) and trending items;
  - "already acted on" filters;
  - the live features of every pair (artifacts/features/live.py): the item's popularity, positive
    rate and trend, and its similarity to what the user did lately;
  - the cold-start rule of lineages that did not learn new users and items: the item's popularity
    prior, (positives + m * base_rate) / (actions + m) with m = PRIOR_STRENGTH.

Adding an action costs O(1) (the trend is kept relative to an anchor time and decayed when read),
so training can replay a catalog action by action to compute each row's features as they were at
that moment. Pure Python (both runtimes); only JSON in and out.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from easyrec_online.ingest.actions import StoredAction, id_key, parse_timestamp

PRIOR_STRENGTH = 10.0
RECENT_ITEMS_PER_USER = 100
# The trend anchor moves forward once scores would grow past 2**REBASE_HALF_LIVES.
REBASE_HALF_LIVES = 60.0
# A burst: one user's actions on one item with one label within one such window (epoch-aligned).
REPEAT_WINDOW_S = 3600



# The largest power of two trend_factor answers (2^64: a count times it is still a finite float).
TREND_EXPONENT_MAX = 64.0


class Catalog:
    def __init__(self, half_life_hours: float = 24.0, repeats_max: int = 0) -> None:
        self.half_life_s = max(1.0, half_life_hours * 3600.0)
        self.repeats_max = repeats_max  # per burst, in the item stats (0: no limit)
        # (user, item, positive, window) -> actions: the bursts of the newest two windows
        self.bursts: Dict[Tuple[str, str, int, int], int] = {}
        # id -> [actions, positives, trend]: trend as of `reference_time` (decay with trend_at)
        self.items: Dict[str, List[float]] = {}
        self.users: Dict[str, List[List[Any]]] = {}  # id -> [[item, action_type, positive], ...] newest last
        self.neighbours: Dict[str, List[List[Any]]] = {}  # id -> [[item, similarity], ...] most similar first
        self.reference_time = 0.0  # epoch seconds the stored trend scores refer to
        self.newest = 0.0  # epoch seconds of the newest action added
        self.actions = 0
        self.positives = 0

    # --- building (training task) ----------------------------------------------------------------
    def add(self, actions: Iterable[StoredAction]) -> "Catalog":
        for action in sorted(actions, key=lambda a: (parse_timestamp(a.timestamp), a.event_id)):
            self.add_one(action)
        return self

    def add_one(self, action: StoredAction, moment: Optional[float] = None) -> None:
        """One action (callers add in time order: the trend of an older action is simply smaller)."""
        at = parse_timestamp(action.timestamp).timestamp() if moment is None else moment
        if not self.reference_time:
            self.reference_time = at
        if (at - self.reference_time) / self.half_life_s > REBASE_HALF_LIVES:
            self._rebase(at)
        item, user = id_key(action.item_id), id_key(action.user_id)
        stats = self.items.get(item)
        if stats is None:
            stats = self.items[item] = [0.0, 0.0, 0.0]
        positive = action.label >= 0.5
        self.actions += 1
        if positive:
            self.positives += 1
        if not self._repeat_beyond_limit(user, item, positive, at):
            stats[0] += 1
            if positive:
                stats[1] += 1
                stats[2] += 2.0 ** ((at - self.reference_time) / self.half_life_s)
        self.newest = max(self.newest, at)
        recent = self.users.get(user)
        if recent is None:
            recent = self.users[user] = []
        recent.append([item, action.action_type or "", 1 if positive else 0])
        if len(recent) > RECENT_ITEMS_PER_USER:
            del recent[: len(recent) - RECENT_ITEMS_PER_USER]

    def _repeat_beyond_limit(self, user: str, item: str, positive: bool, at: float) -> bool:
        """Counts the action in its burst: True once the burst has had repeats_max actions already."""
        if self.repeats_max <= 0:
            return False
        window = int(at // REPEAT_WINDOW_S)
        newest_window = int(self.newest // REPEAT_WINDOW_S)
        if window > newest_window and self.bursts:  # a new window: older bursts are over
            self.bursts = {k: n for k, n in self.bursts.items() if k[3] >= window - 1}
        key = (user, item, 1 if positive else 0, window)
        count = self.bursts.get(key, 0) + 1
        self.bursts[key] = count
        return count > self.repeats_max

    def _rebase(self, at: float) -> None:
        factor = 2.0 ** (-(at - self.reference_time) / self.half_life_s)
        for stats in self.items.values():
            stats[2] *= factor
        self.reference_time = at

    def trend_factor(self, moment: float) -> float:
        """Multiplies a stored trend score into the trend at `moment` (epoch seconds). A moment long before
        the catalog's reference time (a request's context timestamp of 0, say) would raise the decay to a
        power no float holds (OverflowError: a 500); its exponent is capped at TREND_EXPONENT_MAX instead."""
        if not self.reference_time:
            return 0.0
        return 2.0 ** min(TREND_EXPONENT_MAX, -(moment - self.reference_time) / self.half_life_s)

    def trend_at(self, item_id: Any, moment: float) -> float:
        stats = self.items.get(id_key(item_id))
        return stats[2] * self.trend_factor(moment) if stats else 0.0

    def to_json(self) -> str:
        return json.dumps({"half_life_s": self.half_life_s, "reference_time": self.reference_time,
                           "newest": self.newest, "actions": self.actions, "positives": self.positives,
                           "items": self.items, "users": self.users, "neighbours": self.neighbours,
                           "repeats_max": self.repeats_max,
                           "bursts": sorted([list(key) + [n] for key, n in self.bursts.items()])},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: Optional[str]) -> "Catalog":
        catalog = cls()
        if text:
            data = json.loads(text)
            catalog.half_life_s = float(data.get("half_life_s", catalog.half_life_s))
            catalog.reference_time = float(data.get("reference_time", 0.0))
            catalog.newest = float(data.get("newest", catalog.reference_time))
            catalog.actions = int(data.get("actions", 0))
            catalog.positives = int(data.get("positives", 0))
            catalog.items = {k: [float(x) for x in v] for k, v in data.get("items", {}).items()}
            catalog.users = {k: [list(x) for x in v] for k, v in data.get("users", {}).items()}
            catalog.neighbours = {k: [list(x) for x in v] for k, v in data.get("neighbours", {}).items()}
            catalog.repeats_max = int(data.get("repeats_max", 0))
            catalog.bursts = {(str(u), str(i), int(p), int(w)): int(n) for u, i, p, w, n in data.get("bursts", [])}
        return catalog

    def copy(self) -> "Catalog":
        """An independent catalog: what `add_one` changes (each item's stats, each user's list) is copied;
        the entries of a user's list and the neighbours are never changed in place (refresh_neighbours
        replaces the whole mapping), so they are shared. A warm update copies its parent's catalog
        twice; a JSON round trip of a MovieLens-sized one took 0.6 s, this takes a few milliseconds."""
        catalog = Catalog(repeats_max=self.repeats_max)
        catalog.half_life_s, catalog.reference_time, catalog.newest = self.half_life_s, self.reference_time, self.newest
        catalog.bursts = dict(self.bursts)
        catalog.actions, catalog.positives = self.actions, self.positives
        catalog.items = {k: list(v) for k, v in self.items.items()}
        catalog.users = {k: list(v) for k, v in self.users.items()}
        catalog.neighbours = self.neighbours
        return catalog

    # --- serving -----------------------------------------------------------------------------------
    @property
    def base_rate(self) -> float:
        return (self.positives + 1.0) / (self.actions + 2.0)

    def knows_user(self, user_id: Any) -> bool:
        return id_key(user_id) in self.users

    def knows_item(self, item_id: Any) -> bool:
        return id_key(item_id) in self.items

    def prior(self, item_id: Any) -> float:
        """The popularity prior of an item (the base rate for an item never seen)."""
        stats = self.items.get(id_key(item_id))
        if stats is None:
            return self.base_rate
        return (stats[1] + PRIOR_STRENGTH * self.base_rate) / (stats[0] + PRIOR_STRENGTH)

    def popular(self, n: int) -> List[str]:
        return sorted(self.items, key=lambda i: (-self.items[i][1], -self.items[i][0], i))[:n]

    def trending(self, n: int) -> List[str]:
        return [i for i in sorted(self.items, key=lambda i: (-self.items[i][2], i))[:n] if self.items[i][2] > 0]

    def all_items(self) -> List[str]:
        return sorted(self.items)

    def acted_on(self, user_id: Any, action_types: Optional[Sequence[str]] = None) -> Set[str]:
        """Items the user acted on (with one of `action_types`; None: any), as the lineage saw them."""
        wanted = set(action_types) if action_types is not None else None
        return {entry[0] for entry in self.users.get(id_key(user_id), []) if wanted is None or entry[1] in wanted}

    def history(self, user_id: Any) -> List[str]:
        """The items the user acted on positively, oldest first (a sequence model's input)."""
        return [entry[0] for entry in self.users.get(id_key(user_id), []) if len(entry) < 3 or entry[2]]

    def histories(self) -> Dict[str, List[str]]:
        return {user: self.history(user) for user in self.users}


def log1p(value: float) -> float:
    return math.log1p(max(0.0, value))
