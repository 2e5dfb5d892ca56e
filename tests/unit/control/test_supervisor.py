import datetime as dt

from easyrec_online.control.launcher import InMemoryTrainingLauncher, TaskState
from easyrec_online.control.supervisor import RestartPolicyPatch, TrainingSupervisor, get_policy, patch_policy
from easyrec_online.control.training import TrainingService
from easyrec_online.core.config import Settings
from easyrec_online.state.registry import InMemoryStateStore

ON = Settings.from_env({"CONTINUOUS_TRAINING": "true"})


def _setup(settings=ON):
    state, launcher = InMemoryStateStore(), InMemoryTrainingLauncher()
    training = TrainingService(state, launcher)
    return state, launcher, training, TrainingSupervisor(settings, state, training)


def _fail(state, launcher, at):
    job = state.latest_job()
    launcher.states[job.task_ref] = TaskState(False, "exit 1")
    state.update_job(job.job_id, status="failed", finished_at=at)


def test_starts_a_continuous_trainer_only_when_on_and_none_runs():
    state, launcher, training, supervisor = _setup(Settings.from_env({}))
    assert supervisor.ensure() is None and launcher.launched == []
    state, launcher, training, supervisor = _setup()
    assert supervisor.ensure().startswith("started") and launcher.launched[0]["mode"] == "continuous"
    assert supervisor.ensure() is None and len(launcher.launched) == 1  # already running


def test_a_stopped_trainer_stays_stopped():
    state, launcher, training, supervisor = _setup()
    supervisor.ensure()
    state.update_job(state.latest_job().job_id, status="running")
    training.stop()
    launcher.states["task-1"] = TaskState(False, "exit 0")
    assert training.status()["status"] == "stopped" and supervisor.ensure() is None


def test_failed_trainer_restarts_with_exponential_backoff_up_to_the_limit_and_never_means_never():
    state, launcher, training, supervisor = _setup()
    patch_policy(state, RestartPolicyPatch(max_restarts=2, backoff_s=10))
    supervisor.ensure()
    t0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)
    _fail(state, launcher, "2026-11-29T12:00:00.000Z")
    assert supervisor.ensure(t0 + dt.timedelta(seconds=5)) is None  # backoff 10 s
    assert supervisor.ensure(t0 + dt.timedelta(seconds=11)) == "restarted"
    _fail(state, launcher, "2026-11-29T12:00:11.000Z")
    assert supervisor.ensure(t0 + dt.timedelta(seconds=25)) is None  # second restart waits 20 s
    assert supervisor.ensure(t0 + dt.timedelta(seconds=32)) == "restarted"
    _fail(state, launcher, "2026-11-29T12:00:32.000Z")
    assert supervisor.ensure(t0 + dt.timedelta(hours=1)) is None  # max_restarts reached
    assert get_policy(state)["restarts"] == 2 and len(launcher.launched) == 3
    patch_policy(state, RestartPolicyPatch(policy="never"))
    assert supervisor.ensure(t0 + dt.timedelta(hours=2)) is None
    patch_policy(state, RestartPolicyPatch(policy="on-failure"))  # resets the count
    assert supervisor.ensure(t0 + dt.timedelta(hours=3)) == "restarted"
