import threading

import boto3
import pytest
from moto import mock_aws

from easyrec_online.core.config import Settings
from easyrec_online.serving.cache import ModelCache
from easyrec_online.state.registry import InMemoryStateStore, ModelVersion


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
    cache = ModelCache(settings, state, s3, load, clock, background=False)
    assert cache.current() is None
    _publish(s3, state, "v1")
    assert cache.current() is None  # within the interval: the pointer is not re-read
    clock.now = 1.0
    version, first, catalog = cache.current()
    assert version.version == "v1" and (tmp_path / "v1" / "variables" / "variables.index").exists()
    assert catalog.actions == 0  # a version without catalog.json serves with an empty one
    _publish(s3, state, "v2")
    clock.now = 2.0
    assert cache.current().version.version == "v2" and not first.closed  # never closed under a request
    assert len(loads) == 2 and cache.swaps == 2


def test_a_swap_happens_in_the_background_and_requests_never_wait_for_it(tmp_path, s3):
    state, clock = InMemoryStateStore(), Clock()
    release, loading = threading.Event(), threading.Event()

    def slow_load(path):
        if path.endswith("v2"):
            loading.set()
            release.wait(10)
        return Loaded(path)

    settings = Settings.from_env({"DATA_BUCKET": "data", "MODEL_CACHE_DIR": str(tmp_path),
                                  "CURRENT_CHECK_INTERVAL_MS": "1000"})
    _publish(s3, state, "v1")
    cache = ModelCache(settings, state, s3, slow_load, clock)
    assert cache.current().version.version == "v1"  # cold: loaded on the request path
    _publish(s3, state, "v2")
    clock.now = 5.0
    assert cache.current().version.version == "v1"  # starts the check, answers at once
    assert loading.wait(10)
    for _ in range(100):  # while v2 loads, every request is served by v1 without waiting
        assert cache.current().version.version == "v1"
    release.set()
    cache.wait_for_check()
    assert cache.current().version.version == "v2"


def test_catalog_is_loaded_with_the_version(tmp_path, s3):
    from easyrec_online.artifacts.catalog import Catalog
    from easyrec_online.ingest.actions import ActionIn, StoredAction

    state, clock = InMemoryStateStore(), Clock()
    _publish(s3, state, "v1")
    catalog = Catalog().add([StoredAction.accept(ActionIn.model_validate({"user_id": 1, "item_id": 2, "label": 1}))])
    s3.put_object(Bucket="data", Key=state.get_current().catalog_key, Body=catalog.to_json().encode())
    settings = Settings.from_env({"DATA_BUCKET": "data", "MODEL_CACHE_DIR": str(tmp_path)})
    loaded = ModelCache(settings, state, s3, Loaded, clock).current()
    assert loaded.catalog.knows_user(1) and loaded.catalog.knows_item("2") and not loaded.catalog.knows_item(3)


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
    cache = ModelCache(settings, state, s3, Loaded, clock, background=False)
    assert cache.current()[0].version == "v1"
    state.put_version(ModelVersion("v2", "deepfm", "deepfm", "models/deepfm/v2/", "t"))  # no files uploaded
    state.set_current("v2")
    clock.now = 5.0
    assert cache.current()[0].version == "v1"


def test_only_the_served_version_and_the_one_before_stay_on_disk(tmp_path, s3):
    """A version every few seconds must not fill Lambda's /tmp."""
    state, clock = InMemoryStateStore(), Clock()
    settings = Settings.from_env({"DATA_BUCKET": "data", "MODEL_CACHE_DIR": str(tmp_path),
                                  "CURRENT_CHECK_INTERVAL_MS": "1000"})
    cache = ModelCache(settings, state, s3, Loaded, clock, background=False)
    for n in range(1, 6):
        _publish(s3, state, "v{}".format(n))
        clock.now += 1.0
        assert cache.current().version.version == "v{}".format(n)
    assert sorted(p.name.split(".")[0] for p in tmp_path.iterdir()) == ["v4", "v5"]


def test_a_check_of_an_unmoved_pointer_reads_no_version_record(tmp_path, s3):
    class CountingState(InMemoryStateStore):
        version_reads = 0

        def get_version(self, version):
            CountingState.version_reads += 1
            return super().get_version(version)

    state, clock = CountingState(), Clock()
    settings = Settings.from_env({"DATA_BUCKET": "data", "MODEL_CACHE_DIR": str(tmp_path),
                                  "CURRENT_CHECK_INTERVAL_MS": "1000"})
    cache = ModelCache(settings, state, s3, Loaded, clock, background=False)
    _publish(s3, state, "v1")
    assert cache.current()[0].version == "v1"
    reads = CountingState.version_reads
    for step in range(1, 4):  # three more checks, the pointer still on v1
        clock.now = float(step)
        assert cache.current()[0].version == "v1"
    assert CountingState.version_reads == reads
    _publish(s3, state, "v2")  # (publishing reads the record too)
    reads = CountingState.version_reads
    clock.now = 10.0
    assert cache.current()[0].version == "v2" and CountingState.version_reads == reads + 1  # the pointer moved


def test_arm_versions_load_in_the_background_and_the_old_ones_go_only_after(tmp_path, s3):
    """An experiment's arm never waits for a load: version() answers None while its version loads, and
    a lineage's previous version stays until its next one is in."""
    state = InMemoryStateStore()
    for name in ("v1", "v2", "v3"):
        _publish(s3, state, name)
    state.set_current("v1")
    gate = threading.Event()

    def load(path):
        if path.endswith("v3"):
            gate.wait(10)
        return Loaded(path)

    settings = Settings.from_env({"DATA_BUCKET": "data", "MODEL_CACHE_DIR": str(tmp_path)})
    cache = ModelCache(settings, state, s3, load)
    assert cache.current().version.version == "v1"
    cache.keep_loaded({"v2"})
    cache._loader.join(10)
    assert cache.version("v2").version.version == "v2" and cache.version("v1").version.version == "v1"
    cache.keep_loaded({"v3"})  # the lineage moved on: v3 is slow to load
    assert cache.version("v3") is None  # not waited for
    assert cache.version("v2") is not None  # still there until v3 is
    gate.set()
    cache._loader.join(10)
    assert cache.version("v3") is not None and cache.version("v2") is None
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".json")) == ["v1", "v3"]
