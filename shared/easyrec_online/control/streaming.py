"""GET /online/streaming/status and POST /online/streaming/consume (the stream's operations view).

Status: the transport, its depth (messages waiting, in flight, delayed), the dead-letter queue's
depth, the ingest consumer's running totals (batches, messages, stored actions, poison messages),
and the lag: stored actions the current model version has not trained on yet.

Consume: drain up to `max_messages` by hand, through the same code the consumer function runs
(decode, de-duplicate, store once, partial failures left on the queue for retry and the DLQ).
For debugging and tests; the event source mapping does this continuously.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError
from easyrec_online.ingest.counters import INGEST_COUNTERS
from easyrec_online.ingest.quarantine import QUARANTINE_COUNTERS
from easyrec_online.state.registry import StateStore

logger = logging.getLogger(__name__)

_DEPTH = {"ApproximateNumberOfMessages": "waiting", "ApproximateNumberOfMessagesNotVisible": "in_flight",
          "ApproximateNumberOfMessagesDelayed": "delayed"}


class ConsumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_messages: StrictInt = Field(10, ge=1, le=100)


class StreamingService:
    def __init__(self, settings: Settings, sqs: Any, state: StateStore, sinks: Any) -> None:
        self._settings = settings
        self._sqs = sqs
        self._state = state
        self._sinks = sinks  # ingest.consumer.Sinks: where a drained batch goes, as the consumer's

    def _depth(self, queue_url: str) -> Dict[str, int]:
        attrs = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(_DEPTH))["Attributes"]
        return {name: int(attrs.get(key, 0)) for key, name in _DEPTH.items()}

    def _stream(self) -> Dict[str, Any]:
        """Where actions travel. Queue depth for SQS; Kinesis and Kafka report positions per
        shard/partition, not a depth, so their consumer's progress is the totals and the lag below."""
        s = self._settings
        if s.stream_transport == "kinesis":
            return {"stream": s.actions_stream_name}
        if s.stream_transport == "kafka":
            return {"topic": s.kafka_topic, "bootstrap_servers": s.kafka_bootstrap_servers}
        return dict(self._depth(s.actions_queue_url), url=s.actions_queue_url)

    def status(self) -> Dict[str, Any]:
        s = self._settings
        try:
            queue = self._stream()
            dead = dict(self._depth(s.actions_dlq_url), url=s.actions_dlq_url) if s.actions_dlq_url else None
        except Exception:  # noqa: BLE001 - the reason goes to the log, not to the client
            logger.exception("could not read the stream's depth")
            raise ApiError(503, "stream_unavailable", "could not read the queue's depth; try again",
                           headers={"Retry-After": "5"})
        consumer = self._state.counts(INGEST_COUNTERS)
        current = self._state.get_current()
        return {
            "transport": s.stream_transport,
            "status": "ok" if not dead or dead["waiting"] == 0 else "dead_letters",
            ("queue" if s.stream_transport == "sqs" else "stream"): queue,
            "dead_letter_queue": dead,
            "consumer": {"batches": int(consumer.get("batches", 0)), "messages": int(consumer.get("messages", 0)),
                         "stored_actions": int(consumer.get("stored_actions", 0)),
                         "poison_messages": int(consumer.get("poison_messages", 0)),
                         "last_batch_at": consumer.get("last_at")},
            # Stored lines the trainer could not read, set apart under quarantine/ (normally none).
            "quarantined": int(self._state.counts(QUARANTINE_COUNTERS).get("lines", 0)),
            "current_version": current.version if current else None,
            "untrained_actions": untrained_actions(self._state),
        }

    def consume(self, request: ConsumeRequest) -> Dict[str, Any]:
        if self._settings.stream_transport != "sqs":
            raise ApiError(409, "not_a_queue", "POST /online/streaming/consume drains the SQS queue; with "
                           "STREAM_TRANSPORT={} the event source mapping consumes the stream continuously "
                           "(GET /online/streaming/status shows its progress)".format(self._settings.stream_transport))
        url = self._settings.actions_queue_url
        messages: List[Dict[str, Any]] = []
        while len(messages) < request.max_messages:
            batch = self._sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, request.max_messages - len(messages)),
                                              WaitTimeSeconds=0, AttributeNames=["All"]).get("Messages", [])
            if not batch:
                break
            messages += batch
        if not messages:
            return {"status": "empty", "received": 0, "stored_actions": 0, "failed_messages": []}
        event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                              "attributes": m.get("Attributes", {}), "messageAttributes": {},
                              "eventSource": "aws:sqs", "md5OfBody": m.get("MD5OfBody", "")} for m in messages]}
        # The consumer's own code (imported here: only this debugging call needs Powertools' batch module).
        from easyrec_online.ingest.consumer import new_processor, store_sqs_batch

        before = int(self._state.counts(INGEST_COUNTERS).get("stored_actions", 0))
        response = store_sqs_batch(event, new_processor(), self._sinks)
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                self._sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        after = int(self._state.counts(INGEST_COUNTERS).get("stored_actions", 0))
        return {"status": "consumed", "received": len(messages), "stored_actions": after - before,
                "failed_messages": sorted(failed)}


def untrained_actions(state: StateStore) -> int:
    """Stored actions the current version has not trained on yet (its holdout included): the lag."""
    current = state.get_current()
    stored = int(state.counts(INGEST_COUNTERS).get("stored_actions", 0))
    return max(0, stored - (current.num_actions if current else 0))
