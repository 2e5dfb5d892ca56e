"""The continuous trainer for real (model runtime): it starts a lineage with a cold full training,
then follows newly stored actions with warm incremental updates (graph and session kept alive,
no export), each through the promotion gate, each action trained once; the versions it publishes
load and serve; a stop request ends it between updates."""
import datetime as dt
import os
import subprocess
import time

import pytest

from easyrec_online import wiring
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.state.registry import TrainingJob, new_id
from tests.conftest import MODEL_PYTHON, ROOT
from tests.integration.conftest import make_cloud
from tests.integration.test_model_runtime import (
    _manifest,
    _process_env,
    _trained_event_ids,
    inference_worker,
    preference_actions,
)

pytestmark = pytest.mark.model_runtime


def _wait(predicate, timeout_s, what, process):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert process.poll() is None, "trainer exited: " + process.stdout.read()[-3000:]
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def test_continuous_trainer_follows_new_actions_with_warm_updates(moto_endpoint, tmp_path):
    settings = make_cloud(moto_endpoint, TRAIN_STEPS="200", PROMOTION_AUC_TOLERANCE="1.0", CONTINUOUS_POLL_MS="200")
    state, store = wiring.state_store(settings), wiring.action_store(settings)
    for start in range(0, 600, 100):
        store.put_batch(preference_actions()[start:start + 100])
    job_id = new_id("job-")
    state.put_job(TrainingJob(job_id, "pending", "t", mode="continuous"))
    process = subprocess.Popen([MODEL_PYTHON, "task.py"], cwd=os.path.join(ROOT, "functions", "trainer"),
                               env=_process_env(settings, tmp_path, JOB_ID=job_id, TRAINING_MODE="continuous",
                                                TMPDIR=str(tmp_path)),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = _wait(state.get_current, 300, "the first (full) version", process)
        assert first.mode == "full" and state.get_job(job_id).status == "running"

        before = None
        with inference_worker(settings, tmp_path) as inference:
            # Scored as purchases: in the lineage's default context (actions without a type) user 4
            # disliked odd items such as item-7, and the update also trains the parent's held-out ones.
            as_purchase = {"user_id": 4, "item_id": "item-7", "context": {"action_type": "purchase"}}
            before = inference("/predict", as_purchase)[1]["score"]
            # One purchase an hour: a burst within an hour trains as REPEAT_ACTIONS_MAX rows only.
            now = dt.datetime.now(dt.timezone.utc)
            purchases = [StoredAction.accept(ActionIn.model_validate(
                {"user_id": 4, "item_id": "item-7", "label": 1, "action_type": "purchase",
                 "timestamp": (now - dt.timedelta(hours=k)).isoformat()})) for k in range(60)]
            store.put_batch(purchases)
            second = _wait(lambda: (lambda c: c if c.version != first.version else None)(state.get_current()),
                           120, "a warm update", process)
            assert second.mode == "incremental" and second.parent_version == first.version
            assert second.timings.get("warm") == 1.0 and second.lineage == first.lineage
            assert second.global_step > first.global_step and second.feature_spec == first.feature_spec
            # The warm version is a complete SavedModel: it loads and serves, and it learnt.
            deadline = time.monotonic() + 30
            while True:
                status, body = inference("/predict", as_purchase)
                if body.get("model_version") == second.version or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert status == 200 and body["model_version"] == second.version, body
            print("purchase score of (4, item-7) before / after 60 purchases:", before, body["score"])
            assert body["score"] > before + 0.05, (before, body)

            # The next update replays rows the lineage trained on beside its own new ones (INCREMENTAL_REPLAY
            # 1.0: as many as it has new rows, from the kept versions' rows).
            store.put_batch([StoredAction.accept(ActionIn.model_validate(
                {"user_id": 5, "item_id": "item-2", "label": 1, "action_type": "purchase"})) for _ in range(40)])
            third = _wait(lambda: (lambda c: c if c.version not in (first.version, second.version) else None)(
                state.get_current()), 120, "a second warm update", process)
            assert third.parent_version == second.version and 0 < third.num_replayed_rows <= third.num_train_rows, (
                third.num_train_rows, third.num_replayed_rows)
            # The first update already replayed: the full training stored a sample of its rows with the lineage.
            assert 0 < second.num_replayed_rows <= second.num_train_rows, second.num_replayed_rows

        trained = _trained_event_ids(settings, third)
        held = {e for ids in _manifest(settings, third)["held_out"].values() for e in ids}
        every = {a.event_id for a in store.iter_actions()}
        assert len(trained) == len(set(trained)) and set(trained) | held == every and not set(trained) & held
        print("warm update timings:", second.timings, third.timings)
        # Only the current version stays on the trainer's disk (the earlier ones' files are gone).
        workdir, = tmp_path.glob("easyrec-warm-*")
        assert sorted(p.name for p in workdir.iterdir() if p.name.startswith(("ckpt-", "saved-"))) == [
            "ckpt-" + third.version]

        state.update_job(job_id, status="stopping")
        assert process.wait(timeout=60) == 0
        job = state.get_job(job_id)
        assert job.status == "stopped" and job.version == third.version
    finally:
        if process.poll() is None:
            process.kill()


def _start_trainer(settings, tmp_path):
    job_id = new_id("job-")
    wiring.state_store(settings).put_job(TrainingJob(job_id, "pending", "t", mode="continuous"))
    process = subprocess.Popen([MODEL_PYTHON, "task.py"], cwd=os.path.join(ROOT, "functions", "trainer"),
                               env=_process_env(settings, tmp_path, JOB_ID=job_id, TRAINING_MODE="continuous"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return job_id, process


def test_killing_the_trainer_mid_update_loses_nothing_and_trains_each_action_once(moto_endpoint, tmp_path):
    import random
    import signal

    from easyrec_online.core import aws

    settings = make_cloud(moto_endpoint, TRAIN_STEPS="100", PROMOTION_AUC_TOLERANCE="1.0", CONTINUOUS_POLL_MS="100")
    state, store = wiring.state_store(settings), wiring.action_store(settings)
    store.put_batch(preference_actions()[:300])
    killed_job, process = _start_trainer(settings, tmp_path)
    try:
        first = _wait(state.get_current, 300, "the first version", process)
        time.sleep(3)  # the lineage's graph is built: the next actions meet a warm trainer
        store.put_batch([StoredAction.accept(ActionIn.model_validate(
            {"user_id": 4, "item_id": "item-7", "label": 1, "action_type": "purchase"})) for _ in range(200)])
        time.sleep(random.Random(7).uniform(0.3, 1.2))  # somewhere inside the update
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    # Whatever the kill interrupted, the current version is whole: its files are all there.
    current = state.get_current()
    keys = {o["Key"] for o in aws.client("s3", settings).list_objects_v2(
        Bucket=settings.data_bucket, Prefix=current.s3_prefix)["Contents"]}
    assert {current.saved_model_prefix + "saved_model.pb", current.saved_model_prefix + "variables/variables.index",
            current.manifest_key} <= keys

    # What the supervisor's reconciliation records for a task that vanished; it frees the trainer lease.
    state.update_job(killed_job, status="failed", error="task no longer exists")
    job_id, process = _start_trainer(settings, tmp_path)
    every = {a.event_id for a in store.iter_actions()}
    try:
        def covers_everything():
            version = state.get_current()
            if version.version == first.version:
                return None
            trained = _trained_event_ids(settings, version)
            held = {e for ids in _manifest(settings, version)["held_out"].values() for e in ids}
            return (version, trained, held) if set(trained) | held == every else None

        version, trained, held = _wait(covers_everything, 120, "a version covering every action", process)
        assert len(trained) == len(set(trained)) and not set(trained) & held  # each action trained once
        # The restarted trainer's memory started empty; its replay sample came from the lineage's stored one.
        assert version.num_replayed_rows > 0, version.num_replayed_rows
        state.update_job(job_id, status="stopping")
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
