"""A lineage's replay sample, kept in S3: the rows its warm updates replay beside their new ones.

A warm trainer replays a uniform sample of every row its lineage trained on (WarmTrainer), so that
an update learns its new actions without forgetting the rest. That sample lived in the trainer's
memory only: the first updates after a full training, and every update after a restart, trained on
their new rows alone. On a small catalog one user's 40 purchases of an item everyone else rated low
then took that item to a probability of 1.0 for every user in three steps.

So the sample is stored, one object per lineage (`replay_key`): a full training writes a uniform
sample of its training rows before it publishes the lineage's first version, and the continuous
trainer rewrites its own sample every REPLAY_SNAPSHOT_EVERY_S while it changes. A trainer warming on
any version of the lineage (first start, restart, rollback) seeds its sample from the object. After a
rollback it may replay rows the version it continues from never trained on: they are rows of the
same lineage's data, which that trainer's updates then learn anyway.

Format: gzip'd JSON lines; the first line {"columns": [...], "seen": n} (n: rows the sample was drawn
from, which keeps reservoir sampling uniform when it goes on), then one [values..., label,
conversion] list per row. A sample whose columns differ from the lineage's feature spec is ignored.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
import random
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from easyrec_online.artifacts.features.encode import Example, Profiles, encode
from easyrec_online.artifacts.features.spec import FeatureSpec

logger = logging.getLogger(__name__)

REPLAY_SNAPSHOT_EVERY_S = 60.0

Row = Dict[str, Any]  # an encoded feature row: feature name -> value
Labels = Tuple[float, float]  # label, conversion (spec.LABEL_COLUMNS)


class ReplaySample(NamedTuple):
    rows: List[Tuple[Row, Labels]]
    seen: int  # rows the sample was drawn from


def replay_key(models_prefix: str, lineage: str) -> str:
    """The lineage's sample, beside its versions (MODELS_PREFIX<lineage>/<version>/)."""
    return "{}{}/replay.jsonl.gz".format(models_prefix, lineage)


def sample_of(examples: Sequence[Example], spec: FeatureSpec, profiles: Profiles, capacity: int,
              seed: int) -> ReplaySample:
    """A uniform sample of at most `capacity` of a training's examples, encoded as it trained on them."""
    chosen = list(examples) if len(examples) <= capacity else random.Random(seed).sample(list(examples), capacity)
    return ReplaySample([(encode(e, spec, profiles), e.label_values()) for e in chosen], len(examples))


def write_replay(s3: Any, bucket: str, key: str, spec: FeatureSpec, sample: ReplaySample) -> None:
    names = list(spec.names)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=3) as out:
        out.write((json.dumps({"columns": names, "seen": sample.seen}) + "\n").encode())
        for row, labels in sample.rows:
            out.write((json.dumps([row[name] for name in names] + list(labels)) + "\n").encode())
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def read_replay(s3: Any, bucket: str, key: str, spec: FeatureSpec) -> Optional[ReplaySample]:
    """The lineage's stored sample, or None (none stored yet, unreadable, or of other columns)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:  # noqa: BLE001 - NoSuchKey or any other: the trainer starts with an empty sample
        if getattr(exc, "response", {}).get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            logger.warning("replay sample %s unreadable (%s): starting with an empty one", key, exc)
        return None
    try:
        lines = gzip.decompress(body).decode().splitlines()
        header = json.loads(lines[0])
        names = list(spec.names)
        if header.get("columns") != names:
            logger.warning("replay sample %s has other columns than its feature spec: ignored", key)
            return None
        rows = []
        for line in lines[1:]:
            values = json.loads(line)
            rows.append((dict(zip(names, values[:len(names)])), (float(values[-2]), float(values[-1]))))
        return ReplaySample(rows, max(int(header.get("seen", len(rows))), len(rows)))
    except (ValueError, IndexError, OSError, EOFError) as exc:
        logger.warning("replay sample %s is corrupt (%s): starting with an empty one", key, exc)
        return None
