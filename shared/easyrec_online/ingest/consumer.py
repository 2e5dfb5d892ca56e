"""The ingest consumer's logic: a batch of stream records -> one durable S3 object, each event once.

  decode each record (envelopes.decode_message) -> de-duplicate -> claim each event id in the ledger
  for this batch's object (ingest/ledger.py) -> store the events it owns as one object -> users' live
  activity -> running experiments' successes -> add the object's events to `stored_actions`, once per object

Powertools BatchProcessor semantics (SQS, Kinesis): each record is decoded on its own; records that
do not decode (poison messages) are reported as batch item failures, so the stream retries only
them and eventually moves them to the dead-letter queue, and so are records holding an event that
another consumer claimed and has not stored yet (retried later, when it has). Kafka event sources
take no partial batch response: the Kafka consumer sends its poison records to the dead-letter
queue itself, and fails the whole invocation for events in flight elsewhere. If the store fails,
the invocation fails and the batch is retried: its object key and its claims are derived from its
event ids, so a retry claims and rewrites the same object.

`stored_actions` is exact: an object's events are added to it in one atomic write with a record of
the object's key (StateStore.add_counts_once), after the object is stored. A consumer that dies in
between leaves the object stored and uncounted; whichever batch next meets its events (a retry of
the same batch, or a redelivery regrouped into another) finds them owned by a stored object and
counts that object, once.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from typing_extensions import Protocol

from easyrec_online.ingest import kafka
from easyrec_online.ingest.actions import StoredAction, isoformat_utc, utc_now
from easyrec_online.ingest.counters import INGEST_COUNTERS, Counters, count_batch
from easyrec_online.ingest.envelopes import decode_message
from easyrec_online.ingest.ledger import Claims, EventLedger
from easyrec_online.ingest.store import ActionStore, dedupe_actions

logger = logging.getLogger(__name__)


class ActivitySink(Protocol):
    def record(self, actions: Sequence[StoredAction]) -> None: ...


@dataclass
class Sinks:
    """Where a consumed batch goes."""

    store: ActionStore
    ledger: Optional[EventLedger] = None  # None: no claims (each batch object de-duplicates itself only)
    counters: Optional[Counters] = None
    activity: Optional[ActivitySink] = None  # users' live activity (state/activity.py)
    experiments: Optional[ActivitySink] = None  # successes of running experiments (experiments/router.py)
    label_rules: Optional[Dict[str, Any]] = None  # for producers' samples without a label
    count_keep_s: float = 21 * 86400.0  # how long a counted object's key is remembered (LEDGER_TTL_DAYS)


@dataclass
class Stored:
    records: int
    stored: int  # events this batch stored that no batch had stored before
    poison: int
    in_flight: List[str]  # identifiers of records to retry: another consumer holds one of their events


def _epoch_ms(value: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(value) / 1000.0, tz=dt.timezone.utc)


def _sqs_decoder(rules: Optional[Dict[str, Any]]) -> Callable[[SQSRecord], List[StoredAction]]:
    def decode(record: SQSRecord) -> List[StoredAction]:
        arrival = record.attributes.sent_timestamp
        return decode_message(record.body, record.message_id,
                              _epoch_ms(arrival) if arrival else dt.datetime.now(dt.timezone.utc), rules)
    return decode


def _kinesis_decoder(rules: Optional[Dict[str, Any]]) -> Callable[[KinesisStreamRecord], List[StoredAction]]:
    def decode(record: KinesisStreamRecord) -> List[StoredAction]:
        arrival = dt.datetime.fromtimestamp(float(record.kinesis.approximate_arrival_timestamp), tz=dt.timezone.utc)
        return decode_message(base64.b64decode(record.kinesis.data).decode("utf-8"),
                              "kinesis:{}".format(record.kinesis.sequence_number), arrival, rules)
    return decode


def new_processor(transport: str = "sqs") -> BatchProcessor:
    event_type = EventType.KinesisDataStreams if transport == "kinesis" else EventType.SQS
    return BatchProcessor(event_type=event_type, raise_on_entire_batch_failure=False)


# A batch is stored in chunks of about this many events (one object each), so that an invocation short
# of time stops between chunks and hands the rest back to the stream.
CHUNK_EVENTS = 2000
TIME_MARGIN_S = 8.0  # stop starting chunks when less than this is left of the invocation


def store_decoded(decoded: Sequence[Tuple[str, List[StoredAction]]], sinks: Sinks,
                  deadline: Optional[float] = None) -> Tuple[int, List[str]]:
    """(events stored for the first time, identifiers of records to retry) for a batch of decoded
    records, (record identifier, its actions) each. `deadline` (time.monotonic()): records left when it
    nears are handed back for retry, rather than the invocation timing out with everything undone."""
    stored, retry, chunk, size = 0, [], [], 0
    for index, (identifier, actions) in enumerate(decoded):
        chunk.append((identifier, actions))
        size += len(actions)
        if size >= CHUNK_EVENTS or index == len(decoded) - 1:
            if deadline is not None and time.monotonic() > deadline - TIME_MARGIN_S:
                retry += [i for i, _ in chunk] + [i for i, _ in decoded[index + 1:]]
                logger.warning("out of time: %d records handed back for retry", len(retry))
                return stored, retry
            new, again = _store_chunk(chunk, sinks)
            stored, retry, chunk, size = stored + new, retry + again, [], 0
    return stored, retry


def _store_chunk(decoded: Sequence[Tuple[str, List[StoredAction]]], sinks: Sinks) -> Tuple[int, List[str]]:
    unique = list(dedupe_actions(a for _, actions in decoded for a in actions))
    if not unique:
        return 0, []
    key = sinks.store.key_for(unique)  # from every event of the chunk: a retry derives the same key
    claims = (sinks.ledger.claim([a.event_id for a in unique], key, sinks.store.exists)
              if sinks.ledger is not None else
              Claims(owned={a.event_id for a in unique}, new={a.event_id for a in unique}))
    owned = [a for a in unique if a.event_id in claims.owned]
    if claims.duplicates:
        logger.info("left out %d events stored before (redelivered or sent twice)", len(claims.duplicates))
    sinks.store.put_batch(owned, key=key)
    if sinks.activity is not None and owned:
        try:
            sinks.activity.record(owned)
        except Exception:  # noqa: BLE001 - the actions are stored; the live features catch up on retries
            logger.exception("could not record %d stored actions in the live activity", len(owned))
    if sinks.experiments is not None and owned:
        try:
            sinks.experiments.record(owned)
        except Exception:  # noqa: BLE001 - ingest never waits on experiments; only their figures miss these
            logger.exception("could not log %d stored actions as experiment successes", len(owned))
    retry = [identifier for identifier, actions in decoded if any(a.event_id in claims.in_flight for a in actions)]
    if sinks.counters is None:
        return len(claims.new), retry
    objects = ([(key, len(owned))] if owned else []) + [
        (owner, sinks.store.count_of(owner)) for owner in sorted(claims.stored_owners)]
    return sum(count for owner, count in objects if _count_once(sinks, owner, count)), retry


def _count_once(sinks: Sinks, key: str, count: int) -> bool:
    """Add a stored object's events to stored_actions unless they were (raises: the batch is retried)."""
    assert sinks.counters is not None
    return sinks.counters.add_counts_once(INGEST_COUNTERS, key, isoformat_utc(utc_now()), sinks.count_keep_s,
                                          stored_actions=count)


