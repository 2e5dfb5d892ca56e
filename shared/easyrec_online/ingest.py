"""Ingest: accepted actions go onto a stream (publisher), the consumer stores them durably (store).

Each is an interface with an AWS-backed and an in-memory implementation; the shared test class in
tests/ runs both against the same expectations.
"""
from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .actions import StoredAction, isoformat_utc, utc_now

# Actions travel in envelopes of up to this many bytes of JSON: one SQS message carries a whole
# /online/data/add request (typically), not one action. That is one SendMessage per request instead
# of one per ten actions, and far fewer (billed, 64 KB-chunked) requests. SQS allows 256 KiB.
ENVELOPE_MAX_BYTES = 240 * 1024
ENVELOPE_VERSION = 1


def encode_envelopes(actions: Sequence[StoredAction]) -> List[Tuple[str, List[StoredAction]]]:
    """Pack actions, in order, into message bodies {"v": 1, "actions": [...]} under the size cap."""
    envelopes: List[Tuple[str, List[StoredAction]]] = []
    lines: List[str] = []
    members: List[StoredAction] = []
    size = 0
    for action in actions:
        line = action.to_json()
        if members and size + len(line) + 1 > ENVELOPE_MAX_BYTES:
            envelopes.append((_envelope(lines), members))
            lines, members, size = [], [], 0
        lines.append(line)
        members.append(action)
        size += len(line) + 1
    if members:
        envelopes.append((_envelope(lines), members))
    return envelopes


def _envelope(lines: List[str]) -> str:
    return '{"v":%d,"actions":[%s]}' % (ENVELOPE_VERSION, ",".join(lines))


def decode_message_body(body: str) -> List[StoredAction]:
    """A stream message -> the actions it carries: an envelope, or one action written directly by
    an event producer. Raises ValueError for a message that is neither (a poison message)."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and "actions" in doc:
            return [StoredAction.model_validate(item) for item in doc["actions"]]
        return [StoredAction.model_validate(doc)]
    except Exception as exc:  # pydantic raises its own ValidationError type
        raise ValueError("not an action message: {}".format(str(exc)[:300]))


class PublishError(Exception):
    """Some actions could not be put on the stream; `event_ids` names them (the rest were)."""

    def __init__(self, event_ids: List[str], reason: str):
        super().__init__(reason)
        self.event_ids = event_ids
        self.reason = reason


class ActionPublisher:
    def publish(self, actions: Sequence[StoredAction]) -> None:
        """Put every action on the stream or raise PublishError naming those that are not."""
        raise NotImplementedError


class InMemoryActionPublisher(ActionPublisher):
    def __init__(self) -> None:
        self.published: List[StoredAction] = []

    def publish(self, actions: Sequence[StoredAction]) -> None:
        self.published.extend(actions)


class SqsActionPublisher(ActionPublisher):
    def __init__(self, sqs_client: Any, queue_url: str):
        if not queue_url:
            raise ValueError("ACTIONS_QUEUE_URL is not configured")
        self._sqs = sqs_client
        self._queue_url = queue_url

    def publish(self, actions: Sequence[StoredAction]) -> None:
        failed: List[str] = []
        reason = ""
        for body, members in encode_envelopes(actions):
            try:  # botocore already retries throttling and transient errors (standard mode)
                self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=body)
            except Exception as exc:  # noqa: BLE001 - report which actions did not make it
                reason = str(exc)
                failed.extend(a.event_id for a in members)
        if failed:
            raise PublishError(failed, reason)


class KinesisActionPublisher(ActionPublisher):
    """Kinesis Data Streams transport: one envelope per record (at most 240 KB, under Kinesis' 1 MB),
    partitioned by the first action's user so one user's actions keep their order in a shard."""

    MAX_RECORDS_PER_CALL = 500  # PutRecords' limit

    def __init__(self, kinesis_client: Any, stream_name: str) -> None:
        if not stream_name:
            raise ValueError("ACTIONS_STREAM_NAME is not configured")
        self._kinesis = kinesis_client
        self._stream = stream_name

    def publish(self, actions: Sequence[StoredAction]) -> None:
        pending = [(body, members) for body, members in encode_envelopes(actions)]
        failed: List[str] = []
        reason = ""
        for attempt in range(2):  # throttled records are retried once; botocore retries the call itself
            retry: List[Tuple[str, List[StoredAction]]] = []
            for start in range(0, len(pending), self.MAX_RECORDS_PER_CALL):
                chunk = pending[start:start + self.MAX_RECORDS_PER_CALL]
                try:
                    answer = self._kinesis.put_records(StreamName=self._stream, Records=[
                        {"Data": body.encode("utf-8"), "PartitionKey": str(members[0].user_id)[:256]}
                        for body, members in chunk])
                except Exception as exc:  # noqa: BLE001 - report which actions did not make it
                    reason = str(exc)
                    retry.extend(chunk)
                    continue
                for entry, item in zip(answer.get("Records", []), chunk):
                    if entry.get("ErrorCode"):
                        reason = "{}: {}".format(entry["ErrorCode"], entry.get("ErrorMessage", ""))
                        retry.append(item)
            pending = retry
            if not pending:
                return
        failed = [a.event_id for _, members in pending for a in members]
        raise PublishError(failed, reason)


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
