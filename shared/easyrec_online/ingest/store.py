"""The action store: accepted actions, stored durably by the consumer (one object per batch).

An interface with an S3-backed and an in-memory implementation; the shared test class in
tests/integration runs both against the same expectations.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

from easyrec_online.ingest.actions import StoredAction, isoformat_utc, utc_now


class ActionStore:
    """Durable storage of accepted actions, partitioned by the day they were accepted."""

    def put_batch(self, actions: Sequence[StoredAction]) -> Optional[str]:
        """Store a batch as one object; returns its key (None for an empty batch).

        The key is derived from the batch's event ids, so a retried batch overwrites itself
        instead of being stored twice.
        """
        raise NotImplementedError

    def keys(self) -> List[str]:
        """Keys of every stored batch object, sorted."""
        raise NotImplementedError

    def read(self, key: str) -> List[StoredAction]:
        """The actions of one batch object."""
        raise NotImplementedError

    def iter_actions(self, keys: Optional[Sequence[str]] = None) -> Iterator[StoredAction]:
        """The actions of `keys` (default: every object), in key order, each event id once."""
        chosen = self.keys() if keys is None else sorted(keys)
        return dedupe_actions(a for key in chosen for a in self.read(key))

    def count(self) -> int:
        return sum(1 for _ in self.iter_actions())

    @staticmethod
    def batch_key(prefix: str, actions: Sequence[StoredAction]) -> str:
        first = min(actions, key=lambda a: a.accepted_at)
        digest = hashlib.sha256("\n".join(sorted(a.event_id for a in actions)).encode()).hexdigest()[:16]
        # Keys sort by acceptance time inside each day partition, which training relies on.
        stamp = first.accepted_at.replace(":", "").replace("-", "").replace(".", "")
        return "{}dt={}/{}-{}.jsonl".format(prefix, first.accepted_date, stamp, digest)

    @staticmethod
    def encode(actions: Iterable[StoredAction]) -> bytes:
        return ("\n".join(a.to_json() for a in actions) + "\n").encode()

    @staticmethod
    def decode(blob: bytes) -> List[StoredAction]:
        return [StoredAction.from_json(line) for line in blob.decode().splitlines() if line.strip()]


def dedupe_actions(actions: Iterable[StoredAction]) -> Iterator[StoredAction]:
    seen = set()
    for action in actions:
        if action.event_id not in seen:
            seen.add(action.event_id)
            yield action


class InMemoryActionStore(ActionStore):
    def __init__(self, prefix: str = "actions/") -> None:
        self.prefix = prefix
        self.objects: Dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put_batch(self, actions: Sequence[StoredAction]) -> Optional[str]:
        if not actions:
            return None
        key = self.batch_key(self.prefix, actions)
        with self._lock:
            self.objects[key] = self.encode(actions)
        return key

    def keys(self) -> List[str]:
        with self._lock:
            return sorted(self.objects)

    def read(self, key: str) -> List[StoredAction]:
        with self._lock:
            blob = self.objects[key]
        return self.decode(blob)


class S3ActionStore(ActionStore):
    def __init__(self, s3_client: Any, bucket: str, prefix: str = "actions/") -> None:
        self._s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix

    def put_batch(self, actions: Sequence[StoredAction]) -> Optional[str]:
        if not actions:
            return None
        key = self.batch_key(self.prefix, actions)
        self._s3.put_object(
            Bucket=self.bucket, Key=key, Body=self.encode(actions), ContentType="application/x-ndjson",
            Metadata={"count": str(len(actions)), "stored-at": isoformat_utc(utc_now())},
        )
        return key

    def keys(self) -> List[str]:
        keys: List[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)

    def read(self, key: str) -> List[StoredAction]:
        return self.decode(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())


class CachingActionStore(ActionStore):
    """Reads through to another store and keeps what it read: stored batch objects never change
    (a retry rewrites the same key with the same actions), so a long-running reader such as the
    continuous trainer reads each object once. Writes pass through."""

    def __init__(self, inner: ActionStore, max_objects: int = 10000) -> None:
        self._inner = inner
        self._cache: Dict[str, List[StoredAction]] = {}
        self._max = max_objects

    def put_batch(self, actions: Sequence[StoredAction]) -> Optional[str]:
        return self._inner.put_batch(actions)

    def keys(self) -> List[str]:
        return self._inner.keys()

    def read(self, key: str) -> List[StoredAction]:
        found = self._cache.get(key)
        if found is None:
            found = self._inner.read(key)
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key] = found
        return list(found)
