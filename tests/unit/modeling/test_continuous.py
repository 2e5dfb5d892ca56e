import datetime as dt

from easyrec_online.core.config import Settings
from easyrec_online.experiments.definition import ExperimentIn
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.modeling.continuous import update_trigger

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


def _waiting(action_type, seconds_ago=0.0, n=1):
    accepted = NOW - dt.timedelta(seconds=seconds_ago)
    return [StoredAction.accept(ActionIn.model_validate({"user_id": 1, "item_id": i, "label": 1,
                                                         "action_type": action_type}), accepted) for i in range(n)]


def test_high_priority_actions_train_at_once_and_the_rest_in_batches_by_count_or_age():
    settings = Settings.from_env({"BATCH_MIN_ACTIONS": "50", "BATCH_MAX_AGE_S": "30"})
    assert update_trigger(_waiting("purchase"), settings, NOW) == "immediate: purchase"
    assert update_trigger(_waiting("view", n=10) + _waiting("rating"), settings, NOW) == "immediate: rating"
    assert update_trigger(_waiting("view", n=10), settings, NOW) is None  # waits
    assert update_trigger(_waiting("view", n=50), settings, NOW) == "batch: 50 actions waiting"
    assert update_trigger(_waiting("click", seconds_ago=31), settings, NOW).startswith("batch: oldest waiting")
    assert update_trigger([], settings, NOW) is None
    only_views = Settings.from_env({"IMMEDIATE_ACTION_TYPES": "view"})
    assert update_trigger(_waiting("view"), only_views, NOW) == "immediate: view"


def test_the_backoff_blocks_the_rejected_actions_and_says_once_when_its_delay_is_over():
    from easyrec_online.modeling.continuous import Backoff

    backoff = Backoff(poll_s=0.5)
    assert not backoff.blocks(["a"], 0.0) and not backoff.newly_over(0.0)  # nothing rejected yet
    delay = backoff.rejected(["a"], now=10.0)
    assert delay == 1.0 and backoff.blocks(["a"], 10.5) and backoff.blocks(["a"], 11.5)  # same actions: still
    assert not backoff.blocks(["a", "b"], 11.5)  # a new action, after the delay: an update may run
    assert not backoff.newly_over(10.5)  # the delay is not over
    assert backoff.newly_over(11.0) and not backoff.newly_over(12.0)  # said once
    assert backoff.rejected(["a", "b"], now=20.0) == 2.0 and not backoff.newly_over(21.0)  # doubles
    assert backoff.newly_over(22.0)
    backoff.clear()
    assert not backoff.blocks(["a"], 22.0) and not backoff.newly_over(23.0)


class _Process:
    """What StartRetraining returns (a Popen), as far as the trainer uses it."""

    def __init__(self):
        self.returncode = None
        self.killed = False

    def poll(self):
        return self.returncode

    def kill(self):
        self.killed, self.returncode = True, -9

    def wait(self, timeout=None):
        return self.returncode


class _Lineage:
    def __init__(self, version):
        self.version, self.lineage = version, version.lineage


def _retraining_world():
    from easyrec_online.state.registry import InMemoryStateStore, ModelVersion, TrainingJob

    state = InMemoryStateStore()
    state.put_job(TrainingJob("job-1", "running", "2026-12-07T10:00:00.000Z", mode="continuous",
                              retrain_requested_at="2026-12-07T10:00:01.000Z"))
    old = ModelVersion("v1", "deepfm-v1", "deepfm", "p/v1/", "2026-12-07T10:00:00.000Z", job_id="job-1", num_actions=50)
    state.put_version(old)
    state.set_current("v1")
    return state, old


def _new_lineage(run, gate, status="ready"):
    from easyrec_online.ingest.actions import isoformat_utc
    from easyrec_online.state.registry import ModelVersion

    version = run.version_id  # chosen by the trainer when it starts the retraining
    return ModelVersion(version, "deepfm-" + version, "deepfm", "p/{}/".format(version), isoformat_utc(run.started_at),
                        status=status, job_id="job-1", mode="full", num_actions=400,
                        gate=dict(gate, retrain={"reason": run.reason}))


