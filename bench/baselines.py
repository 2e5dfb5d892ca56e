"""Reference scorers for bench.quality, over the same past as the service (control plane, numpy).

  popularity  the item's positives so far
  trending    its positives decayed with a 24-hour half-life, as the catalog computes trends
  item-kNN    item-to-item cosine between the items' likers (liked ratings), fitted on the data before
              the day; a user's score for an item is its similarity summed over what they liked so far
  EASE        Steck's linear autoencoder (lambda 250) fitted on the data before the day; scores: the
              user's liked items so far times its weights

Each is told every action as it happens (`add`) and refitted at each day's start (`refit`), so it sees
exactly the past the service saw at the moment of a ranking: the streaming variant asks in the middle
of a day (the user's same-day actions count), the day-level variant at the day's start.
"""
import math
from typing import Dict, List, Sequence

import numpy as np

NAMES = ("popularity", "trending", "item-kNN", "EASE")
EASE_LAMBDA = 250.0
KNN_SHRINK = 10.0


class PastScorers:
    def __init__(self, items: Sequence, half_life_hours: float = 24.0) -> None:
        self.items = list(items)
        self.index = {item: k for k, item in enumerate(self.items)}
        n = len(self.items)
        self.positives = np.zeros(n)
        self.trend = np.zeros(n)
        self.trend_at = None  # epoch seconds the trend scores are decayed to
        self.half_life_s = half_life_hours * 3600.0
        self.liked: Dict[object, List[int]] = {}  # user -> liked item indices, in order
        self.similarity = np.zeros((n, n), dtype=np.float32)
        self.ease = np.zeros((n, n), dtype=np.float32)

    def add(self, action: Dict) -> None:
        i = self.index[action["item_id"]]
        moment = float(action["timestamp"])
        if self.trend_at is None:
            self.trend_at = moment
        elif moment > self.trend_at:
            self.trend *= 0.5 ** ((moment - self.trend_at) / self.half_life_s)
            self.trend_at = moment
        if action["label"]:
            self.positives[i] += 1
            self.trend[i] += 0.5 ** (max(0.0, self.trend_at - moment) / self.half_life_s)
            self.liked.setdefault(action["user_id"], []).append(i)

    def refit(self) -> None:
        """Refit item-kNN and EASE on everything added so far (call at a day's start: pre-day data)."""
        n = len(self.items)
        users = list(self.liked)
        matrix = np.zeros((len(users), n), dtype=np.float32)
        for row, user in enumerate(users):
            matrix[row, self.liked[user]] = 1.0
        gram = matrix.T @ matrix
        norms = np.sqrt(np.diag(gram))
        similarity = gram / (np.outer(norms, norms) + KNN_SHRINK)
        np.fill_diagonal(similarity, 0.0)
        self.similarity = similarity.astype(np.float32)
        regularised = gram.astype(np.float64) + EASE_LAMBDA * np.eye(n)
        inverse = np.linalg.inv(regularised)
        weights = -inverse / np.diag(inverse)[None, :]
        np.fill_diagonal(weights, 0.0)
        self.ease = weights.astype(np.float32)

    def scores(self, user, candidates: Sequence, moment: float) -> Dict[str, np.ndarray]:
        idx = np.array([self.index[c] for c in candidates])
        liked = self.liked.get(user, [])
        decay = 0.5 ** ((moment - self.trend_at) / self.half_life_s) if self.trend_at is not None else 0.0
        # A tiny popularity term breaks the collaborative scores' ties (users with nothing liked yet).
        tie = 1e-6 * self.positives[idx]
        return {
            "popularity": self.positives[idx],
            "trending": self.trend[idx] * decay,
            "item-kNN": (self.similarity[liked][:, idx].sum(axis=0) if liked else np.zeros(len(idx))) + tie,
            "EASE": (self.ease[liked][:, idx].sum(axis=0) if liked else np.zeros(len(idx))) + tie,
        }


def rank_of(scores: np.ndarray, target: int) -> float:
    """0-based rank of scores[target] among all scores, ties counted half (a random tie-break)."""
    above = float((scores > scores[target]).sum())
    ties = float((scores == scores[target]).sum()) - 1.0
    return above + 0.5 * ties


def hit_and_gain(rank: float, k: int = 10) -> tuple:
    return (1.0 if rank < k else 0.0), (1.0 / math.log2(rank + 2) if rank < k else 0.0)


def auc(labels: Sequence[int], scores: Sequence[float]):
    """Rank AUC with ties averaged (None when a class is missing)."""
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    values = np.asarray(scores, dtype=np.float64)[order]
    ranks = np.empty(len(values))
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and values[end + 1] == values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1
        start = end + 1
    y = np.asarray(labels, dtype=bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return None
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))
