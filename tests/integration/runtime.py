"""Driving the model runtime (Python 3.7, TensorFlow 1.15, EasyRec) from the tests, for real: the
training task as a process on the local cloud, the inference function in a warm worker, and the
synthetic actions the model-runtime tests learn from (with fixed event ids, so that the holdout, a
hash of the event id, is the same on every run and holds both labels)."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import subprocess
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple

from easyrec_online import wiring
from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.state.registry import ModelVersion, TrainingJob, new_id
from infra.local_runner.gateway import build_event
from infra.local_runner.template import Route
from infra.local_runner.workers import Worker
from tests.conftest import MODEL_PYTHON, ROOT

TRAINER_DIR = os.path.join(ROOT, "functions", "trainer")


def process_env(settings: Settings, tmp: Any, **extra: str) -> dict:
    """The environment of a model-runtime process on this test's cloud. One TensorFlow thread per pool:
    two test workers share two cores, and a session's own pool of two would make them fight."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": os.path.join(ROOT, "shared"),
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "TF_CPP_MIN_LOG_LEVEL": "2",
           "POWERTOOLS_TRACE_DISABLED": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    env.update(settings.as_env())
    env["MODEL_CACHE_DIR"] = str(os.path.join(str(tmp), "model-cache"))  # the settings' default is a shared /tmp path
    env.update(extra)
    return env


def run_trainer(settings: Settings, tmp: Any, **env: str) -> Tuple[str, subprocess.CompletedProcess]:
    """One training task run to its end (a one-shot job): (job id, the finished process)."""
    job_id = new_id("job-")
    wiring.state_store(settings).put_job(TrainingJob(job_id, "pending", "t"))
    result = subprocess.run([MODEL_PYTHON, "task.py"], cwd=TRAINER_DIR, env=process_env(settings, tmp, JOB_ID=job_id, **env),
                            capture_output=True, text=True, timeout=600)
    return job_id, result


def start_continuous_trainer(settings: Settings, tmp: Any, **env: str) -> Tuple[str, subprocess.Popen]:
    """A continuous trainer task, running in its own session (so that a kill takes its whole group)."""
    job_id = new_id("job-")
    wiring.state_store(settings).put_job(TrainingJob(job_id, "pending", "t", mode="continuous"))
    process = subprocess.Popen([MODEL_PYTHON, "task.py"], cwd=TRAINER_DIR,
                               env=process_env(settings, tmp, JOB_ID=job_id, TRAINING_MODE="continuous", **env),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return job_id, process


def wait_while_running(predicate: Callable[[], Any], timeout_s: float, what: str, process: subprocess.Popen) -> Any:
    """predicate()'s first truthy value, polled while `process` runs (its output shown if it ended)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert process.poll() is None, "trainer exited: " + process.stdout.read()[-3000:]
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def stop_trainer(settings: Settings, job_id: str, process: subprocess.Popen) -> None:
    """Ask a continuous trainer to stop (as POST /online/training/stop does) and wait for it."""
    wiring.state_store(settings).update_job(job_id, status="stopping")
    assert process.wait(timeout=60) == 0, process.stdout.read()[-3000:]


def manifest(settings: Settings, version: ModelVersion) -> dict:
    return json.loads(aws.client("s3", settings).get_object(Bucket=settings.data_bucket,
                                                            Key=version.manifest_key)["Body"].read())


def held_out_ids(settings: Settings, version: ModelVersion) -> set:
    return {e for ids in manifest(settings, version)["held_out"].values() for e in ids}


def trained_event_ids(settings: Settings, version: ModelVersion) -> List[str]:
    """Every action the lineage has trained on up to `version`: consumed objects minus held-out ones."""
    found = manifest(settings, version)
    store = wiring.action_store(settings)
    held = {e for ids in found["held_out"].values() for e in ids}
    return [a.event_id for key in found["keys"] for a in store.read(key) if a.event_id not in held]


# Test actions happen at fixed moments: the hour and weekday are features, and the live features
# (trends) depend on times, so actions stamped "now" would train another model at another hour.
EPOCH = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.timezone.utc)


def preference_actions(count: int = 600, prefix: str = "pref", seed: int = 3, flipped: bool = False,
                       start: dt.datetime = EPOCH) -> List[StoredAction]:
    """Users prefer items of their own parity (`flipped`: of the other one): a pattern only user-item
    interactions can learn. Event ids `<prefix>-<n>` and times from `start`, 10 s apart: the same
    actions, the same holdout (a hash of the event id) and the same trained model on every run."""
    rng = random.Random(seed)
    actions = []
    for n in range(count):
        user, item = rng.randrange(20), rng.randrange(20)
        liked = (user + item) % 2 == 0
        moment = start + dt.timedelta(seconds=10 * n)
        actions.append(StoredAction.accept(ActionIn.model_validate(
            {"user_id": user, "item_id": "item-{}".format(item), "label": int(liked != flipped),
             "event_id": "{}-{}".format(prefix, n)}), now=moment))
    return actions


def store_in_batches(settings: Settings, actions: List[StoredAction], size: int = 100) -> List[str]:
    store = wiring.action_store(settings)
    return [store.put_batch(actions[start:start + size]) for start in range(0, len(actions), size)]


@contextlib.contextmanager
def inference_worker(settings: Settings, tmp: Any) -> Iterator[Callable[[str, dict], Tuple[int, dict]]]:
    """The inference function in its own model-runtime process; yields call(path, body) -> (status, body)."""
    env = process_env(settings, tmp, AWS_LAMBDA_FUNCTION_NAME="InferenceFunction", AWS_LAMBDA_FUNCTION_TIMEOUT="30",
                      CURRENT_CHECK_INTERVAL_MS="0")
    worker = Worker("InferenceFunction", MODEL_PYTHON, os.path.join(ROOT, "functions", "inference"), "app.app", env)
    worker.start()

    def call(path: str, body: dict) -> Tuple[int, dict]:
        event = build_event(Route("POST", path, "InferenceFunction"), "POST", path, "",
                            {"content-type": ["application/json"]}, json.dumps(body).encode(), {}, "dev", "127.0.0.1")
        response = worker.invoke(event, 60)
        return response["statusCode"], json.loads(response["body"])

    try:
        yield call
    finally:
        worker.stop()


def when_serving(inference: Callable[[str, dict], Tuple[int, dict]], version: str, request: dict,
                 timeout_s: float = 30.0, path: str = "/predict") -> dict:
    """The inference function's answer once it serves `version` (it swaps versions in the background)."""
    deadline = time.monotonic() + timeout_s
    body: Optional[dict] = None
    while time.monotonic() < deadline:
        status, body = inference(path, request)
        assert status == 200, body
        if body["model_version"] == version:
            return body
        time.sleep(0.1)
    raise AssertionError("the inference function did not serve {} within {} s: {}".format(version, timeout_s, body))
