"""The Kafka transport against a real Kafka-protocol broker (Tansu, started here on 127.0.0.1) and
moto for S3/SQS/DynamoDB: actions published by the API's publisher and by a producer writing to
the topic directly are delivered by the local MSK event source mapping (infra.local_runner's
KafkaPoller, a real consumer group) to the consumer and stored once; poison records go to the
dead-letter queue; a consumer killed (SIGKILL) after storing a batch but before committing its
offsets loses nothing and stores nothing twice."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest
from confluent_kafka import Producer

from easyrec_online import wiring
from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.ingest.consumer import DeadLetters, store_kafka_batch
from easyrec_online.ingest.kafka import KafkaActionPublisher, client_config, new_producer
from easyrec_online.ingest.publishers import PublishError
from infra.local_runner.event_sources import KafkaPoller
from infra.local_runner.kafka_broker import LocalKafkaBroker
from tests.conftest import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def broker():
    broker = LocalKafkaBroker().start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_cloud(cloud, broker):
    """Settings for a fresh moto cloud plus a fresh topic on the broker, with a dead-letter queue."""
    topic = "actions-" + uuid.uuid4().hex[:8]
    broker.create_topic(topic, partitions=2)
    dlq = aws.client("sqs", cloud).create_queue(QueueName=cloud.data_bucket.replace("test-data", "test-dlq"))["QueueUrl"]
    return Settings.from_env(dict(cloud.as_env(), STREAM_TRANSPORT="kafka", KAFKA_TOPIC=topic,
                                  KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers, ACTIONS_DLQ_URL=dlq))


def _actions(n, start=0):
    return [StoredAction.accept(ActionIn.model_validate({"user_id": i % 7, "item_id": i, "label": 1,
                                                         "event_id": "e{}".format(i)})) for i in range(start, start + n)]


def _consumer_invoke(settings):
    sinks = wiring.consumer_sinks(settings)
    dead_letters = DeadLetters(aws.client("sqs", settings), settings.actions_dlq_url)
    return lambda function, event: store_kafka_batch(event, sinks, dead_letters)


def _poller(settings, invoke):
    return KafkaPoller(client_config(settings), [settings.kafka_topic], "IngestKafkaConsumer", invoke,
                       batch_size=100, window_s=0.5, starting_position="TRIM_HORIZON",
                       source_arn="arn:aws:kafka:us-east-1:123456789012:cluster/local/1")


def test_published_and_directly_produced_actions_are_stored_once(kafka_cloud):
    settings = kafka_cloud
    publisher = wiring.action_publisher(settings)
    assert isinstance(publisher, KafkaActionPublisher)
    publisher.publish(_actions(250))
    publisher.publish(_actions(5, start=248))  # e248, e249 again: a client retry
    # An event producer writing to the topic itself: one bare action, and one record that is not JSON.
    direct = Producer(client_config(settings))
    bare = _actions(1, start=900)[0]
    direct.produce(settings.kafka_topic, value=bare.to_json().encode(), key=b"u")
    direct.produce(settings.kafka_topic, value=b"{not an action", key=b"x")
    assert direct.flush(10) == 0

    poller = _poller(settings, _consumer_invoke(settings))
    poller.start()
    try:
        store, state = wiring.action_store(settings), wiring.state_store(settings)
        wait_for(lambda: state.counts("ingest").get("messages", 0) >= 4, 60, "every record consumed")
    finally:
        poller.stop()
        poller.join(15)
    ids = [a.event_id for a in store.iter_actions()]
    assert sorted(ids) == sorted(["e{}".format(i) for i in range(253)] + ["e900"])
    counts = state.counts("ingest")
    assert counts["stored_actions"] == 254 and counts["poison_messages"] == 1
    dead = aws.client("sqs", settings).receive_message(QueueUrl=settings.actions_dlq_url, MaxNumberOfMessages=10)
    letters = [json.loads(m["Body"]) for m in dead.get("Messages", [])]
    assert len(letters) == 1 and letters[0]["topic"] == settings.kafka_topic and "offset" in letters[0]


def test_unreachable_broker_reports_every_action_as_not_accepted(kafka_cloud):
    settings = Settings.from_env(dict(kafka_cloud.as_env(), KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"))
    publisher = KafkaActionPublisher(new_producer(settings), settings.kafka_topic, timeout_s=2)
    with pytest.raises(PublishError) as caught:
        publisher.publish(_actions(3))
    assert sorted(caught.value.event_ids) == ["e0", "e1", "e2"]


def test_consumer_killed_before_committing_loses_nothing_and_each_action_is_read_once(kafka_cloud, tmp_path):
    settings = kafka_cloud
    wiring.action_publisher(settings).publish(_actions(120))
    # A consumer process that stores its first batch, then dies (SIGKILL) before the commit.
    script = tmp_path / "dying_consumer.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        from easyrec_online.core.config import Settings
        settings = Settings.from_env()  # before the test modules' import (tests/conftest clears AWS_ENDPOINT_URL)
        from tests.integration.test_kafka import _consumer_invoke, _poller
        store = _consumer_invoke(settings)
        def invoke(function, event):
            store(function, event)
            open(sys.argv[1], "w").write("stored")
            os.kill(os.getpid(), signal.SIGKILL)
        poller = _poller(settings, invoke)
        poller.run()
    """))
    marker = tmp_path / "stored"
    env = dict(os.environ, **settings.as_env(), PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "shared")]))
    process = subprocess.Popen([sys.executable, str(script), str(marker)], env=env, cwd=ROOT)
    assert process.wait(timeout=90) == -signal.SIGKILL
    assert marker.exists()
    store, state = wiring.action_store(settings), wiring.state_store(settings)
    first_batch = state.counts("ingest")["stored_actions"]
    assert 0 < first_batch <= 120

    poller = _poller(settings, _consumer_invoke(settings))  # the restarted consumer, same group
    poller.start()
    try:
        wait_for(lambda: state.counts("ingest").get("batches", 0) >= 2 and
                 state.counts("ingest").get("stored_actions", 0) >= 120, 90,
                 "the uncommitted batch delivered again and the rest consumed")
    finally:
        poller.stop()
        poller.join(15)
    ids = [a.event_id for key in store.keys() for a in store.read(key)]  # every stored line
    assert sorted(ids) == sorted("e{}".format(i) for i in range(120))  # each once, the redelivered ones too
    assert state.counts("ingest")["stored_actions"] == 120  # counted once (the event ledger)
