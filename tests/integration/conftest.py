"""Integration tests talk over the wire to a local cloud on 127.0.0.1: a real moto server (the
default), or LocalStack in host mode (INTEGRATION_BACKEND=localstack, LOCALSTACK_ENDPOINT; started
and stopped by `make test-localstack`, see infra/localstack.py) for S3, SQS and Kinesis.

LocalStack cannot serve DynamoDB here (it downloads a JRE) nor Lambda (it needs Docker): with it,
DynamoDB goes to a moto server beside it (AWS_ENDPOINT_URL_DYNAMODB), and tests *about* DynamoDB
skip with that reason (`dynamodb_itself`). Every test gets fresh resources: moto is reset; on
LocalStack, which has no reset, names are unique per test.
"""
import os
import socket
import uuid

import pytest
import requests
from moto.server import ThreadedMotoServer

from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from infra.local_runner import moto_atomic, moto_query


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BACKEND = os.environ.get("INTEGRATION_BACKEND", "moto")
LOCALSTACK_SKIP_DYNAMODB = ("LocalStack cannot serve DynamoDB offline (it downloads a JRE at first use): "
                            "this test is about DynamoDB itself and runs on the moto backend")


class CloudEndpoints(str):
    """The endpoint for S3/SQS/Kinesis (a str, as before) and, beside it, DynamoDB's."""

    dynamodb: str


@pytest.fixture(scope="session")
def moto_endpoint():
    port = free_port()
    moto_atomic.install()  # as the local runner's cloud does: atomic item writes, cheap transactions
    moto_query.install()  # and Query by partition, answered as JSON
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    moto = "http://127.0.0.1:{}".format(port)
    if BACKEND == "localstack":
        localstack = os.environ.get("LOCALSTACK_ENDPOINT", "")
        try:
            requests.get(localstack + "/_localstack/health", timeout=5).raise_for_status()
        except Exception as exc:  # noqa: BLE001
            pytest.fail("INTEGRATION_BACKEND=localstack but LocalStack does not answer at {!r} ({}); "
                        "run `make test-localstack`".format(localstack, exc))
        endpoints = CloudEndpoints(localstack)
    else:
        endpoints = CloudEndpoints(moto)
    endpoints.dynamodb = moto
    yield endpoints
    server.stop()


@pytest.fixture
def dynamodb_itself():
    """For tests about DynamoDB: skipped (with the reason) on LocalStack."""
    if BACKEND == "localstack":
        pytest.skip(LOCALSTACK_SKIP_DYNAMODB)


def contract_backend(request, in_memory, aws_backed, dynamodb=True):
    """A contract test's implementation under test (the fixture's param "memory" or another): the
    in-memory one, or the AWS-backed one built by `aws_backed(settings)` on a fresh local cloud.
    DynamoDB-backed ones (`dynamodb`) skip, with the reason, on LocalStack."""
    if request.param == "memory":
        return in_memory()
    if dynamodb:
        request.getfixturevalue("dynamodb_itself")
    return aws_backed(request.getfixturevalue("cloud"))


def make_cloud(endpoint: str, **env: str) -> Settings:
    """Fresh bucket, queue and tables of the service on the local cloud; settings for them."""
    dynamodb = getattr(endpoint, "dynamodb", endpoint)
    requests.post(dynamodb + "/moto-api/reset", timeout=10)
    suffix = ""
    if dynamodb != endpoint:  # LocalStack: no reset, so names of this test's own
        suffix = "-" + uuid.uuid4().hex[:8]
    aws.reset_clients()
    settings = Settings.from_env(dict({"AWS_ENDPOINT_URL": str(endpoint), "AWS_ENDPOINT_URL_DYNAMODB": dynamodb,
                                       "DATA_BUCKET": "test-data" + suffix, "STATE_TABLE": "test-state",
                                       "PROFILES_TABLE": "test-profiles", "ACTIVITY_TABLE": "test-activity",
                                       "LEDGER_TABLE": "test-ledger"}, **env))
    aws.client("s3", settings).create_bucket(Bucket=settings.data_bucket)
    queue_url = aws.client("sqs", settings).create_queue(QueueName="test-actions" + suffix)["QueueUrl"]
    aws.client("dynamodb", settings).create_table(
        TableName=settings.state_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    aws.client("dynamodb", settings).create_table(
        TableName=settings.activity_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    aws.client("dynamodb", settings).create_table(
        TableName=settings.ledger_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    aws.client("dynamodb", settings).create_table(
        TableName=settings.profiles_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    return Settings.from_env(dict(settings.as_env(), ACTIONS_QUEUE_URL=queue_url))


@pytest.fixture
def cloud(moto_endpoint):
    """Settings for a fresh local cloud with the service's bucket, queue and table created."""
    return make_cloud(moto_endpoint)
