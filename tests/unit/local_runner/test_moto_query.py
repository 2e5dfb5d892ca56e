"""The local cloud's Query reads one partition and writes its answer as JSON, answering as DynamoDB (and moto) do."""
import boto3
import pytest
from moto import mock_aws

from infra.local_runner import moto_query


@pytest.fixture
def table():
    moto_query.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "kind")],
            GlobalSecondaryIndexes=[{"IndexName": "by-kind", "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": "kind", "KeyType": "HASH"}]}])
        for user in range(30):
            for k in range(20):
                client.put_item(TableName="t", Item={"pk": {"S": "user#{}".format(user)}, "sk": {"S": "{:04d}".format(k)},
                                                     "kind": {"S": "odd" if k % 2 else "even"}, "n": {"N": str(k)}})
        yield client


def _query(client, **kwargs):
    pages, start = [], None
    while True:
        page = client.query(TableName="t", **dict(kwargs, **({"ExclusiveStartKey": start} if start else {})))
        pages.append([int(i["n"]["N"]) for i in page["Items"]])
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages


def test_a_partition_reads_newest_first_in_pages(table, monkeypatch):
    from moto.dynamodb.models.table import Table

    sorted_partitions = []
    all_items = Table.all_items

    def recorded(self):
        sorted_partitions.append(len(self.items))
        return all_items(self)

    monkeypatch.setattr(Table, "all_items", recorded)
    by_user = {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": "user#7"}}}
    assert _query(table, ScanIndexForward=False, Limit=8, **by_user) == [
        list(range(19, 11, -1)), list(range(11, 3, -1)), [3, 2, 1, 0]]
    assert _query(table, **by_user) == [list(range(20))]
    assert sorted_partitions and set(sorted_partitions) == {1}  # not the table's 30


def test_range_conditions_and_filters_apply_within_the_partition(table):
    pages = _query(table, KeyConditionExpression="pk = :pk AND sk > :from", FilterExpression="n < :upto",
                   ExpressionAttributeValues={":pk": {"S": "user#3"}, ":from": {"S": "0009"}, ":upto": {"N": "15"}})
    assert pages == [[10, 11, 12, 13, 14]]


def test_a_missing_partition_is_empty_and_stays_missing(table):
    by_user = {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": "user#nobody"}}}
    assert _query(table, **by_user) == [[]]
    assert table.scan(TableName="t", Select="COUNT")["Count"] == 600


def test_index_queries_keep_moto_s_path(table):
    pages = _query(table, IndexName="by-kind", KeyConditionExpression="kind = :k",
                   ExpressionAttributeValues={":k": {"S": "odd"}})
    assert sum(len(p) for p in pages) == 300 and set(n for p in pages for n in p) == set(range(1, 20, 2))


def test_every_attribute_type_reads_back_as_written(table):
    item = {"pk": {"S": "typed"}, "sk": {"S": "1"}, "s": {"S": "é ☃ \"q\""}, "n": {"N": "-1.5e3"},
            "b": {"B": b"\x00\xffbytes"}, "t": {"BOOL": True}, "z": {"NULL": True},
            "l": {"L": [{"S": "a"}, {"N": "2"}, {"M": {"x": {"BOOL": False}}}]},
            "m": {"M": {"inner": {"L": [{"B": b"\x01"}]}}}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]},
            "bs": {"BS": [b"\x02", b"\x03"]}}
    table.put_item(TableName="t", Item=item)
    answer = table.query(TableName="t", KeyConditionExpression="pk = :pk", ReturnConsumedCapacity="TOTAL",
                         ExpressionAttributeValues={":pk": {"S": "typed"}})
    assert answer["Count"] == answer["ScannedCount"] == 1 and answer["ConsumedCapacity"]["TableName"] == "t"
    got = answer["Items"][0]
    for sets in ("ss", "ns", "bs"):  # sets come back in any order
        got[sets] = {k: sorted(v) for k, v in got[sets].items()}
    assert got == item
    scanned = table.scan(TableName="t", FilterExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "typed"}})
    assert scanned["Items"][0]["b"] == {"B": b"\x00\xffbytes"} and scanned["Items"][0]["m"] == item["m"]


def test_errors_stay_dynamodb_errors(table):
    with pytest.raises(table.exceptions.ResourceNotFoundException):
        table.query(TableName="missing", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "x"}})
    with pytest.raises(table.exceptions.ClientError, match="ValidationException"):
        table.query(TableName="t", KeyConditionExpression="nope = :pk", ExpressionAttributeValues={":pk": {"S": "x"}})


def test_query_and_scan_answers_skip_moto_s_serializer(table, monkeypatch):
    from moto.core.responses import ActionResult

    execute_result = ActionResult.execute_result
    serialized = []

    def recorded(self, context):
        serialized.append(context.operation_model.name)
        return execute_result(self, context)

    monkeypatch.setattr(ActionResult, "execute_result", recorded)
    table.query(TableName="t", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "user#1"}})
    table.scan(TableName="t", Limit=5)
    table.get_item(TableName="t", Key={"pk": {"S": "user#1"}, "sk": {"S": "0001"}})
    assert serialized == ["GetItem"]  # the other operations keep moto's serializer
