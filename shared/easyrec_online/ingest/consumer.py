"""The ingest consumer's logic: a batch of stream records -> one durable S3 object.

Powertools BatchProcessor semantics (SQS, Kinesis): each record is decoded on its own; records that
do not decode (poison messages) are reported as batch item failures, so the stream retries only
them and eventually moves them to the dead-letter queue. Kafka event sources take no partial
batch response, so the Kafka consumer sends its poison records to the dead-letter queue itself.
The good records of a batch are stored together as one object; if that write fails the whole
invocation fails and the batch is retried (the object key is derived from the event ids, so a
retry overwrites instead of duplicating).
"""
from __future__ import annotations

import base64
import logging
from typing import Any, Dict, List, Optional

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from easyrec_online.ingest import kafka
from easyrec_online.ingest.actions import StoredAction
from easyrec_online.ingest.counters import Counters, count_batch
from easyrec_online.ingest.envelopes import decode_message_body
from easyrec_online.ingest.store import ActionStore, dedupe_actions

logger = logging.getLogger(__name__)


def _decode(record: SQSRecord) -> List[StoredAction]:
    return decode_message_body(record.body)


def _decode_kinesis(record: KinesisStreamRecord) -> List[StoredAction]:
    return decode_message_body(base64.b64decode(record.kinesis.data).decode("utf-8"))


def new_processor(transport: str = "sqs") -> BatchProcessor:
    event_type = EventType.KinesisDataStreams if transport == "kinesis" else EventType.SQS
    return BatchProcessor(event_type=event_type, raise_on_entire_batch_failure=False)


def store_kinesis_batch(event: Dict[str, Any], processor: BatchProcessor, store: ActionStore,
                        counters: Optional[Counters] = None) -> Dict[str, Any]:
    """Kinesis event source: failed records are reported by sequence number (the mapping then
    retries from the first of them, and sends them on to the on-failure destination when exhausted)."""
    return store_sqs_batch(event, processor, store, counters, decode=_decode_kinesis)


def store_sqs_batch(event: Dict[str, Any], processor: BatchProcessor, store: ActionStore,
                    counters: Optional[Counters] = None, decode: Any = _decode) -> Dict[str, Any]:
    """Returns the partial-batch response ({"batchItemFailures": [...]}) for the event source."""
    with processor(records=event.get("Records", []), handler=decode) as batch:
        processed = batch.process()
    # A producer may send an event twice: each event id stored once.
    unique = list(dedupe_actions(a for status, result, _ in processed if status == "success" for a in result))
    store.put_batch(unique)
    response = processor.response()
    count_batch(counters, len(event.get("Records", [])), len(unique), len(response["batchItemFailures"]))
    return response


class DeadLetters:
    """The actions dead-letter queue, written to directly by consumers whose event source has no
    redrive of its own (Kafka)."""

    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._sqs = sqs_client
        self._url = queue_url

    def send(self, bodies: List[str]) -> None:
        if not self._url:
            raise RuntimeError("ACTIONS_DLQ_URL is not configured: poison records cannot be set aside")
        for start in range(0, len(bodies), 10):
            chunk = bodies[start:start + 10]
            answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=[
                {"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)])
            if answer.get("Failed"):
                raise RuntimeError("dead-letter queue refused {} records: {}".format(
                    len(answer["Failed"]), answer["Failed"][0].get("Message", "")))


def store_kafka_batch(event: Dict[str, Any], store: ActionStore, dead_letters: DeadLetters,
                      counters: Optional[Counters] = None) -> Dict[str, Any]:
    """Kafka event source (MSK or self-managed): the whole batch succeeds or the invocation fails
    and the mapping delivers the batch again (its offsets are committed only after a success).
    Poison records go to the dead-letter queue, with where they came from, before the success."""
    decoded: List[StoredAction] = []
    poison: List[str] = []
    records = list(kafka.event_records(event))
    for record in records:
        try:
            decoded.extend(decode_message_body(kafka.record_value(record)))
        except Exception as exc:  # noqa: BLE001 - any undecodable record is a poison record
            logger.warning("poison Kafka record %s: %s", kafka.record_reference(record), exc)
            poison.append(kafka.dead_letter_body(record, str(exc)))
    unique = list(dedupe_actions(decoded))
    store.put_batch(unique)
    if poison:
        dead_letters.send(poison)  # raises -> the batch is retried; storing it again is idempotent
    count_batch(counters, len(records), len(unique), len(poison))
    return {"records": len(records), "stored_actions": len(unique), "poison_records": len(poison)}
