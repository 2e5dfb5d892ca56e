"""A lineage's stored replay sample (modeling/replay.py): written by a full training and the continuous
trainer, read back by a trainer warming on the lineage."""
import gzip
import json

import boto3
import pytest
from moto import mock_aws

from easyrec_online.artifacts.features.derive import derive_spec
from easyrec_online.artifacts.features.encode import Profiles, encode
from easyrec_online.artifacts.features.sampling import training_examples
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.modeling.replay import read_replay, replay_key, sample_of, write_replay

BUCKET = "data"


def _actions(n):
    return [StoredAction.accept(ActionIn.model_validate(
        {"user_id": k % 7, "item_id": "i{}".format(k % 11), "label": int(k % 3 == 0), "action_type": "rating",
         "parameters": {"device": "mobile" if k % 2 else "web", "stars": k % 5}})) for k in range(n)]


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def trained():
    actions = _actions(60)
    spec = derive_spec(actions, min_support=0)
    return spec, training_examples(actions, 1, 3, sampling="always")


def test_a_sample_round_trips_with_its_rows_labels_and_count(s3, trained):
    spec, examples = trained
    sample = sample_of(examples, spec, Profiles(), capacity=1000, seed=1)
    assert len(sample.rows) == sample.seen == len(examples)
    write_replay(s3, BUCKET, replay_key("models/", "lineage-1"), spec, sample)
    back = read_replay(s3, BUCKET, replay_key("models/", "lineage-1"), spec)
    assert back is not None and back.seen == sample.seen
    assert back.rows == [(encode(e, spec, Profiles()), e.label_values()) for e in examples]


def test_a_sample_is_uniform_up_to_its_capacity_and_counts_every_row(s3, trained):
    spec, examples = trained
    sample = sample_of(examples, spec, Profiles(), capacity=10, seed=1)
    assert len(sample.rows) == 10 and sample.seen == len(examples)
    assert sample == sample_of(examples, spec, Profiles(), capacity=10, seed=1)  # reproducible


def test_no_sample_another_spec_or_a_corrupt_object_start_an_empty_sample(s3, trained):
    spec, examples = trained
    assert read_replay(s3, BUCKET, replay_key("models/", "nothing-stored"), spec) is None
    write_replay(s3, BUCKET, replay_key("models/", "lineage-1"), spec, sample_of(examples, spec, Profiles(), 100, 1))
    other = derive_spec(_actions(5), min_support=5)  # fewer features
    assert list(other.names) != list(spec.names) and read_replay(s3, BUCKET, replay_key("models/", "lineage-1"), other) is None
    s3.put_object(Bucket=BUCKET, Key=replay_key("models/", "lineage-2"), Body=b"not gzip")
    assert read_replay(s3, BUCKET, replay_key("models/", "lineage-2"), spec) is None
    s3.put_object(Bucket=BUCKET, Key=replay_key("models/", "lineage-3"),
                  Body=gzip.compress((json.dumps({"columns": list(spec.names), "seen": 3}) + "\n[1, 2\n").encode()))
    assert read_replay(s3, BUCKET, replay_key("models/", "lineage-3"), spec) is None
