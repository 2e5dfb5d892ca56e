"""The local cloud keeps acknowledged writes across a restart (moto alone keeps nothing)."""
import json

from infra.local_runner.cloud import LocalCloud


def _provision(cloud):
    cloud.client("s3").create_bucket(Bucket="data-bucket")
    url = cloud.client("sqs").create_queue(QueueName="actions")["QueueUrl"]
    cloud.client("dynamodb").create_table(
        TableName="state", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    return url


def test_state_survives_a_restart(tmp_path):
    first = LocalCloud(str(tmp_path), port=0)
    first.start()
    try:
        url = _provision(first)
        assert first.restore() == {"s3_objects": 0, "sqs_messages": 0, "dynamodb_items": 0}
        s3, sqs, ddb = first.client("s3"), first.client("sqs"), first.client("dynamodb")
        s3.put_object(Bucket="data-bucket", Key="actions/dt=2026-11-29/a b.jsonl", Body=b'{"x":1}\n')
        s3.put_object(Bucket="data-bucket", Key="gone", Body=b"x")
        s3.delete_object(Bucket="data-bucket", Key="gone")
        for n in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=received["ReceiptHandle"])
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)  # in flight: must come back after restart
        ddb.put_item(TableName="state", Item={"pk": {"S": "model"}, "doc": {"S": "{}"}})
    finally:
        first.stop()

    second = LocalCloud(str(tmp_path), port=0)
    second.start()
    try:
        url = _provision(second)
        assert second.restore() == {"s3_objects": 1, "sqs_messages": 2, "dynamodb_items": 1}
        body = second.client("s3").get_object(Bucket="data-bucket", Key="actions/dt=2026-11-29/a b.jsonl")["Body"]
        assert body.read() == b'{"x":1}\n'
        bodies = [m["Body"] for m in second.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
        assert sorted(bodies) == sorted(json.dumps({"n": n}) for n in range(3) if json.dumps({"n": n}) != received["Body"])
        assert second.client("dynamodb").get_item(TableName="state", Key={"pk": {"S": "model"}})["Item"]["doc"]["S"] == "{}"
    finally:
        second.stop()


def test_creating_empty_resources_does_not_clobber_saved_state(tmp_path):
    (tmp_path / "sqs" / "actions").mkdir(parents=True)
    (tmp_path / "sqs" / "actions" / "m1.json").write_text(json.dumps({"body": "kept"}))
    cloud = LocalCloud(str(tmp_path), port=0)
    cloud.start()
    try:
        url = _provision(cloud)  # an empty queue exists now; the saved message must still be there
        assert json.loads((tmp_path / "sqs" / "actions" / "m1.json").read_text()) == {"body": "kept"}
        cloud.restore()
        assert cloud.client("sqs").receive_message(QueueUrl=url)["Messages"][0]["Body"] == "kept"
    finally:
        cloud.stop()


def _restarted(tmp_path):
    cloud = LocalCloud(str(tmp_path), port=0)
    cloud.start()
    _provision(cloud)
    return cloud, cloud.restore()


def test_dynamodb_writes_replay_from_the_journal_deletes_and_transactions_too(tmp_path):
    cloud, _ = _restarted(tmp_path)
    try:
        ddb = cloud.client("dynamodb")
        for k in range(5):
            ddb.put_item(TableName="state", Item={"pk": {"S": "k{}".format(k)}, "n": {"N": str(k)}})
        ddb.update_item(TableName="state", Key={"pk": {"S": "k1"}}, UpdateExpression="ADD n :ten",
                        ExpressionAttributeValues={":ten": {"N": "10"}})
        ddb.delete_item(TableName="state", Key={"pk": {"S": "k2"}})
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "state", "Item": {"pk": {"S": "once#a"}}, "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": {"TableName": "state", "Key": {"pk": {"S": "k0"}}, "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
    finally:
        cloud.stop()  # no snapshot on the way out: what a kill -9 leaves is the journal
    with open(tmp_path / "dynamodb" / "state.journal", "a") as f:
        f.write('{"key": {"pk": {"S": "k3"}}, "item": nul')  # the runner died mid-append: never acknowledged
    cloud, counts = _restarted(tmp_path)
    try:
        items = {i["pk"]["S"]: i.get("n", {}).get("N") for i in cloud.client("dynamodb").scan(TableName="state")["Items"]}
        assert items == {"k0": "1", "k1": "11", "k3": "3", "k4": "4", "once#a": None} and counts["dynamodb_items"] == 5
        assert (tmp_path / "dynamodb" / "state.journal").read_text() == ""  # restore() compacted it
    finally:
        cloud.stop()