def test_a_retraining_runs_beside_the_updates_and_its_lineage_replaces_theirs_when_the_gate_passed_it():
    from easyrec_online.modeling.continuous import RetrainingRun, _finish_retraining
    from easyrec_online.state.registry import ModelVersion

    state, old = _retraining_world()
    run = RetrainingRun("requested: POST /online/training/start {\"mode\": \"full\"}", _Lineage(old),
                        "2026-12-07T10:00:01.000Z")
    run.process = _Process()
    assert not run.finished()
    # Meanwhile the old lineage's updates move the pointer on; the retraining publishes beside them.
    state.put_version(ModelVersion("v2", "deepfm-v1", "deepfm", "p/v2/", "2026-12-07T10:00:05.000Z", job_id="job-1",
                                   mode="incremental", num_actions=60))
    state.set_current("v2")
    state.put_version(_new_lineage(run, {"promote": True, "not_current": "the current version is v2, not v1"}))
    run.process.returncode = 0
    assert run.finished()
    summary = _finish_retraining(state, "job-1", run)
    assert summary["outcome"] == "promoted" and state.pointer()["version"] == run.version_id, summary
    adopted = state.get_version(run.version_id)
    assert adopted.gate["adopted_over"] == "v2" and "not_current" not in adopted.gate
    job = state.get_job("job-1")
    assert job.retraining is None and job.last_retraining["version"] == run.version_id
    assert job.retrain_handled_at == job.retrain_requested_at  # the request is answered, once


def test_a_refused_failed_or_overtaken_retraining_leaves_the_current_lineage_serving():
    from easyrec_online.modeling.continuous import RetrainingRun, _finish_retraining
    from easyrec_online.state.registry import ModelVersion

    state, old = _retraining_world()
    refused = RetrainingRun("data grew 8.0x", _Lineage(old), None)
    state.put_version(_new_lineage(refused, {"promote": False, "reason": "worse"}, status="rejected"))
    assert _finish_retraining(state, "job-1", refused)["outcome"] == "rejected" and state.pointer()["version"] == "v1"
    assert state.get_job("job-1").retrain_handled_at is None  # it answered no request

    failed = RetrainingRun("drift", _Lineage(old), None)
    failed.process = _Process()
    failed.process.returncode = 1
    summary = _finish_retraining(state, "job-1", failed)
    assert summary["outcome"] == "failed" and "exit code 1" in summary["error"] and state.pointer()["version"] == "v1"

    overtaken = RetrainingRun("new features: param.stars", _Lineage(old), None)
    state.put_version(ModelVersion("v9", "other-v9", "deepfm", "p/v9/", "2026-12-07T10:00:06.000Z"))
    state.set_current("v9")  # an operator chose another lineage meanwhile: it stays
    state.put_version(_new_lineage(overtaken, {"promote": True, "not_current": "moved"}))
    assert _finish_retraining(state, "job-1", overtaken)["outcome"] == "kept" and state.pointer()["version"] == "v9"


def test_a_retraining_under_way_is_killed_with_its_trainer():
    from easyrec_online.modeling.continuous import RetrainingRun

    state, old = _retraining_world()
    run = RetrainingRun("drift", _Lineage(old), None)
    run.process = _Process()
    run.stop()
    assert run.process.killed and run.finished()


def test_a_retraining_cut_short_by_its_trainer_answers_no_request_and_one_killed_alone_fails():
    from easyrec_online.modeling.continuous import RetrainingRun, _finish_retraining

    state, old = _retraining_world()
    run = RetrainingRun("requested", _Lineage(old), "2026-12-07T10:00:01.000Z")
    run.process = _Process()
    run.process.returncode = -15  # SIGTERM to the task: a deploy
    assert _finish_retraining(state, "job-1", run, stopping=True)["outcome"] == "interrupted"
    job = state.get_job("job-1")
    assert job.retrain_handled_at is None and job.retraining is None and job.last_retraining["outcome"] == "interrupted"
    alone = RetrainingRun("requested", _Lineage(old), "2026-12-07T10:00:01.000Z")
    alone.process = _Process()
    alone.process.returncode = -9  # the kernel's OOM killer, with the trainer going on: not again and again
    assert _finish_retraining(state, "job-1", alone)["outcome"] == "failed"
    assert state.get_job("job-1").retrain_handled_at == "2026-12-07T10:00:01.000Z"


