"""The Kinesis transport over the wire (moto's Kinesis): actions published as envelope records,
read back as the Lambda event source delivers them, stored once by the consumer with Powertools'
partial batch semantics (a poison record reported by its sequence number)."""
import base64

from easyrec_online import wiring
from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.ingest.consumer import new_processor, store_kinesis_batch


def _actions(n, start=0):
    return [StoredAction.accept(ActionIn.model_validate({"user_id": i % 7, "item_id": i, "label": 1,
                                                         "event_id": "k{}".format(i)})) for i in range(start, start + n)]


def _event(kinesis, stream):
    """The records of every shard, shaped as a Kinesis event source mapping hands them to Lambda."""
    records = []
    for shard in kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for r in kinesis.get_records(ShardIterator=iterator, Limit=1000)["Records"]:
            records.append({"eventSource": "aws:kinesis", "eventID": "{}:{}".format(shard["ShardId"], r["SequenceNumber"]),
                            "kinesis": {"data": base64.b64encode(r["Data"]).decode(), "partitionKey": r["PartitionKey"],
                                        "sequenceNumber": r["SequenceNumber"], "kinesisSchemaVersion": "1.0",
                                        "approximateArrivalTimestamp": 0}})
    return {"Records": records}


def test_kinesis_publish_and_consume_store_each_action_once(cloud):
    stream = cloud.data_bucket.replace("test-data", "test-actions")  # unique per test on LocalStack
    settings = Settings.from_env(dict(cloud.as_env(), STREAM_TRANSPORT="kinesis", ACTIONS_STREAM_NAME=stream))
    kinesis = aws.client("kinesis", settings)
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    publisher = wiring.action_publisher(settings)
    publisher.publish(_actions(30))
    publisher.publish(_actions(5, start=28))  # k28, k29 again: a producer retry
    # A producer writing to the stream directly, not through the API, with one malformed record.
    kinesis.put_record(StreamName=stream, Data=b"{not an envelope", PartitionKey="x")

    event = _event(kinesis, stream)
    assert len(event["Records"]) == 3
    sinks = wiring.consumer_sinks(settings)
    store, state = sinks.store, sinks.counters
    response = store_kinesis_batch(event, new_processor("kinesis"), sinks)
    poison = [r["kinesis"]["sequenceNumber"] for r in event["Records"] if r["kinesis"]["partitionKey"] == "x"]
    assert response == {"batchItemFailures": [{"itemIdentifier": poison[0]}]}
    assert sorted(a.event_id for a in store.iter_actions()) == sorted("k{}".format(i) for i in range(33))
    assert state.counts("ingest")["stored_actions"] == 33 and state.counts("ingest")["poison_messages"] == 1
