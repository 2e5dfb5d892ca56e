import datetime as dt

from easyrec_online.control.launcher import InMemoryTrainingLauncher, TaskState
from easyrec_online.control.supervisor import RestartPolicyPatch, TrainingSupervisor, get_policy, patch_policy
from easyrec_online.control.training import TrainingService
from easyrec_online.core.config import Settings
from easyrec_online.state.registry import InMemoryStateStore

ON = Settings.from_env({})  # continuous training is on by default
T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


def _setup(settings=ON):
    state, launcher = InMemoryStateStore(), InMemoryTrainingLauncher()
    training = TrainingService(state, launcher)
    return state, launcher, training, TrainingSupervisor(settings, state, training)


def _end(state, launcher, status, seconds, error="exit 1"):
    """The latest trainer's task ends (its process gone) with its job recorded as `status`."""
    job = state.latest_job()
    launcher.states[job.task_ref] = TaskState(False, error)
    state.update_job(job.job_id, status=status, error=error,
                     finished_at=(T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))


def _at(seconds):
    return T0 + dt.timedelta(seconds=seconds)


def test_learning_is_on_by_default_and_one_trainer_is_started():
    state, launcher, training, supervisor = _setup()
    assert supervisor.ensure().startswith("started") and launcher.launched[0]["mode"] == "continuous"
    assert supervisor.ensure() is None and len(launcher.launched) == 1  # already running
    state, launcher, training, supervisor = _setup(Settings.from_env({"CONTINUOUS_TRAINING": "false"}))
    assert supervisor.ensure() is None and launcher.launched == []
    assert supervisor.decide().action == "none"


def test_a_stopped_trainer_stays_stopped():
    state, launcher, training, supervisor = _setup()
    supervisor.ensure()
    state.update_job(state.latest_job().job_id, status="running")
    training.stop()
    launcher.states["task-1"] = TaskState(False, "exit 0")
    assert training.status()["status"] == "stopped" and supervisor.ensure() is None
    assert "stopped on request" in supervisor.decide().reason


def test_an_interrupted_trainer_resumes_at_once_without_counting_a_failure():
    state, launcher, training, supervisor = _setup()
    supervisor.ensure()
    for n in range(3):  # SIGTERM (a deploy, a task retirement, the service restarting), again and again
        _end(state, launcher, "interrupted", n, "SIGTERM")
        assert supervisor.ensure(_at(n)).startswith("resumed")
    assert len(launcher.launched) == 4 and get_policy(state)["restarts"] == 0


def test_a_vanished_task_is_a_failure_and_restarts_after_the_backoff():
    """kill -9 of the trainer: its job still says running, but its task is gone."""
    state, launcher, training, supervisor = _setup()
    supervisor.ensure()
    state.update_job(state.latest_job().job_id, status="running")
    launcher.states["task-1"] = TaskState(False, "killed")
    assert supervisor.decide().action == "wait"  # recorded as failed just now; backoff 10 s
    assert training.status()["job"]["status"] == "failed"
    assert supervisor.ensure(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=11)).startswith("restarted")


def test_failed_trainer_restarts_with_exponential_backoff_up_to_the_limit_and_never_means_never():
    state, launcher, training, supervisor = _setup()
    patch_policy(state, RestartPolicyPatch(max_restarts=2, backoff_s=10))
    supervisor.ensure()
    _end(state, launcher, "failed", 0)
    assert supervisor.ensure(_at(5)) is None  # backoff 10 s
    assert supervisor.decide(_at(5)).action == "wait"
    assert supervisor.ensure(_at(11)).startswith("restarted")
    _end(state, launcher, "failed", 11)
    assert supervisor.ensure(_at(25)) is None  # second restart waits 20 s
    assert supervisor.ensure(_at(32)).startswith("restarted")
    _end(state, launcher, "failed", 32)
    assert supervisor.ensure(_at(3600)) is None  # max_restarts reached
    assert supervisor.decide(_at(3600)).action == "give_up"
    assert get_policy(state)["restarts"] == 2 and len(launcher.launched) == 3
    patch_policy(state, RestartPolicyPatch(policy="never"))
    assert supervisor.ensure(_at(7200)) is None
    patch_policy(state, RestartPolicyPatch(policy="on-failure"))  # resets the count
    assert supervisor.ensure(_at(10800)).startswith("restarted")


def test_always_never_gives_up_where_on_failure_does():
    state, launcher, training, supervisor = _setup()
    patch_policy(state, RestartPolicyPatch(policy="always", max_restarts=1, backoff_s=1))
    supervisor.ensure()
    for n in range(1, 5):
        _end(state, launcher, "failed", 100 * n)
        assert supervisor.ensure(_at(100 * n + 60)).startswith("restarted")
    assert get_policy(state)["restarts"] == 4


def test_the_restart_count_recovers_after_a_healthy_period():
    state, launcher, training, supervisor = _setup()
    patch_policy(state, RestartPolicyPatch(max_restarts=2, backoff_s=1, healthy_after_s=600))
    supervisor.ensure()
    _end(state, launcher, "failed", 0)
    supervisor.ensure(_at(10))
    assert get_policy(state)["restarts"] == 1
    job = state.latest_job()
    state.update_job(job.job_id, status="running", started_at="2026-11-29T12:00:10.000Z")
    supervisor.ensure(_at(300))  # running, but not long enough
    assert get_policy(state)["restarts"] == 1
    supervisor.ensure(_at(700))
    assert get_policy(state)["restarts"] == 0


def test_two_supervisors_deciding_at_once_start_one_trainer_and_count_one_restart():
    state, launcher, training, supervisor = _setup()
    other = TrainingSupervisor(ON, state, TrainingService(state, launcher))
    assert supervisor.ensure().startswith("started")
    assert other.ensure() is None and len(launcher.launched) == 1
    _end(state, launcher, "failed", 0)
    results = [supervisor.ensure(_at(60)), other.ensure(_at(60))]
    assert sum(1 for r in results if r) == 1 and len(launcher.launched) == 2
    assert get_policy(state)["restarts"] == 1