def test_a_retraining_whose_process_cannot_start_is_a_failed_one_and_the_trainer_goes_on():
    from easyrec_online.core.config import Settings
    from easyrec_online.modeling.continuous import _start_retraining
    from easyrec_online.modeling.growth import FreshAuc, RetrainingState

    state, old = _retraining_world()
    lineage = _Lineage(old)
    lineage.fresh = FreshAuc()

    def no_memory(reason, version_id, overrides):
        raise OSError(12, "Cannot allocate memory")

    run = _start_retraining(Settings.from_env({}), state, None, None, None, "job-1", None, lineage,
                            {"reason": "requested", "new_fields": []}, RetrainingState(), "2026-12-07T10:00:01.000Z",
                            no_memory)
    job = state.get_job("job-1")
    assert run is None and job.retraining is None and job.last_retraining["outcome"] == "failed"
    assert "Cannot allocate memory" in job.last_retraining["error"]


def test_a_retraining_becomes_current_as_its_update_on_what_arrived_while_it_trained():
    from easyrec_online.modeling.continuous import RetrainingRun, _finish_retraining
    from easyrec_online.state.registry import ModelVersion

    state, old = _retraining_world()
    run = RetrainingRun("data grew 8.0x", _Lineage(old), None)
    run.process = _Process()
    run.process.returncode = 0
    state.put_version(ModelVersion("v2", "deepfm-v1", "deepfm", "p/v2/", "2026-12-07T10:00:05.000Z", job_id="job-1",
                                   mode="incremental", num_actions=60))
    state.set_current("v2")  # the old lineage learnt 10 more actions while the retraining ran
    retrained = _new_lineage(run, {"promote": True, "not_current": "the current version is v2, not v1"})
    state.put_version(retrained)
    caught_up = ModelVersion("v-caught", retrained.lineage, "deepfm", "p/v-caught/", "2026-12-07T10:00:09.000Z",
                             job_id="job-1", mode="incremental", parent_version=retrained.version, num_actions=410,
                             num_new_actions=10, gate={"promote": True, "not_current": "registered beside"})
    state.put_version(caught_up)
    summary = _finish_retraining(state, "job-1", run, caught_up=caught_up)
    assert summary["outcome"] == "promoted" and state.pointer()["version"] == "v-caught", summary
    assert summary["version"] == retrained.version and summary["caught_up_version"] == "v-caught"
    assert summary["caught_up_actions"] == 10
    assert state.get_version("v-caught").gate["adopted_over"] == "v2"


def test_no_catch_up_for_a_retraining_that_is_not_to_become_current():
    """_catch_up decides from the records alone, before loading anything, when there is nothing to do."""
    from easyrec_online.core.config import Settings
    from easyrec_online.modeling.continuous import RetrainingRun, _catch_up
    from easyrec_online.state.registry import ModelVersion

    state, old = _retraining_world()
    refused = RetrainingRun("drift", _Lineage(old), None)
    state.put_version(_new_lineage(refused, {"promote": False, "reason": "worse"}, status="rejected"))
    assert _catch_up(Settings.from_env({}), state, None, None, "job-1", None, refused) is None
    unpublished = RetrainingRun("drift", _Lineage(old), None)
    assert _catch_up(Settings.from_env({}), state, None, None, "job-1", None, unpublished) is None
    moved = RetrainingRun("drift", _Lineage(old), None)
    state.put_version(_new_lineage(moved, {"promote": True}))
    state.put_version(ModelVersion("v9", "other-v9", "deepfm", "p/v9/", "2026-12-07T10:00:06.000Z"))
    state.set_current("v9")  # an operator chose another lineage meanwhile
    assert _catch_up(Settings.from_env({}), state, None, None, "job-1", None, moved) is None


