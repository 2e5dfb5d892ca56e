"""Streaming status and manual consume over the wire (moto SQS, S3, DynamoDB)."""
from easyrec_online import wiring
from easyrec_online.control.streaming import ConsumeRequest, StreamingService
from easyrec_online.core import aws
from easyrec_online.ingest.actions import ActionIn, StoredAction


def _actions(n, start=0):
    return [StoredAction.accept(ActionIn.model_validate({"user_id": i, "item_id": 1, "label": 1,
                                                         "event_id": "e{}".format(i)})) for i in range(start, start + n)]


def test_consume_stores_good_messages_once_and_leaves_poison_for_the_dead_letter_queue(cloud):
    sqs = aws.client("sqs", cloud)
    publisher = wiring.action_publisher(cloud)
    publisher.publish(_actions(3))
    publisher.publish(_actions(2, start=2))  # e2 again: a producer retry
    sqs.send_message(QueueUrl=cloud.actions_queue_url, MessageBody="{not an envelope")
    state, store = wiring.state_store(cloud), wiring.action_store(cloud)
    streaming = StreamingService(cloud, sqs, state, wiring.consumer_sinks(cloud))
    assert streaming.status()["queue"]["waiting"] == 3

    result = streaming.consume(ConsumeRequest(max_messages=10))
    assert result["received"] == 3 and len(result["failed_messages"]) == 1
    stored = [a.event_id for a in store.iter_actions()]
    assert sorted(stored) == ["e0", "e1", "e2", "e3"]  # e2 once
    status = streaming.status()
    assert status["consumer"]["stored_actions"] == 4 and status["consumer"]["poison_messages"] == 1
    assert status["consumer"]["batches"] == 1 and status["untrained_actions"] == 4
    assert status["queue"]["in_flight"] == 1  # the poison message waits for its retry, then the DLQ
    assert streaming.consume(ConsumeRequest(max_messages=1))["status"] == "empty"
