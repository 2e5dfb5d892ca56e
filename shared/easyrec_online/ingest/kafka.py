"""Kafka / Amazon MSK transport: client configuration, the publisher, and the Lambda Kafka event.

On AWS the actions topic lives in an MSK cluster (or any Kafka the functions can reach) and an MSK
event source mapping invokes the ingest consumer with batches of records; locally the runner starts
a real Kafka-protocol broker (Tansu) and polls it the same way. confluent-kafka (librdkafka) is
imported only when this transport is chosen.
"""
from __future__ import annotations

import base64
import functools
import json
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import StoredAction
from easyrec_online.ingest.envelopes import encode_envelopes
from easyrec_online.ingest.publishers import ActionPublisher, PublishError

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def client_config(settings: Settings) -> Dict[str, Any]:
    """librdkafka settings shared by producers and consumers, from KAFKA_* settings."""
    if not settings.kafka_bootstrap_servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not configured (STREAM_TRANSPORT=kafka)")
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ValueError("KAFKA_SECURITY_PROTOCOL must be one of {}, not {!r}".format(
            ", ".join(SECURITY_PROTOCOLS), settings.kafka_security_protocol))
    config: Dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers, "security.protocol": protocol}
    if protocol.startswith("SASL_"):
        if not settings.kafka_sasl_mechanism:
            raise ValueError("KAFKA_SASL_MECHANISM is required with {}".format(protocol))
        config.update({"sasl.mechanism": settings.kafka_sasl_mechanism,
                       "sasl.username": settings.kafka_sasl_username,
                       "sasl.password": settings.kafka_sasl_password})
    if settings.kafka_ssl_ca_location:
        config["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return config


def new_producer(settings: Settings) -> Any:
    from confluent_kafka import Producer

    return Producer(dict(
        client_config(settings),
        # An accepted action must be on every in-sync replica, written once even when librdkafka
        # retries a send, before /online/data/add answers 200.
        **{"acks": "all", "enable.idempotence": True, "linger.ms": 2, "message.timeout.ms": 10000}))


class KafkaActionPublisher(ActionPublisher):
    """One envelope per Kafka message, keyed by the first action's user so one user's actions keep
    their order within a partition. `publish` returns once every message is acknowledged; the
    actions of messages that were not are reported by event id (the API answers 503 for them)."""

    def __init__(self, producer: Any, topic: str, timeout_s: float = 10.0) -> None:
        if not topic:
            raise ValueError("KAFKA_TOPIC is not configured")
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s

    def publish(self, actions: Sequence[StoredAction]) -> None:
        envelopes = encode_envelopes(actions)
        outcome: Dict[int, Optional[str]] = {}  # envelope index -> None (delivered) or the error

        def delivered(index: int, error: Any, message: Any) -> None:
            outcome[index] = None if error is None else str(error)

        deadline = time.monotonic() + self._timeout_s
        for index, (body, members) in enumerate(envelopes):
            while True:
                try:
                    self._producer.produce(self._topic, value=body.encode("utf-8"),
                                           key=str(members[0].user_id).encode("utf-8"),
                                           on_delivery=functools.partial(delivered, index))
                    break
                except BufferError:  # the local send queue is full: let deliveries drain
                    if time.monotonic() > deadline:
                        outcome[index] = "producer queue full"
                        break
                    self._producer.poll(0.05)
        self._producer.flush(max(0.0, deadline - time.monotonic()))
        failed = [a.event_id for index, (_, members) in enumerate(envelopes)
                  if outcome.get(index, "not acknowledged in time") is not None for a in members]
        if failed:
            reasons = sorted({r for r in outcome.values() if r} or {"not acknowledged in time"})
            raise PublishError(failed, "; ".join(reasons))


# --- the Lambda Kafka event (MSK and self-managed Kafka event sources) ---------------------------

def kafka_event(records: Sequence[Tuple[str, int, int, int, Optional[bytes], Optional[bytes]]],
                source_arn: str, bootstrap_servers: str) -> Dict[str, Any]:
    """The event Lambda hands a function for a batch of (topic, partition, offset, timestamp ms,
    key, value) records: grouped by "topic-partition", keys and values base64-encoded."""
    grouped: Dict[str, List[Dict[str, Any]]] = {}
    for topic, partition, offset, timestamp_ms, key, value in records:
        grouped.setdefault("{}-{}".format(topic, partition), []).append({
            "topic": topic, "partition": partition, "offset": offset, "timestamp": timestamp_ms,
            "timestampType": "CREATE_TIME", "headers": [],
            "key": base64.b64encode(key).decode() if key is not None else None,
            "value": base64.b64encode(value).decode() if value is not None else None,
        })
    return {"eventSource": "aws:kafka", "eventSourceArn": source_arn, "bootstrapServers": bootstrap_servers,
            "records": grouped}


def event_records(event: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """The records of a Kafka event in partition order, each with its "topic-partition" group."""
    for group in sorted((event.get("records") or {})):
        for record in event["records"][group]:
            yield record


def record_value(record: Dict[str, Any]) -> str:
    value = record.get("value")
    if value is None:
        raise ValueError("record has no value")
    return base64.b64decode(value).decode("utf-8")


def record_reference(record: Dict[str, Any]) -> str:
    return "{}-{}@{}".format(record.get("topic"), record.get("partition"), record.get("offset"))


def dead_letter_body(record: Dict[str, Any], error: str) -> str:
    """What goes to the dead-letter queue for a Kafka record that does not decode: where it came
    from, why it failed, and the value as it was (base64), so it can be inspected and replayed."""
    return json.dumps({"source": "kafka", "topic": record.get("topic"), "partition": record.get("partition"),
                       "offset": record.get("offset"), "error": error, "value": record.get("value")})
