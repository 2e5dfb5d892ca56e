"""The action store: accepted actions, stored durably by the consumer (one object per batch).

An interface with an S3-backed and an in-memory implementation; the shared test class in
tests/integration runs both against the same expectations.

Every line of a stored object is one StoredAction, validated by the same schema as at the edge, so
an object reads whole. Should a line be unreadable anyway (written by hand, by an older release),
reading an object returns it apart with the reason (`StoredObject.unreadable`): the trainer
quarantines it and trains on the rest, so one bad line never blocks training.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from easyrec_online.ingest.actions import StoredAction, isoformat_utc, utc_now


class StoredObject(NamedTuple):
    actions: List[StoredAction]
    unreadable: List[Tuple[int, str, str]]  # (line number, why, the line)


class ActionStore:
    """Durable storage of accepted actions, partitioned by the day they were accepted."""

    prefix = "actions/"

    def put_batch(self, actions: Sequence[StoredAction], key: Optional[str] = None) -> Optional[str]:
        """Store a batch as one object; returns its key (None for an empty batch).

        The key is derived from the batch's event ids (`key_for`, or the key given: the consumer's,
        derived from every event of the batch it read), so a retried batch overwrites itself instead
        of being stored twice.
        """
        raise NotImplementedError

    def keys(self) -> List[str]:
        """Keys of every stored batch object, sorted."""
        raise NotImplementedError

    def read_object(self, key: str) -> StoredObject:
        """The actions of one batch object, and its unreadable lines (normally none)."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        """Whether a batch object is stored (the event ledger asks, for a conflicting claim's owner)."""
        raise NotImplementedError

    def count_of(self, key: str) -> int:
        """How many actions a stored batch object holds (the consumer counts an object it finds stored
        but not yet counted: its consumer died in between)."""
        found = self.read_object(key)
        return len(found.actions) + len(found.unreadable)

    def read(self, key: str) -> List[StoredAction]:
        """The (readable) actions of one batch object."""
        return self.read_object(key).actions

    def iter_actions(self, keys: Optional[Sequence[str]] = None) -> Iterator[StoredAction]:
        """The actions of `keys` (default: every object), in key order, each event id once."""
        chosen = self.keys() if keys is None else sorted(keys)
        return dedupe_actions(a for key in chosen for a in self.read(key))

    def count(self) -> int:
        return sum(1 for _ in self.iter_actions())

    def key_for(self, actions: Sequence[StoredAction]) -> str:
        return self.batch_key(self.prefix, actions)

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
    def decode(blob: bytes) -> StoredObject:
        actions: List[StoredAction] = []
        unreadable: List[Tuple[int, str, str]] = []
        for number, line in enumerate(blob.decode("utf-8", "replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                actions.append(StoredAction.from_json(line))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                unreadable.append((number, str(exc).replace("\n", " ")[:500], line[:10000]))
        return StoredObject(actions, unreadable)


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

    def put_batch(self, actions: Sequence[StoredAction], key: Optional[str] = None) -> Optional[str]:
        if not actions:
            return None
        key = key or self.key_for(actions)
        with self._lock:
            self.objects[key] = self.encode(actions)
        return key

    def keys(self) -> List[str]:
        with self._lock:
            return sorted(self.objects)

    def read_object(self, key: str) -> StoredObject:
        with self._lock:
            blob = self.objects[key]
        return self.decode(blob)

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self.objects


class S3ActionStore(ActionStore):
    def __init__(self, s3_client: Any, bucket: str, prefix: str = "actions/") -> None:
        self._s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix

    def put_batch(self, actions: Sequence[StoredAction], key: Optional[str] = None) -> Optional[str]:
        if not actions:
            return None
        key = key or self.key_for(actions)
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

    def read_object(self, key: str) -> StoredObject:
        return self.decode(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def count_of(self, key: str) -> int:
        count = self._s3.head_object(Bucket=self.bucket, Key=key).get("Metadata", {}).get("count")
        return int(count) if count is not None else super().count_of(key)

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


class _ReadingThrough(ActionStore):
    """A store over another: writes, listings and counts pass through; subclasses change reads."""

    _inner: ActionStore

    def put_batch(self, actions: Sequence[StoredAction], key: Optional[str] = None) -> Optional[str]:
        return self._inner.put_batch(actions, key)

    def keys(self) -> List[str]:
        return self._inner.keys()

    def exists(self, key: str) -> bool:
        return self._inner.exists(key)

    def count_of(self, key: str) -> int:
        return self._inner.count_of(key)


class CachingActionStore(_ReadingThrough):
    """Reads through to another store and keeps what it read: stored batch objects never change
    (a retry rewrites the same key with the same actions), so a long-running reader such as the
    continuous trainer reads each object once. Writes pass through."""

    def __init__(self, inner: ActionStore, max_objects: int = 10000) -> None:
        self._inner = inner
        self.prefix = inner.prefix
        self._cache: Dict[str, StoredObject] = {}
        self._max = max_objects

    def read_object(self, key: str) -> StoredObject:
        found = self._cache.get(key)
        if found is None:
            found = self._inner.read_object(key)
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key] = found
        return StoredObject(list(found.actions), list(found.unreadable))


class QuarantiningStore(_ReadingThrough):
    """Reads through to another store and sets unreadable lines apart (`quarantine(key, lines)`):
    readers see only readable actions, so one bad line never blocks training. Writes pass through."""

    def __init__(self, inner: ActionStore, quarantine: Any) -> None:
        self._inner = inner
        self.prefix = inner.prefix
        self._quarantine = quarantine  # .set_apart(key, unreadable lines), e.g. quarantine.S3Quarantine

    def read_object(self, key: str) -> StoredObject:
        found = self._inner.read_object(key)
        if found.unreadable:
            self._quarantine.set_apart(key, found.unreadable)
        return StoredObject(found.actions, [])
