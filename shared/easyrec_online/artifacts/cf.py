"""Item-to-item collaborative filtering: each item's most similar items, for the live features' CF scores.

  similarity(j -> i) = co(j, i) / (sqrt(acted(j)) * sqrt(liked(i)) + SHRINK)

where co(j, i) counts the users who acted on j and liked i, acted(j) the users who acted on j and
liked(i) those who liked i (users' recent actions as the catalog keeps them). The shrinkage term
keeps pairs seen by a couple of users from looking certain. An item liked by anyone is also similar
to itself, by the same formula (liked(i) / (sqrt(acted(i) * liked(i)) + SHRINK)), listed after its
NEIGHBOURS others: what a user liked or disliked lately then counts for that item itself too
(repeat consumption, and candidate lists that hold items the user already rated). Without it an
item the user had just bought or liked got no CF score of its own while the items similar to it
did: a user who liked B and disliked A, with one other user fond of both, got A's score raised
above B's. EASE's weights have a zero diagonal by construction, and stay so. "Acted on" counts every action, a
disliked rating too: on MovieLens (the bench's replay) what a user rated says more about their
taste than only what they liked (measured, streaming full ranking, NDCG@10: 0.092 with recency
weights against 0.090 for liked-only histories). Each item keeps its NEIGHBOURS most similar items,
so a version's catalog stays small (1,682 MovieLens items: about 84,000 pairs).

Computed by the trainer (model runtime: numpy and scipy), once per version, in well under a second
for MovieLens (a sparse product of the users-by-items matrices).

`ITEM_SIMILARITY=ease` (or `auto`, up to EASE_MAX_ITEMS items; the default is cosine) uses instead
the weights of Steck's EASE (a linear item-item autoencoder, closed form, one dense inverse of the
items' Gram matrix of likes): similarity(j -> i) = B[j, i], so that cf_pos, summed over what the
user liked, is EASE's own score. Cosine scales to any catalog.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

NEIGHBOURS = 50
SHRINK = 10.0
EASE_LAMBDA = 250.0  # Steck's L2 weight; MovieLens-scale data (the bench's EASE baseline uses the same)
EASE_MAX_ITEMS = 4000  # a dense items x items inverse: 4,000 items take about 10 s and 128 MB


def item_neighbours(users: Mapping[str, Sequence[Sequence[Any]]], k: int = NEIGHBOURS,
                    shrink: float = SHRINK, similarity: str = "cosine") -> Dict[str, List[List[Any]]]:
    """item -> [[similar item, similarity], ...], most similar first, from users' [item, type, positive]
    histories. `similarity`: cosine, ease, or auto (ease up to EASE_MAX_ITEMS items)."""
    import numpy as np
    from scipy import sparse

    item_ids: Dict[str, int] = {}
    acted_rows: List[int] = []
    acted_cols: List[int] = []
    liked_rows: List[int] = []
    liked_cols: List[int] = []
    for row, history in enumerate(users.values()):
        for entry in history:
            col = item_ids.setdefault(str(entry[0]), len(item_ids))
            acted_rows.append(row)
            acted_cols.append(col)
            if entry[2]:
                liked_rows.append(row)
                liked_cols.append(col)
    if not liked_rows:
        return {}
    shape = (len(users), len(item_ids))
    liked = sparse.csr_matrix((np.ones(len(liked_rows)), (liked_rows, liked_cols)), shape=shape)
    liked.data[:] = 1.0  # a user who liked an item twice counts once
    names = [None] * len(item_ids)
    for name, col in item_ids.items():
        names[col] = name
    if similarity == "ease" or (similarity == "auto" and len(item_ids) <= EASE_MAX_ITEMS):
        return _ease_neighbours(liked, names, k)
    acted = sparse.csr_matrix((np.ones(len(acted_rows)), (acted_rows, acted_cols)), shape=shape)
    acted.data[:] = 1.0  # a user who acted twice on an item counts once
    acted_n = np.sqrt(np.asarray(acted.sum(axis=0)).ravel())
    liked_n = np.sqrt(np.asarray(liked.sum(axis=0)).ravel())
    co = (acted.T @ liked).tocsr()  # items x items, co[j, i]: acted on j and liked i
    out: Dict[str, List[List[Any]]] = {}
    for j in range(co.shape[0]):
        start, end = co.indptr[j], co.indptr[j + 1]
        cols = co.indices[start:end]
        if not len(cols):
            continue
        sims = co.data[start:end] / (acted_n[j] * liked_n[cols] + shrink)
        itself = sims[cols == j]
        keep = cols != j
        cols, sims = cols[keep], sims[keep]
        if len(cols) > k:
            top = np.argpartition(-sims, k)[:k]
            cols, sims = cols[top], sims[top]
        order = np.argsort(-sims, kind="stable")
        pairs = [[names[int(c)], round(float(s), 6)] for c, s in zip(cols[order], sims[order])]
        if len(itself):  # after the k others, so that it never displaces one of them
            pairs.append([names[j], round(float(itself[0]), 6)])
        out[names[j]] = pairs
    return out


def _ease_neighbours(liked: Any, names: Sequence[Any], k: int) -> Dict[str, List[List[Any]]]:
    """Each item's k largest positive EASE weights B[j, i] (lambda EASE_LAMBDA) over the users' likes."""
    import numpy as np

    gram = (liked.T @ liked).toarray()
    gram[np.diag_indices_from(gram)] += EASE_LAMBDA
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    n = weights.shape[0]
    top = np.argpartition(-weights, min(k, n - 1), axis=1)[:, :k] if n > k else np.tile(np.arange(n), (n, 1))
    out: Dict[str, List[List[Any]]] = {}
    for j in range(n):
        cols = top[j]
        sims = weights[j, cols]
        keep = sims > 0
        cols, sims = cols[keep], sims[keep]
        if not len(cols):
            continue
        order = np.argsort(-sims, kind="stable")
        out[names[j]] = [[names[int(c)], round(float(s), 6)] for c, s in zip(cols[order], sims[order])]
    return out


def refresh_neighbours(catalog: Any, k: int = NEIGHBOURS, similarity: str = "cosine") -> None:
    """Recompute a catalog's item similarities from its users' histories."""
    catalog.neighbours = item_neighbours(catalog.users, k, similarity=similarity)