def _deadline(remaining_ms: Optional[Callable[[], int]]) -> Optional[float]:
    return time.monotonic() + remaining_ms() / 1000.0 if remaining_ms is not None else None


def _partial(event: Dict[str, Any], processor: BatchProcessor, sinks: Sinks, decode: Callable[[Any], Any],
             identify: Callable[[Dict[str, Any]], str], remaining_ms: Optional[Callable[[], int]]) -> Dict[str, Any]:
    deadline = _deadline(remaining_ms)
    records = event.get("Records", [])
    with processor(records=records, handler=decode) as batch:
        processed = batch.process()
    decoded = [(identify(record), result) for status, result, record in processed if status == "success"]
    stored, retry = store_decoded(decoded, sinks, deadline)
    response = processor.response()
    response["batchItemFailures"] = list(response["batchItemFailures"]) + [{"itemIdentifier": r} for r in retry]
    poison = len(records) - len(decoded)
    count_batch(sinks.counters, len(records), poison)
    return response


def store_sqs_batch(event: Dict[str, Any], processor: BatchProcessor, sinks: Sinks,
                    remaining_ms: Optional[Callable[[], int]] = None) -> Dict[str, Any]:
    """SQS event source: returns the partial-batch response ({"batchItemFailures": [...]}).
    `remaining_ms`: the invocation's time left (the Lambda context's get_remaining_time_in_millis)."""
    return _partial(event, processor, sinks, _sqs_decoder(sinks.label_rules), lambda r: r["messageId"],
                    remaining_ms)


def store_kinesis_batch(event: Dict[str, Any], processor: BatchProcessor, sinks: Sinks,
                        remaining_ms: Optional[Callable[[], int]] = None) -> Dict[str, Any]:
    """Kinesis event source: failed records are reported by sequence number (the mapping then
    retries from the first of them, and sends them on to the on-failure destination when exhausted)."""
    return _partial(event, processor, sinks, _kinesis_decoder(sinks.label_rules),
                    lambda r: r["kinesis"]["sequenceNumber"], remaining_ms)


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


class InFlightElsewhere(Exception):
    """Some events of this Kafka batch are being stored by another consumer: retry the batch."""


def store_kafka_batch(event: Dict[str, Any], sinks: Sinks, dead_letters: DeadLetters,
                      remaining_ms: Optional[Callable[[], int]] = None) -> Dict[str, Any]:
    """Kafka event source (MSK or self-managed): the whole batch succeeds or the invocation fails
    and the mapping delivers the batch again (its offsets are committed only after a success).
    Poison records go to the dead-letter queue, with where they came from, before the success."""
    decoded: List[Tuple[str, List[StoredAction]]] = []
    poison: List[str] = []
    records = list(kafka.event_records(event))
    for record in records:
        reference = kafka.record_reference(record)
        try:
            arrival = _epoch_ms(record["timestamp"]) if record.get("timestamp") else dt.datetime.now(dt.timezone.utc)
            decoded.append((reference, decode_message(kafka.record_value(record), "kafka:" + reference, arrival,
                                                      sinks.label_rules)))
        except Exception as exc:  # noqa: BLE001 - any undecodable record is a poison record
            logger.warning("poison Kafka record %s: %s", reference, exc)
            poison.append(kafka.dead_letter_body(record, str(exc)))
    stored, retry = store_decoded(decoded, sinks, _deadline(remaining_ms))
    if retry:
        raise InFlightElsewhere("{} records hold events another consumer is storing".format(len(retry)))
    if poison:
        dead_letters.send(poison)  # raises -> the batch is retried; storing it again stores nothing twice
    count_batch(sinks.counters, len(records), len(poison))
    return {"records": len(records), "stored_actions": stored, "poison_records": len(poison)}
