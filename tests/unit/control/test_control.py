import pytest

from easyrec_online.control.ingest import IngestService
from easyrec_online.control.launcher import InMemoryTrainingLauncher, TaskState
from easyrec_online.control.models import RollbackRequest, health, model_info, rollback
from easyrec_online.control.profiles import get_profile, put_profile, put_profiles
from easyrec_online.control.training import TrainingService
from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError
from easyrec_online.ingest.actions import AddDataRequest
from easyrec_online.ingest.publishers import ActionPublisher, InMemoryActionPublisher, PublishError
from easyrec_online.state.profiles import InMemoryProfileStore
from easyrec_online.state.registry import InMemoryStateStore, ModelVersion


def _request(n, **extra):
    return AddDataRequest.model_validate({"samples": [dict({"user_id": i, "item_id": i + 1, "label": 1}, **extra)
                                                      for i in range(n)]})


def test_ingest_publishes_every_sample_with_ids():
    publisher = InMemoryActionPublisher()
    result = IngestService(Settings.from_env({}), publisher).add(_request(3))
    assert result["accepted"] == 3 and len(set(result["event_ids"])) == 3
    assert [a.event_id for a in publisher.published] == result["event_ids"]


def test_ingest_limits_and_duplicate_event_ids():
    service = IngestService(Settings.from_env({"MAX_SAMPLES_PER_REQUEST": "2"}), InMemoryActionPublisher())
    with pytest.raises(ApiError) as caught:
        service.add(_request(3))
    assert caught.value.status == 413 and caught.value.fields == ["samples"]
    with pytest.raises(ApiError) as caught:
        service.add(_request(2, event_id="same"))
    assert caught.value.status == 400 and caught.value.fields == ["samples[1].event_id"]


def test_ingest_reports_which_samples_were_not_queued():
    class HalfBroken(ActionPublisher):
        def publish(self, actions):
            raise PublishError([actions[1].event_id], "throttled")

    with pytest.raises(ApiError) as caught:
        IngestService(Settings.from_env({}), HalfBroken()).add(_request(3))
    assert caught.value.status == 503 and caught.value.fields == ["samples[1]"]


def test_training_start_status_and_conflict():
    state, launcher = InMemoryStateStore(), InMemoryTrainingLauncher()
    training = TrainingService(state, launcher)
    assert training.status()["status"] == "idle"
    started = training.start()
    assert started["job"]["status"] == "pending" and launcher.launched[0]["job_id"] == started["job"]["job_id"]
    with pytest.raises(ApiError) as caught:
        training.start()
    assert caught.value.status == 409
    status = training.status()
    assert status["is_training"] and status["job"]["task_ref"] == "task-1"


def test_a_task_that_vanished_marks_its_job_failed_and_frees_training():
    state, launcher = InMemoryStateStore(), InMemoryTrainingLauncher()
    training = TrainingService(state, launcher)
    training.start()
    launcher.states["task-1"] = TaskState(False, "Essential container exited (exit code 137)")
    status = training.status()
    assert status["status"] == "failed" and "exit code 137" in status["job"]["error"]
    assert training.start()["job"]["task_ref"] == "task-2"


def test_launch_failure_is_503_and_recorded():
    class Refusing(InMemoryTrainingLauncher):
        def launch(self, job_id, mode):
            raise RuntimeError("no capacity")

    state = InMemoryStateStore()
    with pytest.raises(ApiError) as caught:
        TrainingService(state, Refusing()).start()
    assert caught.value.status == 503
    assert state.latest_job().status == "failed"


def test_health_and_model_info_report_current_version():
    state = InMemoryStateStore()
    assert health(Settings.from_env({}), state)["model_version"] is None
    state.put_version(ModelVersion("v1", "deepfm", "deepfm", "models/deepfm/v1/", "t"))
    state.set_current("v1")
    report = health(Settings.from_env({}), state)
    assert report["model_version"] == "v1" and report["api_version"] == "1.1.0" and report["version"]
    assert model_info(state)["current"]["version"] == "v1"


def test_training_mode_is_validated_and_passed_to_the_task():
    launcher = InMemoryTrainingLauncher()
    training = TrainingService(InMemoryStateStore(), launcher)
    with pytest.raises(ApiError) as caught:
        training.start("sideways")
    assert caught.value.status == 400 and caught.value.fields == ["mode"]
    training.start("full")
    assert launcher.launched[0]["mode"] == "full"


