"""One contract, two backends: the in-memory state store and DynamoDB (moto server)."""
import datetime as dt

import pytest

from easyrec_online import wiring
from easyrec_online.ingest.actions import utc_now
from easyrec_online.state.registry import (
    Conflict,
    InMemoryStateStore,
    LeaseHeld,
    ModelVersion,
    NotCurrent,
    TrainingJob,
    new_id,
)
from tests.integration.conftest import contract_backend


@pytest.fixture(params=["memory", "dynamodb"])
def store(request):
    return contract_backend(request, InMemoryStateStore, wiring.state_store)


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

    def test_counts_added_once_per_token_however_often_asked(self, store):
        assert store.add_counts_once("ingest", "actions/a.jsonl", "t1", stored_actions=3)
        assert not store.add_counts_once("ingest", "actions/a.jsonl", "t2", stored_actions=3)
        assert store.add_counts_once("ingest", "actions/b.jsonl", "t3", stored_actions=2)
        assert store.add_counts_once("other", "actions/a.jsonl", "t4", stored_actions=1)  # tokens per counter
        assert store.counts("ingest") == {"stored_actions": 5, "last_at": "t3"}
        store.add_counts("ingest", "t5", batches=1)  # the plain counters beside it
        assert store.counts("ingest") == {"stored_actions": 5, "batches": 1, "last_at": "t5"}

    def test_current_pointer(self, store):
        assert store.get_current() is None
        store.put_version(_version("v1"))
        store.put_version(_version("v2"))
        store.set_current("v1")
        assert store.get_current().version == "v1" and not store.pointer()["pinned"]
        store.set_current("v2")
        assert store.get_current().version == "v2"
        with pytest.raises(KeyError):
            store.set_current("nope")
        assert [v.version for v in store.list_versions()] == ["v2", "v1"]

    def test_a_rollback_pins_and_a_trainer_promotion_needs_the_pointer_it_started_from(self, store):
        for name in ("v1", "v2", "v3"):
            store.put_version(_version(name))
        store.promote("v1", None)  # the first version: there was no current one
        with pytest.raises(NotCurrent):
            store.promote("v2", None)  # the pointer moved since that run started
        store.set_current("v2", pinned=True, reason="rolled back by an operator")
        assert store.pointer()["pinned"] and store.get_current().version == "v2"
        with pytest.raises(NotCurrent):
            store.promote("v3", "v2")  # pinned: trainers publish beside it, not over it
        store.set_pinned(False)
        store.promote("v3", "v2")
        assert store.get_current().version == "v3" and not store.pointer()["pinned"]
        store.put_version(_version("v4", status="rejected"))
        with pytest.raises(ValueError):
            store.set_current("v4")

    def test_mutate_retries_on_the_newer_document_and_a_conflict_is_never_a_lost_update(self, store):
        store.mutate("config", "c", lambda doc: {"n": 0})
        calls = []

        def racing(doc):
            calls.append(doc["n"])
            if len(calls) == 1:  # another writer gets in between this read and this write
                store.mutate("config", "c", lambda d: dict(d, n=d["n"] + 10, other=True))
            return dict(doc, n=doc["n"] + 1)

        assert store.mutate("config", "c", racing) == {"n": 11, "other": True}
        assert calls == [0, 10] and store.get_config("c") == {"n": 11, "other": True}

    def test_a_stop_request_survives_a_concurrent_progress_write(self, store):
        job_id = new_id("job-")
        store.put_job(TrainingJob(job_id, "running", "t", mode="continuous"))
        with pytest.raises(Conflict):
            store.put_job(TrainingJob(job_id, "pending", "t"))  # a job id is written once
        store.update_job(job_id, only_from=("running",), status="stopping")
        store.update_job(job_id, version="v9", num_actions=5)  # the trainer's progress, after the stop
        job = store.get_job(job_id)
        assert job.status == "stopping" and job.version == "v9"
        assert store.update_job(job_id, only_from=("pending",), status="running").status == "stopping"

    def test_one_trainer_lease_holder_until_it_expires_releases_or_its_job_ends(self, store):
        first, second = new_id("job-"), new_id("job-")
        store.put_job(TrainingJob(first, "running", "t"))
        store.put_job(TrainingJob(second, "pending", "t"))
        store.acquire_lease(first, 60)
        assert store.lease_holder() == first
        with pytest.raises(LeaseHeld):
            store.acquire_lease(second, 60)
        store.acquire_lease(first, 60)  # the holder renews
        later = utc_now() + dt.timedelta(seconds=61)
        store.acquire_lease(second, 60, now=later)  # expired: taken over
        assert store.lease_holder(now=later) == second
        store.release_lease(first)  # not the holder: nothing changes
        assert store.lease_holder(now=later) == second
        store.release_lease(second)
        assert store.lease_holder() is None
        store.acquire_lease(first, 60)
        store.update_job(first, status="failed")
        store.acquire_lease(second, 60)  # the holder's job ended: no need to wait for the expiry
        assert store.lease_holder() == second

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
def profiles(request):
    from easyrec_online.state.profiles import InMemoryProfileStore

    return contract_backend(request, InMemoryProfileStore, wiring.profile_store)


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


@pytest.fixture(params=["memory", "dynamodb"])
def activity(request):
    from easyrec_online.state.activity import InMemoryActivityStore

    return contract_backend(request, InMemoryActivityStore, wiring.activity_store)


class TestActivityStoreContract:
    def test_a_users_latest_actions_in_time_order_each_event_once(self, activity):
        from easyrec_online.ingest.actions import ActionIn, StoredAction

        def action(user, item, at, label=1, event_id=None):
            return StoredAction.accept(ActionIn.model_validate({
                "user_id": user, "item_id": item, "label": label, "action_type": "view", "timestamp": at,
                "event_id": event_id or "{}-{}-{}".format(user, item, at)}))

        assert activity.recent(["1"], 10) == {}
        activity.record([action(1, "b", 20), action(1, "a", 10), action(2, "z", 5, label=0)])
        activity.record([action(1, "b", 20)])  # again (the consumer after the API): no change
        activity.record([action(1, "c", 30)])
        assert activity.recent([1, "2", "3"], 10) == {"1": [["a", "view", 1], ["b", "view", 1], ["c", "view", 1]],
                                                       "2": [["z", "view", 0]]}
        assert activity.recent(["1"], 2) == {"1": [["b", "view", 1], ["c", "view", 1]]}
        # A client's retry of an event sent without a timestamp is accepted again, later: it counts once.
        import datetime as dt

        sample = ActionIn.model_validate({"user_id": 1, "item_id": "d", "label": 1, "action_type": "view",
                                          "event_id": "retried"})
        first = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
        for moment in (first, first + dt.timedelta(seconds=3)):
            activity.record([StoredAction.accept(sample, now=moment)])
        assert activity.recent(["1"], 10)["1"] == [["a", "view", 1], ["b", "view", 1], ["c", "view", 1],
                                                   ["d", "view", 1]]
        assert activity.recent(["1"], 2)["1"] == [["c", "view", 1], ["d", "view", 1]]
