"""One contract, two backends: the in-memory state store and DynamoDB (moto server)."""
import pytest

from easyrec_online import wiring
from easyrec_online.state.registry import InMemoryStateStore, ModelVersion, TrainingJob, new_id


@pytest.fixture(params=["memory", "dynamodb"])
def store(request):
    if request.param == "memory":
        return InMemoryStateStore()
    request.getfixturevalue("dynamodb_itself")  # skipped, with the reason, on LocalStack
    return wiring.state_store(request.getfixturevalue("cloud"))


def _version(name, **extra):
    return ModelVersion(name, "deepfm", "deepfm", "models/deepfm/{}/".format(name), "2026-11-29T00:00:00.000Z", **extra)


class TestStateStoreContract:
    def test_versions_round_trip_with_exact_floats(self, store):
        store.put_version(_version("v1", metrics={"auc": 0.8123456789012345}, feature_columns=["user_id"]))
        got = store.get_version("v1")
        assert got.metrics["auc"] == 0.8123456789012345 and got.feature_columns == ["user_id"]
        assert store.get_version("missing") is None

    def test_counters_add_atomically_and_read_back(self, store):
        assert store.counts("ingest") == {}
        store.add_counts("ingest", "t1", batches=1, stored_actions=10, poison_messages=0)
        store.add_counts("ingest", "t2", batches=1, stored_actions=5, poison_messages=2)
        assert store.counts("ingest") == {"batches": 2, "stored_actions": 15, "poison_messages": 2, "last_at": "t2"}

    def test_current_pointer(self, store):
        assert store.get_current() is None
        store.put_version(_version("v1"))
        store.put_version(_version("v2"))
        store.set_current("v1")
        assert store.get_current().version == "v1"
        store.set_current("v2")
        assert store.get_current().version == "v2"
        with pytest.raises(KeyError):
            store.set_current("nope")
        assert [v.version for v in store.list_versions()] == ["v2", "v1"]

    def test_jobs_latest_first_and_updates(self, store):
        assert store.latest_job() is None
        first, second = new_id("job-"), new_id("job-")
        store.put_job(TrainingJob(first, "succeeded", "t"))
        store.put_job(TrainingJob(second, "pending", "t"))
        assert store.latest_job().job_id == max(first, second)
        updated = store.update_job(second, status="running", task_ref="arn")
        assert store.get_job(second) == updated and updated.status == "running"
        with pytest.raises(KeyError):
            store.update_job("job-missing", status="failed")


@pytest.fixture(params=["memory", "dynamodb"])
def profiles(request, moto_endpoint):
    from easyrec_online.state.profiles import InMemoryProfileStore

    if request.param == "memory":
        return InMemoryProfileStore()
    request.getfixturevalue("dynamodb_itself")
    return wiring.profile_store(request.getfixturevalue("cloud"))


class TestProfileStoreContract:
    def test_round_trip_replace_and_kinds_are_separate(self, profiles):
        assert profiles.get("user", "7") is None
        profiles.put("user", 7, {"age": 30, "tags": ["a", "b"], "nested": {"x": 1.5}})
        assert profiles.get("user", "7")["profile"] == {"age": 30, "tags": ["a", "b"], "nested": {"x": 1.5}}
        profiles.put("user", "7", {"age": 31})
        assert profiles.get("user", 7)["profile"] == {"age": 31}
        assert profiles.get("item", "7") is None

    def test_attributes_of_many_reads_only_existing_profiles(self, profiles):
        for i in range(150):  # more than one DynamoDB batch
            profiles.put("item", i, {"rank": i})
        found = profiles.attributes_of("item", [str(i) for i in range(0, 160, 2)])
        assert found == {str(i): {"rank": i} for i in range(0, 150, 2)}
        assert profiles.attributes_of("user", ["1"]) == {}

    def test_put_many_stores_more_than_one_batch_and_replaces(self, profiles):
        profiles.put("user", "3", {"age": 1})
        stored = profiles.put_many("user", {str(i): {"age": i} for i in range(60)})  # three BatchWriteItems
        assert [r["user_id"] for r in stored] == [str(i) for i in range(60)]
        assert profiles.attributes_of("user", [str(i) for i in range(61)]) == {str(i): {"age": i} for i in range(60)}
        assert profiles.get("item", "3") is None
