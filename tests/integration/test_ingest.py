"""Action publisher and store contracts: in memory and on AWS APIs (moto server, over the wire)."""
import pytest

from easyrec_online import wiring
from easyrec_online.core import aws
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.ingest.envelopes import decode_message_body
from easyrec_online.ingest.store import InMemoryActionStore
from tests.integration.conftest import contract_backend


def _actions(n, start=0):
    return [StoredAction.accept(ActionIn.model_validate({"user_id": i, "item_id": "i{}".format(i), "label": 1}))
            for i in range(start, start + n)]


@pytest.fixture(params=["memory", "s3"])
def store(request):
    return contract_backend(request, InMemoryActionStore, wiring.action_store, dynamodb=False)


class TestActionStoreContract:
    def test_batches_round_trip_partitioned_by_day(self, store):
        first, second = _actions(3), _actions(2, start=3)
        key = store.put_batch(first)
        store.put_batch(second)
        assert key.startswith("actions/dt=" + first[0].accepted_date + "/") and key.endswith(".jsonl")
        stored = [a.event_id for a in store.iter_actions()]
        assert sorted(stored) == sorted(a.event_id for a in first + second)
        positions = [stored.index(a.event_id) for a in first]
        assert positions == sorted(positions)  # a batch keeps its order
        assert store.put_batch([]) is None

    def test_a_retried_batch_is_not_stored_twice(self, store):
        batch = _actions(4)
        assert store.put_batch(batch) == store.put_batch(list(reversed(batch)))
        assert store.count() == 4

    def test_the_same_event_in_two_batches_counts_once(self, store):
        batch = _actions(2)
        store.put_batch(batch)
        store.put_batch(batch[:1])
        assert store.count() == 2


def test_sqs_publisher_sends_every_action(cloud):
    actions = _actions(23)
    wiring.action_publisher(cloud).publish(actions)
    sqs = aws.client("sqs", cloud)
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=cloud.actions_queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        bodies.extend(a for m in got for a in decode_message_body(m["Body"]))
    assert [a.event_id for a in bodies] == [a.event_id for a in actions]  # one envelope, in order


def test_sqs_publisher_names_the_actions_it_could_not_send(cloud):
    from easyrec_online.ingest.publishers import PublishError, SqsActionPublisher

    publisher = SqsActionPublisher(aws.client("sqs", cloud), cloud.actions_queue_url + "-missing")
    actions = _actions(3)
    with pytest.raises(PublishError) as caught:
        publisher.publish(actions)
    assert caught.value.event_ids == [a.event_id for a in actions]


def test_the_trainer_sets_an_unreadable_stored_line_apart_and_reads_the_rest(cloud):
    from easyrec_online.core import aws as aws_factory
    from easyrec_online.ingest.actions import ActionIn, StoredAction

    store = wiring.action_store(cloud)
    key = store.put_batch([StoredAction.accept(ActionIn.model_validate({"user_id": u, "item_id": 1, "label": 1}))
                           for u in (1, 2)])
    s3 = aws_factory.client("s3", cloud)
    body = s3.get_object(Bucket=cloud.data_bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=cloud.data_bucket, Key=key, Body=body.replace(b'"user_id":1', b'"user_id":1.5', 1))
    trainer = wiring.trainer_store(cloud)
    assert [a.user_id for a in trainer.read(key)] == [2]
    assert [a.user_id for a in trainer.read(key)] == [2]  # read again: set apart (and counted) once
    quarantined = s3.get_object(Bucket=cloud.data_bucket, Key="quarantine/" + key)["Body"].read().decode()
    assert '"line": 1' in quarantined and "user_id" in quarantined
    assert wiring.state_store(cloud).counts("quarantine")["lines"] == 1
