import boto3
import pytest
from moto import mock_aws

from easyrec_online.config import Settings
from easyrec_online.registry import InMemoryStateStore, ModelVersion
from easyrec_online.serving.cache import ModelCache


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Loaded:
    def __init__(self, path):
        self.path = path
        self.closed = False

    def close(self):
        self.closed = True


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="data")
        yield client


def _publish(s3, state, version):
    record = ModelVersion(version, "deepfm", "deepfm", "models/deepfm/{}/".format(version), "t")
    s3.put_object(Bucket="data", Key=record.saved_model_prefix + "saved_model.pb", Body=version.encode())
    s3.put_object(Bucket="data", Key=record.saved_model_prefix + "variables/variables.index", Body=b"i")
    state.put_version(record)
    state.set_current(version)


def test_checks_pointer_at_most_every_interval_and_swaps(tmp_path, s3):
    state, clock, loads = InMemoryStateStore(), Clock(), []

    def load(path):
        loads.append(path)
        return Loaded(path)

    settings = Settings.from_env({"DATA_BUCKET": "data", "MODEL_CACHE_DIR": str(tmp_path),
                                  "CURRENT_CHECK_INTERVAL_MS": "1000"})
    cache = ModelCache(settings, state, s3, load, clock)
    assert cache.current() is None
    _publish(s3, state, "v1")
    assert cache.current() is None  # within the interval: the pointer is not re-read
    clock.now = 1.0
    version, first = cache.current()
    assert version.version == "v1" and (tmp_path / "v1" / "variables" / "variables.index").exists()
    _publish(s3, state, "v2")
    clock.now = 2.0
    version, second = cache.current()
    assert version.version == "v2" and not first.closed  # the old one may still serve a request
    _publish(s3, state, "v3")
    clock.now = 3.0
    assert cache.current()[0].version == "v3" and first.closed and not second.closed
    assert len(loads) == 3


def test_local_copy_is_reused(tmp_path, s3):
    state, clock = InMemoryStateStore(), Clock()
    _publish(s3, state, "v1")
    settings = Settings.from_env({"DATA_BUCKET": "data", "MODEL_CACHE_DIR": str(tmp_path)})
    ModelCache(settings, state, s3, Loaded, clock).current()
    s3.delete_object(Bucket="data", Key="models/deepfm/v1/saved_model/saved_model.pb")
    assert ModelCache(settings, state, s3, Loaded, clock).current()[0].version == "v1"  # no second download


def test_keeps_serving_when_the_new_version_cannot_load(tmp_path, s3):
    state, clock = InMemoryStateStore(), Clock()
    settings = Settings.from_env({"DATA_BUCKET": "data", "MODEL_CACHE_DIR": str(tmp_path)})
    _publish(s3, state, "v1")
    cache = ModelCache(settings, state, s3, Loaded, clock)
    assert cache.current()[0].version == "v1"
    state.put_version(ModelVersion("v2", "deepfm", "deepfm", "models/deepfm/v2/", "t"))  # no files uploaded
    state.set_current("v2")
    clock.now = 5.0
    assert cache.current()[0].version == "v1"
