"""Which experiment and arm a user gets: stable hashes, no state.

A user's place in a layer is a hash of the layer's name and the user id into LAYER_BUCKETS buckets;
an experiment owns a range of them (its traffic), and no two running experiments of a layer share a
bucket, so a user is in at most one experiment per layer. Within the experiment the arm is a hash of
the experiment's own salt and the user id into ARM_BUCKETS buckets, split by the arms' weights.
The two hashes are independent, so the arms of an experiment split any group of the layer's users
alike, and experiments in different layers split each other's arms alike too. Sticky: the same user
gets the same arm for the experiment's life, on every container, with nothing stored.

A request is served by one strategy, so when a user is in running experiments of several layers,
the oldest experiment serves them; each experiment counts only the users it served, and because its
arms are drawn independently of the other layers, they stay comparable.
"""
from __future__ import annotations

import hashlib
from typing import List, Optional, Sequence, Tuple

from easyrec_online.experiments.definition import ARM_BUCKETS, LAYER_BUCKETS, Arm, Experiment


def bucket(salt: str, user_key: str, buckets: int) -> int:
    digest = hashlib.sha256("{}\x00{}".format(salt, user_key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def layer_bucket(layer: str, user_key: str) -> int:
    return bucket("layer:" + layer, user_key, LAYER_BUCKETS)


def in_experiment(experiment: Experiment, user_key: str) -> bool:
    first, end = experiment.buckets
    return first <= layer_bucket(experiment.layer, user_key) < end


def arm_of(experiment: Experiment, user_key: str) -> Arm:
    """The user's arm (A/B). Interleaving experiments show both arms to every user: their first arm."""
    if experiment.kind != "ab":
        return experiment.arms[0]
    point = bucket(experiment.salt, user_key, ARM_BUCKETS)
    edge = 0.0
    for arm in experiment.arms:
        edge += (arm.weight or 0.0) * ARM_BUCKETS / 100.0
        if point < round(edge):
            return arm
    return experiment.arms[-1]


def assign(experiments: Sequence[Experiment], user_key: str) -> Optional[Tuple[Experiment, Arm]]:
    """The running experiment that serves this user, oldest first, and their arm; None: the default."""
    for experiment in sorted((e for e in experiments if e.running), key=lambda e: (e.created_at, e.experiment_id)):
        if in_experiment(experiment, user_key):
            return experiment, arm_of(experiment, user_key)
    return None


def free_range(taken: Sequence[Sequence[int]], size: int) -> Optional[List[int]]:
    """The first [first, end) of `size` layer buckets overlapping none of `taken`; None when none is."""
    start = 0
    for first, end in sorted(tuple(r) for r in taken):
        if first - start >= size:
            break
        start = max(start, end)
    return [start, start + size] if start + size <= LAYER_BUCKETS else None