def test_model_info_shows_the_online_trainer_while_it_runs():
    state, launcher = InMemoryStateStore(), InMemoryTrainingLauncher()
    job_id = TrainingService(state, launcher).start("continuous")["job"]["job_id"]
    state.update_job(job_id, status="running")
    state.put_version(ModelVersion("v1", "deepfm-v1", "deepfm", "p/v1/", "t", mode="full", job_id=job_id,
                                   num_actions=90))
    state.put_version(ModelVersion("v2", "deepfm-v1", "deepfm", "p/v2/", "t", mode="incremental", job_id=job_id,
                                   num_actions=150, timings={"total_s": 1.7}, gate={"trigger": "immediate: purchase"}))
    state.set_current("v2")
    state.add_counts("ingest", "t", stored_actions=160)
    online = model_info(state)["online"]
    assert online["updates"] == 1 and online["last_update"]["version"] == "v2" and online["last_update_s"] == 1.7
    assert online["last_trigger"] == "immediate: purchase" and online["untrained_actions"] == 10
    assert online["awaiting_update"] == 10
    # A refused update judged 8 of them: untrained still, but no longer awaiting an update.
    state.put_version(ModelVersion("v3", "deepfm-v1", "deepfm", "p/v3/", "u", mode="incremental", job_id=job_id,
                                   num_actions=158, status="rejected"))
    online = model_info(state)["online"]
    assert online["untrained_actions"] == 10 and online["awaiting_update"] == 2
    # An update that held 6 of its 16 new actions out: they are untrained, but it read them.
    state.put_version(ModelVersion("v4", "deepfm-v1", "deepfm", "p/v4/", "v", mode="incremental", job_id=job_id,
                                   parent_version="v2", num_actions=160, num_new_actions=10, num_held_out=6))
    state.add_counts("ingest", "t", stored_actions=6)
    state.set_current("v4")
    online = model_info(state)["online"]
    assert online["untrained_actions"] == 6 and online["awaiting_update"] == 0
    state.add_counts("ingest", "t", stored_actions=3)
    assert model_info(state)["online"]["awaiting_update"] == 3
    state.update_job(job_id, status="stopped")
    assert "online" not in model_info(state)


def test_stop_a_continuous_trainer_between_updates_and_a_one_shot_run_at_once():
    state, launcher = InMemoryStateStore(), InMemoryTrainingLauncher()
    training = TrainingService(state, launcher)
    with pytest.raises(ApiError) as caught:
        training.stop()
    assert caught.value.status == 409 and caught.value.error == "not_training"
    job_id = training.start("continuous")["job"]["job_id"]
    state.update_job(job_id, status="running")
    assert training.stop()["status"] == "stopping"  # the trainer sees it between updates
    assert state.get_job(job_id).status == "stopping" and launcher.states["task-1"].running
    with pytest.raises(ApiError) as caught:
        training.start("full")
    assert caught.value.status == 409  # still finishing its update
    launcher.states["task-1"] = launcher.states["task-1"].__class__(False, "exit 0")
    assert training.status()["status"] == "stopped"
    one_shot = training.start("full")["job"]["job_id"]
    assert training.stop()["status"] == "stopped" and not launcher.states["task-2"].running
    assert state.get_job(one_shot).outcome == "stopped"


def test_start_while_a_continuous_trainer_runs_asks_it_for_an_update_now():
    """The seed's `POST /online/training/start` with learning on by default: 202, and the trainer learns now."""
    state, launcher = InMemoryStateStore(), InMemoryTrainingLauncher()
    training = TrainingService(state, launcher)
    job_id = training.start("continuous")["job"]["job_id"]
    state.update_job(job_id, status="running")
    answer = training.start()
    assert answer["status"] == "started" and answer["job"]["job_id"] == job_id and answer["job"]["update_requested_at"]
    assert len(launcher.launched) == 1
    # {"mode": "full"} is honoured, never turned into an update: the trainer starts a new lineage.
    full = training.start("full")
    assert full["job"]["job_id"] == job_id and full["job"]["retrain_requested_at"] and "full retraining" in full["detail"]
    assert len(launcher.launched) == 1
    # The trainer dies before answering it: the next continuous trainer inherits the request.
    state.update_job(job_id, status="failed")
    following = training.start("continuous")["job"]
    assert following["job_id"] != job_id and following["retrain_requested_at"] == full["job"]["retrain_requested_at"]
    with pytest.raises(ApiError) as caught:
        training.start("continuous")
    assert caught.value.status == 409


