"""Integration tests talk over the wire to a real moto server on 127.0.0.1 (a fresh state per test)."""
import socket

import pytest
import requests
from moto.server import ThreadedMotoServer

from easyrec_online import aws
from easyrec_online.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield "http://127.0.0.1:{}".format(port)
    server.stop()


def make_cloud(endpoint: str, **env: str) -> Settings:
    """Reset the moto server and create the service's bucket, queue and table; settings for them."""
    requests.post(endpoint + "/moto-api/reset", timeout=10)
    aws.reset_clients()
    settings = Settings.from_env(dict({"AWS_ENDPOINT_URL": endpoint, "DATA_BUCKET": "test-data",
                                       "STATE_TABLE": "test-state", "PROFILES_TABLE": "test-profiles"}, **env))
    aws.client("s3", settings).create_bucket(Bucket=settings.data_bucket)
    queue_url = aws.client("sqs", settings).create_queue(QueueName="test-actions")["QueueUrl"]
    aws.client("dynamodb", settings).create_table(
        TableName=settings.state_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    aws.client("dynamodb", settings).create_table(
        TableName=settings.profiles_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    return Settings.from_env(dict(settings.as_env(), ACTIONS_QUEUE_URL=queue_url))


@pytest.fixture
def cloud(moto_endpoint):
    """Settings for a fresh local cloud with the service's bucket, queue and table created."""
    return make_cloud(moto_endpoint)
