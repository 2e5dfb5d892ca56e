"""Integration tests talk over the wire to a local cloud on 127.0.0.1: a real moto server (the
default), or LocalStack in host mode (INTEGRATION_BACKEND=localstack, LOCALSTACK_ENDPOINT; started
and stopped by `make test-localstack`, see infra/localstack.py) for S3, SQS and Kinesis.

LocalStack cannot serve DynamoDB here (it downloads a JRE) nor Lambda (it needs Docker): with it,
DynamoDB goes to a moto server beside it (AWS_ENDPOINT_URL_DYNAMODB), and tests *about* DynamoDB
skip with that reason (`dynamodb_itself`). Every test gets fresh resources: moto is reset; on
LocalStack, which has no reset, names are unique per test.
"""
import fcntl
import os
import pickle
import socket
import uuid
from dataclasses import dataclass
from typing import Dict, List

import pytest
import requests
from moto.server import ThreadedMotoServer

from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from infra.local_runner import moto_atomic, moto_query


def free_port() -> int:
    """A port free now (for tools that cannot take port 0 and report what they got; the benchmarks'
    one-off servers). Tests bind port 0 instead: no window for another process to take it."""
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
    moto_atomic.install()  # as the local runner's cloud does: atomic item writes, cheap transactions
    moto_query.install()  # and Query by partition, answered as JSON
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # the port the system gives
    server.start()
    moto = "http://127.0.0.1:{}".format(server.get_host_and_port()[1])
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
                                       "LEDGER_TABLE": "test-ledger", "EXPERIMENTS_TABLE": "test-experiments"},
                                      **env))
    aws.client("s3", settings).create_bucket(Bucket=settings.data_bucket)
    queue_url = aws.client("sqs", settings).create_queue(QueueName="test-actions" + suffix)["QueueUrl"]
    aws.client("dynamodb", settings).create_table(
        TableName=settings.state_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    aws.client("dynamodb", settings).create_table(
        TableName=settings.experiments_table, BillingMode="PAY_PER_REQUEST",
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


# ---------------------------------------------------------------- train once, restore everywhere

@dataclass
class CloudSnapshot:
    """What a trained service holds: its bucket's objects and its tables' items (as DynamoDB returns
    them), to be written into a fresh cloud of another test."""

    objects: Dict[str, bytes]
    items: Dict[str, List[dict]]  # by Settings attribute: state_table, profiles_table, ...


TABLES = ("state_table", "profiles_table", "activity_table", "ledger_table")


def snapshot_cloud(settings: Settings) -> CloudSnapshot:
    s3, ddb = aws.client("s3", settings), aws.client("dynamodb", settings)
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.data_bucket):
        for obj in page.get("Contents", []):
            objects[obj["Key"]] = s3.get_object(Bucket=settings.data_bucket, Key=obj["Key"])["Body"].read()
    items = {}
    for table in TABLES:
        items[table] = [item for page in ddb.get_paginator("scan").paginate(TableName=getattr(settings, table))
                        for item in page["Items"]]
    return CloudSnapshot(objects, items)


def restore_cloud(snapshot: CloudSnapshot, settings: Settings) -> None:
    """Write a snapshot into this test's fresh cloud (real S3 puts and DynamoDB writes)."""
    s3, ddb = aws.client("s3", settings), aws.client("dynamodb", settings)
    for key, body in snapshot.objects.items():
        s3.put_object(Bucket=settings.data_bucket, Key=key, Body=body)
    for table, items in snapshot.items.items():
        for start in range(0, len(items), 25):
            ddb.batch_write_item(RequestItems={getattr(settings, table): [
                {"PutRequest": {"Item": item}} for item in items[start:start + 25]]})


@dataclass
class TrainedModel:
    """One lineage trained once per test session (real EasyRec) on preference_actions(): what every test
    that needs "a trained model" starts from, restored into its own cloud (`trained_cloud`)."""

    snapshot: CloudSnapshot
    env: Dict[str, str]  # the settings it was trained with
    job_id: str


# Explicit likes and dislikes: holdout AUCs measure liked-vs-disliked, so no sampled unseen items
# beside them (NEGATIVE_SAMPLING=always would score those too).
TRAINED_MODEL_ENV = {"TRAIN_STEPS": "300", "NEGATIVE_SAMPLING": "auto"}


def _train_the_shared_model(endpoint, tmp) -> TrainedModel:
    from tests.integration.runtime import preference_actions, run_trainer, store_in_batches

    settings = make_cloud(endpoint, **TRAINED_MODEL_ENV)
    store_in_batches(settings, preference_actions())
    job_id, result = run_trainer(settings, tmp)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return TrainedModel(snapshot_cloud(settings), dict(TRAINED_MODEL_ENV), job_id)


@pytest.fixture(scope="session")
def trained_model(moto_endpoint, tmp_path_factory) -> TrainedModel:
    """Trained once per run: under pytest-xdist the first worker to need it trains it and leaves it
    on disk for the others (a file lock in the run's shared temporary folder)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    tmp = tmp_path_factory.mktemp("trained-model")
    if not worker:
        return _train_the_shared_model(moto_endpoint, tmp)
    shared = tmp_path_factory.getbasetemp().parent / "trained-model.pickle"
    with open(str(shared) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shared.exists():
            with open(str(shared) + ".part", "wb") as f:
                pickle.dump(_train_the_shared_model(moto_endpoint, tmp), f)
            os.replace(str(shared) + ".part", shared)
    with open(shared, "rb") as f:
        return pickle.load(f)


@pytest.fixture
def trained_cloud(moto_endpoint, trained_model) -> Settings:
    """A fresh cloud of this test's own holding the session's trained model: its actions, version,
    checkpoint, SavedModel, catalog and registry records."""
    settings = make_cloud(moto_endpoint, **trained_model.env)
    restore_cloud(trained_model.snapshot, settings)
    return settings