def test_two_api_containers_starting_at_once_launch_one_task():
    state, launcher = InMemoryStateStore(), InMemoryTrainingLauncher()
    first, second = TrainingService(state, launcher), TrainingService(state, launcher)
    first.start("full")
    with pytest.raises(ApiError) as caught:
        second.start("full")
    assert caught.value.status == 409 and len(launcher.launched) == 1
    # Both would have read "nothing runs" before either wrote: the lease decides.
    state2, launcher2 = InMemoryStateStore(), InMemoryTrainingLauncher()
    a, b = TrainingService(state2, launcher2), TrainingService(state2, launcher2)
    a.current_job = b.current_job = lambda: None
    a.start("full")
    with pytest.raises(ApiError):
        b.start("full")
    assert len(launcher2.launched) == 1


def test_rollback_to_a_servable_version_only():
    state = InMemoryStateStore()
    for name, status in (("v1", "ready"), ("v2", "ready"), ("v3", "rejected")):
        state.put_version(ModelVersion(name, "deepfm-v1", "deepfm", "models/deepfm-v1/{}/".format(name), "t",
                                       status=status))
    state.set_current("v2")
    answer = rollback(state, RollbackRequest(version="v1"))
    assert answer["current"]["version"] == "v1" and answer["pinned"]
    assert state.get_current().version == "v1" and state.pointer()["pinned"]
    with pytest.raises(ApiError) as caught:
        rollback(state, RollbackRequest(version="v3"))
    assert caught.value.status == 409 and state.get_current().version == "v1"
    with pytest.raises(ApiError) as caught:
        rollback(state, RollbackRequest(version="v9"))
    assert caught.value.status == 404


def test_profiles_put_replace_get_and_bad_input():
    profiles = InMemoryProfileStore()
    stored = put_profile(profiles, "user", "123", {"age": 25, "location": "NYC", "likes": ["sci-fi"]})
    assert stored["user_id"] == "123" and stored["profile"]["location"] == "NYC"
    put_profile(profiles, "user", "123", {"age": 26})
    assert get_profile(profiles, "user", "123")["profile"] == {"age": 26}  # a PUT replaces
    with pytest.raises(ApiError) as caught:
        get_profile(profiles, "item", "123")
    assert caught.value.status == 404
    for body, status in (([1], 400), ({}, 400), ({"blob": "x" * 20000}, 413)):
        with pytest.raises(ApiError) as caught:
            put_profile(profiles, "item", "i1", body)
        assert caught.value.status == status


def test_profiles_in_a_batch_all_or_none_and_later_entry_wins():
    profiles = InMemoryProfileStore()
    answer = put_profiles(profiles, "user", {"users": [{"user_id": 1, "profile": {"age": 20}},
                                                       {"user_id": "2", "profile": {"age": 30}},
                                                       {"user_id": "1", "profile": {"age": 21}}]})
    assert answer == {"stored": 2, "user_ids": ["2", "1"]}
    assert get_profile(profiles, "user", 1)["profile"] == {"age": 21}  # 1 and "1" are one id; the later wins
    assert put_profiles(profiles, "item", {"items": [{"item_id": "a", "profile": {"genre": "x"}}]})["item_ids"] == ["a"]
    bad = [({"users": []}, 400, "users"), ({"users": [{"user_id": 1.5, "profile": {"a": 1}}]}, 400, "users[0].user_id"),
           ({"users": [{"user_id": 5, "profile": {}}]}, 400, "users[0].profile"),
           ({"users": [{"user_id": 5, "profile": {"a": 1}, "extra": 1}]}, 400, "users[0].extra"),
           ({"items": [{"item_id": 5, "profile": {"a": 1}}]}, 400, "users"),
           ({"users": [{"user_id": 5, "profile": {"a": 1}}, {"user_id": 6, "profile": {"blob": "x" * 20000}}]},
            413, "users[1].profile"),
           ({"users": [{"user_id": i, "profile": {"a": 1}} for i in range(1001)]}, 413, "users"), ([1], 400, "body")]
    for body, status, field in bad:
        with pytest.raises(ApiError) as caught:
            put_profiles(profiles, "user", body)
        assert (caught.value.status, caught.value.fields[0]) == (status, field), body
    assert profiles.get("user", "5") is None  # nothing of a refused batch is stored
