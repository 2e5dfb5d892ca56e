"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008).

Two rankings are merged as two captains pick teams: in each round a coin decides which arm picks
first, then each arm adds its highest-ranked item not already picked. Every item shown is credited
to the arm that picked it; a success on it is a vote for that arm. Each arm's items reach the top
positions equally often, so position bias cancels out and a user's clicks compare the two arms on
one list.

An item both arms rank within the list's length (the k shown) is marked SHARED, whichever arm picked it:
either arm would have shown it, so a success on it says nothing about which is better and credits
neither. Credited to its picker, it added a coin-flip vote for every user whose arms agree on some
items, as much noise as signal where two strategies mostly agree. Two identical arms share every item
and so never collect a vote.
"""
from __future__ import annotations

import hashlib
import random
from typing import List, Sequence, Tuple

SHARED = "both"  # the credit of an item both arms rank within the list's length


def team_draft(first: Sequence[str], second: Sequence[str], names: Tuple[str, str], k: int,
               seed: str) -> Tuple[List[str], List[str]]:
    """(items, the arm that picked each) of length at most k. `seed` (the recommendation id) fixes the
    coin flips, so a merged list can be reproduced from its record."""
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:8], "big"))
    rankings = (list(first), list(second))
    cursors = [0, 0]
    items: List[str] = []
    arms: List[str] = []
    picked = set()

    def pick(side: int) -> bool:
        ranking = rankings[side]
        while cursors[side] < len(ranking) and ranking[cursors[side]] in picked:
            cursors[side] += 1
        if cursors[side] >= len(ranking):
            return False
        item = ranking[cursors[side]]
        picked.add(item)
        items.append(item)
        arms.append(names[side])
        return True

    while len(items) < k:
        order = (0, 1) if rng.random() < 0.5 else (1, 0)
        progressed = False
        for side in order:
            if len(items) >= k:
                break
            progressed = pick(side) or progressed
        if not progressed:
            break
    return items, arms


def credited_arms(items: Sequence[str], picked: Sequence[str], first: Sequence[str], second: Sequence[str],
                  k: int) -> List[str]:
    """The arm each shown item credits: its picker, or SHARED when both rankings hold it in their top k."""
    shared = set(list(first)[:k]) & set(list(second)[:k])
    return [SHARED if item in shared else arm for item, arm in zip(items, picked)]
