"""Publishers: accepted actions go onto the stream (SQS, Kinesis; Kafka in ingest/kafka.py).

An interface with an AWS-backed and an in-memory implementation per transport.
"""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple

from easyrec_online.ingest.actions import StoredAction
from easyrec_online.ingest.envelopes import encode_envelopes


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
