"""The local cloud's DynamoDB keeps DynamoDB's guarantees under concurrent requests (moto alone does not)."""
import sys
import threading

import boto3
import pytest
from moto import mock_aws

from infra.local_runner import moto_atomic


@pytest.fixture
def table():
    moto_atomic.install()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: moto's unlocked read-modify-write then loses writes
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        yield client
    sys.setswitchinterval(interval)


def _add(client, n):
    for _ in range(n):
        client.update_item(TableName="t", Key={"pk": {"S": "counter"}}, UpdateExpression="ADD n :one",
                           ExpressionAttributeValues={":one": {"N": "1"}})


def _count(client, pk="counter"):
    return int(client.get_item(TableName="t", Key={"pk": {"S": pk}})["Item"]["n"]["N"])


def test_concurrent_additions_to_one_item_are_all_kept(table):
    threads = [threading.Thread(target=_add, args=(table, 100)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _count(table) == 600


def test_a_conditional_put_is_won_by_exactly_one_of_many(table):
    wins = []

    def claim(owner):
        try:
            table.put_item(TableName="t", Item={"pk": {"S": "event#1"}, "owner": {"S": owner}},
                           ConditionExpression="attribute_not_exists(pk)")
            wins.append(owner)
        except table.exceptions.ConditionalCheckFailedException:
            pass

    threads = [threading.Thread(target=claim, args=(str(k),)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def _once(client, token):
    client.transact_write_items(TransactItems=[
        {"Put": {"TableName": "t", "Item": {"pk": {"S": "once#" + token}}, "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Update": {"TableName": "t", "Key": {"pk": {"S": "counter"}}, "UpdateExpression": "ADD n :five",
                    "ExpressionAttributeValues": {":five": {"N": "5"}}}}])


def test_a_cancelled_transaction_writes_nothing_and_undoes_nobody_elses_write(table):
    _once(table, "a")
    table.put_item(TableName="t", Item={"pk": {"S": "other"}, "n": {"N": "7"}})  # written after the first
    with pytest.raises(table.exceptions.TransactionCanceledException) as cancelled:
        _once(table, "a")
    assert cancelled.value.response["CancellationReasons"][0]["Code"] == "ConditionalCheckFailed"
    assert _count(table) == 5 and _count(table, "other") == 7
