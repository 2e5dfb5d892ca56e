"""What the backend serves: each AWS service the project uses answers a real call on the backend
the suite runs on (moto, or LocalStack in host mode), or the test says why it cannot."""
import uuid

import pytest

from easyrec_online.core import aws
from tests.integration.conftest import BACKEND, LOCALSTACK_SKIP_DYNAMODB


def test_s3_sqs_and_kinesis_answer(cloud):
    name = "probe-" + uuid.uuid4().hex[:8]
    aws.client("s3", cloud).put_object(Bucket=cloud.data_bucket, Key=name, Body=b"x")
    assert aws.client("s3", cloud).get_object(Bucket=cloud.data_bucket, Key=name)["Body"].read() == b"x"
    assert aws.client("sqs", cloud).send_message(QueueUrl=cloud.actions_queue_url, MessageBody="x")["MessageId"]
    kinesis = aws.client("kinesis", cloud)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})
    assert kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="p")["SequenceNumber"]


def test_dynamodb_answers(cloud):
    if BACKEND == "localstack":
        pytest.skip(LOCALSTACK_SKIP_DYNAMODB)
    assert cloud.state_table in aws.client("dynamodb", cloud).list_tables()["TableNames"]


def test_lambda_is_not_used_on_any_backend():
    pytest.skip("neither moto nor LocalStack runs Lambda functions without Docker: the local runner "
                "(infra/local_runner) invokes the template's functions itself; tests/e2e covers them")