def _experiment_with_a_new_lineage_arm(state):
    from easyrec_online.core.config import Settings
    from easyrec_online.experiments.control import ExperimentService
    from easyrec_online.experiments.store import ExperimentDefinitions, InMemoryExperimentLog

    service = ExperimentService(Settings.from_env({}), state, ExperimentDefinitions(state), InMemoryExperimentLog())
    return service.create(ExperimentIn.model_validate({"name": "new model", "arms": [
        {"name": "now", "weight": 50, "strategy": "current"},
        {"name": "wide", "weight": 50, "strategy": {"type": "new_lineage", "model_name": "wide_and_deep",
                                                    "settings": {"TRAIN_STEPS": 40, "LIVE_FEATURES": False}}}]}))


def test_an_experiments_new_lineage_arm_is_trained_with_its_settings_and_never_adopted():
    from easyrec_online.modeling.continuous import _finish_retraining, _start_arm_training, arm_training_due
    from easyrec_online.state.registry import ModelVersion

    state, old = _retraining_world()
    experiment = _experiment_with_a_new_lineage_arm(state)
    version = experiment["arms"][1]["strategy"]["version"]
    assert experiment["arms"][1]["training"] == {"version": version, "status": "waiting for the continuous trainer"}
    due = arm_training_due(state, set())
    assert (due.experiment_id, due.arm, due.version) == (experiment["experiment_id"], "wide", version)
    assert due.environment == {"MODEL_NAME": "wide_and_deep", "TRAIN_STEPS": "40", "LIVE_FEATURES": "false"}
    assert arm_training_due(state, {version}) is None  # tried once by this trainer

    started = []

    def start(reason, version_id, overrides):
        started.append((reason, version_id, overrides))
        return _Process()

    run = _start_arm_training(Settings.from_env({}), state, None, None, None, "job-1", None, _Lineage(old), due, start)
    assert started == [("experiment {}: arm 'wide'".format(due.experiment_id), version,
                        dict(due.environment, RETRAINING_FOR_ARM="1"))]
    assert state.get_job("job-1").retraining["arm"] == "wide"
    # It publishes beside the current version; the trainer records it and does not adopt it.
    state.put_version(ModelVersion(version, "wide_and_deep-" + version, "wide_and_deep", "p/x/", "2026-12-07T10:00:09Z",
                                   mode="full", gate={"promote": True, "not_current": "an experiment's arm"}))
    run.process.returncode = 0
    summary = _finish_retraining(state, "job-1", run)
    assert summary["outcome"] == "trained" and summary["arm"] == "wide" and state.pointer()["version"] == "v1"
    assert arm_training_due(state, set()) is None  # published: nothing left to train


def test_a_new_lineage_arm_that_names_an_unknown_model_or_a_bad_setting_is_a_400():
    import pytest

    from easyrec_online.core.http import ApiError
    from easyrec_online.experiments.control import ExperimentService
    from easyrec_online.experiments.store import ExperimentDefinitions, InMemoryExperimentLog

    state, _ = _retraining_world()
    service = ExperimentService(Settings.from_env({}), state, ExperimentDefinitions(state), InMemoryExperimentLog())
    for strategy, field in (({"type": "new_lineage", "model_name": "gpt"}, "model_name"),
                            ({"type": "new_lineage", "model_name": "deepfm", "settings": {"TRAIN_STEPS": "many"}},
                             "settings")):
        with pytest.raises(ApiError) as caught:
            service.create(ExperimentIn.model_validate({"name": "x", "arms": [
                {"name": "a", "weight": 50, "strategy": "current"}, {"name": "b", "weight": 50, "strategy": strategy}]}))
        assert caught.value.status == 400 and field in caught.value.fields
