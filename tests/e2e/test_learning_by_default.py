"""The default configuration is the product: a plain `make run` (no flags) learns by itself and keeps
learning. The seed's Quick Start works verbatim with a continuous trainer on; the trainer resumes by
itself after SIGTERM (a task retirement, a deploy), after kill -9, and after the whole service is
restarted; a rejected update does not send it into a hot loop over the same actions."""
import os
import signal
import time

import pytest
import requests

from tests.e2e.conftest import RunningService, seed_commands, wait_for
from tests.e2e.test_quickstart import _json_and_status

pytestmark = pytest.mark.model_runtime

RECOMMEND, ADD_PLAIN, ADD_RATING, ADD_WATERING, STATUS, START = seed_commands()


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default")
    running = RunningService(str(tmp / "state"), str(tmp / "runner.log"), [])  # nothing but the defaults
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


def _status(service):
    return requests.get(service.url + "/online/training/status", timeout=10).json()


def _info(service):
    """The registry's view: GET /model/info does not run the supervisor (GET /online/training/status does)."""
    return requests.get(service.url + "/model/info", timeout=10).json()


def _job_status(service, job_id):
    return requests.get(service.url + "/online/training/logs", params={"job_id": job_id, "lines": 1},
                        timeout=10).json()["status"]


def trainer_pids(job_id):
    """Processes of the training task running `job_id` (the local ECS agent's model-runtime processes)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/{}/environ".format(pid), "rb") as f:
                environ = f.read().split(b"\0")
            with open("/proc/{}/cmdline".format(pid), "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if "JOB_ID={}".format(job_id).encode() in environ and b"task.py" in cmdline:
            found.append(int(pid))
    return found


def _running_trainer(service, other_than=None, timeout_s=120, poll=_status):
    def running():
        answer = poll(service) or {}
        job = answer.get("job") or answer.get("latest_job")
        if job and job["mode"] == "continuous" and job["status"] == "running" and job["job_id"] != other_than \
                and trainer_pids(job["job_id"]):
            return job
        return None

    return wait_for(running, timeout_s, "a running continuous trainer other than {}".format(other_than))


def test_the_seed_quick_start_verbatim_learns_with_no_flags(default):
    body, code = _json_and_status(default.curl(RECOMMEND))
    assert code == 503 and body["error"] == "no_model"
    for command in (ADD_PLAIN, ADD_RATING, ADD_WATERING):
        body, code = _json_and_status(default.curl(command))
        assert code == 200 and body["status"] == "accepted", body
    body, code = _json_and_status(default.curl(STATUS))
    assert code == 200 and body["continuous_training"] is True, body
    assert body["job"]["mode"] == "continuous" and body["status"] in ("pending", "running"), body
    body, code = _json_and_status(default.curl(START))  # with a trainer running: an update now
    assert code == 202 and body["status"] == "started" and body["job"]["mode"] == "continuous", body
    wait_for(lambda: requests.get(default.url + "/health", timeout=10).json()["model_version"], 300,
             "the continuous trainer's first version")

    def served():
        body, code = _json_and_status(default.curl(RECOMMEND))
        return body if code == 200 else None

    body = wait_for(served, 60, "the first version to serve")
    assert set(body) == {"user_id", "recommendations", "model_version"} and len(body["recommendations"]) == 3


def test_sigterm_interrupts_the_trainer_and_it_resumes_at_once(default):
    job = _running_trainer(default)
    for pid in trainer_pids(job["job_id"]):
        os.kill(pid, signal.SIGTERM)  # what ECS sends at a task retirement or a deploy
    resumed = _running_trainer(default, other_than=job["job_id"], timeout_s=120)
    assert _job_status(default, job["job_id"]) == "interrupted"
    status = _status(default)
    assert status["job"]["job_id"] == resumed["job_id"] and status["restart_policy"]["restarts"] == 0, status


def test_kill_9_is_a_failure_and_the_trainer_is_restarted_after_the_backoff(default):
    job = _running_trainer(default)
    for pid in trainer_pids(job["job_id"]):
        os.kill(pid, signal.SIGKILL)
    restarted = _running_trainer(default, other_than=job["job_id"], timeout_s=150)
    assert _job_status(default, job["job_id"]) == "failed"
    status = _status(default)
    assert status["job"]["job_id"] == restarted["job_id"] and status["restart_policy"]["restarts"] == 1, status


def test_the_trainer_resumes_by_itself_after_the_service_restarts(default):
    job = _running_trainer(default)
    assert default.stop() == 0  # Ctrl-C: the runner stops its tasks with SIGTERM
    assert not trainer_pids(job["job_id"])
    default.start()
    # No client call that runs the supervisor: the schedule's first tick resumes the trainer.
    resumed = _running_trainer(default, other_than=job["job_id"], timeout_s=150, poll=_info)
    assert resumed["job_id"] != job["job_id"]
    assert requests.get(default.url + "/health", timeout=10).json()["model_version"]


@pytest.fixture(scope="module")
def rejecting(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rejecting")
    # Every update is rejected: a candidate must beat the current version's holdout AUC by 1.
    running = RunningService(str(tmp / "state"), str(tmp / "runner.log"),
                             ["PROMOTION_AUC_TOLERANCE=-1", "CONTINUOUS_POLL_MS=200", "TRAIN_STEPS=50"])
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


def _versions(service):
    return requests.get(service.url + "/online/updates/list?limit=100", timeout=10).json()["updates"]


def test_a_rejected_update_waits_for_new_actions_instead_of_retrying(rejecting):
    samples = [{"user_id": u, "item_id": "i{}".format((u + k) % 9), "label": int(k % 2 == 0), "action_type": "like"}
               for u in range(20) for k in range(5)]
    assert requests.post(rejecting.url + "/online/data/add", json={"samples": samples}, timeout=30).status_code == 200
    wait_for(lambda: requests.get(rejecting.url + "/health", timeout=10).json()["model_version"], 300,
             "the first version")  # a lineage's first version has nothing to lose against
    purchases = [{"user_id": 3, "item_id": "i5", "action_type": "purchase"} for _ in range(30)]
    assert requests.post(rejecting.url + "/online/data/add", json={"samples": purchases}, timeout=30).status_code == 200
    wait_for(lambda: [v for v in _versions(rejecting) if v["status"] == "rejected"], 120, "a rejected update")
    time.sleep(8)  # no new actions: no new attempt
    rejected = [v for v in _versions(rejecting) if v["status"] == "rejected"]
    assert len(rejected) == 1, rejected
    detail = _status(rejecting)["job"]["detail"]
    assert detail["state"] == "waiting_for_new_actions" and detail["rejected_in_a_row"] == 1, detail
    more = [{"user_id": 4, "item_id": "i6", "action_type": "purchase"} for _ in range(30)]
    assert requests.post(rejecting.url + "/online/data/add", json={"samples": more}, timeout=30).status_code == 200
    # The second attempt's holdout may hold one class only (no AUC to compare), and is then promoted:
    # any new version record is the attempt.
    seen = {v["version"] for v in _versions(rejecting)}
    wait_for(lambda: {v["version"] for v in _versions(rejecting)} - seen, 120,
             "a second attempt once new actions came")
