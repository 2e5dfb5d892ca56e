"""The continuous trainer for real (model runtime): started on a lineage (the session's trained model,
restored), it follows newly stored actions with warm incremental updates (graph and session kept
alive, no export), each through the promotion gate, each action trained once; the versions it
publishes load and serve; a stop request ends it between updates; a kill -9 mid-update loses
nothing; a rejected update is not retried on the same actions. (A lineage's first, cold training
by the continuous trainer runs in tests/e2e/test_learning_by_default.py.)"""
import datetime as dt
import os
import signal

import pytest

from easyrec_online import wiring
from easyrec_online.core import aws
from easyrec_online.ingest.actions import ActionIn, StoredAction
from tests.integration.runtime import (
    held_out_ids,
    inference_worker,
    start_continuous_trainer,
    stop_trainer,
    trained_event_ids,
    wait_while_running,
    when_serving,
)

pytestmark = pytest.mark.model_runtime


def _purchases(user, item, count, prefix, spread_hours=True):
    """`count` purchases; one an hour (a burst within an hour trains as REPEAT_ACTIONS_MAX rows only)."""
    now = dt.datetime.now(dt.timezone.utc)
    return [StoredAction.accept(ActionIn.model_validate(
        {"user_id": user, "item_id": item, "label": 1, "action_type": "purchase", "event_id": "{}-{}".format(prefix, k),
         "timestamp": (now - dt.timedelta(hours=k if spread_hours else 0)).isoformat()})) for k in range(count)]


def _new_current(state, *old):
    current = state.get_current()
    return current if current is not None and current.version not in old else None


def _following(state, job_id, version):
    """The trainer has built the lineage's warm graph on `version` (the job's detail says so)."""
    job = state.get_job(job_id)
    return job.detail.get("state") == "following" and job.detail.get("from_version") == version


def test_continuous_trainer_follows_new_actions_with_warm_updates(trained_cloud, tmp_path):
    settings = trained_cloud
    state, store = wiring.state_store(settings), wiring.action_store(settings)
    first = state.get_current()
    job_id, process = start_continuous_trainer(settings, tmp_path, PROMOTION_AUC_TOLERANCE="1.0",
                                               CONTINUOUS_POLL_MS="200", TMPDIR=str(tmp_path))
    try:
        wait_while_running(lambda: _following(state, job_id, first.version), 120, "the trainer to warm up", process)
        with inference_worker(settings, tmp_path) as inference:
            # Scored as purchases: in the lineage's default context (actions without a type) user 4
            # disliked odd items such as item-7, and the update also trains the parent's held-out ones.
            as_purchase = {"user_id": 4, "item_id": "item-7", "context": {"action_type": "purchase"}}
            before = when_serving(inference, first.version, as_purchase)["score"]
            store.put_batch(_purchases(4, "item-7", 60, "buy-a"))
            second = wait_while_running(lambda: _new_current(state, first.version), 120, "a warm update", process)
            assert second.mode == "incremental" and second.parent_version == first.version
            assert second.timings.get("warm") == 1.0 and second.lineage == first.lineage
            assert second.global_step > first.global_step and second.feature_spec == first.feature_spec
            # The warm version is a complete SavedModel: it loads and serves, and it learnt.
            after = when_serving(inference, second.version, as_purchase)["score"]
            print("purchase score of (4, item-7) before / after 60 purchases:", before, after)
            assert after > before + 0.05, (before, after)
            # The first update already replayed: the trainer seeded its replay sample from the lineage's stored one.
            assert 0 < second.num_replayed_rows <= second.num_train_rows, second.num_replayed_rows

            # The next update replays rows the lineage trained on beside its own new ones (INCREMENTAL_REPLAY
            # 1.0: as many as it has new rows, from the kept versions' rows).
            store.put_batch(_purchases(5, "item-2", 40, "buy-b"))
            third = wait_while_running(lambda: _new_current(state, first.version, second.version), 120,
                                       "a second warm update", process)
            assert third.parent_version == second.version and 0 < third.num_replayed_rows <= third.num_train_rows, (
                third.num_train_rows, third.num_replayed_rows)

        trained = trained_event_ids(settings, third)
        held = held_out_ids(settings, third)
        every = {a.event_id for a in store.iter_actions()}
        assert len(trained) == len(set(trained)) and set(trained) | held == every and not set(trained) & held
        print("warm update timings:", second.timings, third.timings)
        # Only the current version stays on the trainer's disk (the earlier ones' files are gone).
        workdir, = tmp_path.glob("easyrec-warm-*")
        assert sorted(p.name for p in workdir.iterdir() if p.name.startswith(("ckpt-", "saved-"))) == [
            "ckpt-" + third.version]

        stop_trainer(settings, job_id, process)
        job = state.get_job(job_id)
        assert job.status == "stopped" and job.version == third.version
    finally:
        if process.poll() is None:
            process.kill()


def test_killing_the_trainer_mid_update_loses_nothing_and_trains_each_action_once(trained_cloud, tmp_path):
    settings = trained_cloud
    state, store = wiring.state_store(settings), wiring.action_store(settings)
    first = state.get_current()
    killed_job, process = start_continuous_trainer(settings, tmp_path, PROMOTION_AUC_TOLERANCE="1.0",
                                                   CONTINUOUS_POLL_MS="100", TMPDIR=str(tmp_path))
    try:
        wait_while_running(lambda: _following(state, killed_job, first.version), 120, "the trainer to warm up", process)
        store.put_batch(_purchases(4, "item-7", 200, "burst", spread_hours=False))
        # Killed inside the update: once it saved the candidate's checkpoint, while it evaluates,
        # uploads and publishes (whichever of those the kill meets, the outcome below is the same).
        wait_while_running(lambda: [p for p in tmp_path.glob("easyrec-warm-*/ckpt-*")
                                    if p.name != "ckpt-" + first.version], 120, "the update's checkpoint", process)
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
    job_id, process = start_continuous_trainer(settings, tmp_path, PROMOTION_AUC_TOLERANCE="1.0",
                                               CONTINUOUS_POLL_MS="100")
    every = {a.event_id for a in store.iter_actions()}
    try:
        def covers_everything():
            version = state.get_current()
            if version.version == first.version:
                return None
            trained = trained_event_ids(settings, version)
            held = held_out_ids(settings, version)
            return (version, trained, held) if set(trained) | held == every else None

        version, trained, held = wait_while_running(covers_everything, 120, "a version covering every action", process)
        assert len(trained) == len(set(trained)) and not set(trained) & held  # each action trained once
        # The restarted trainer's memory started empty; its replay sample came from the lineage's stored one.
        assert version.num_replayed_rows > 0, version.num_replayed_rows
        stop_trainer(settings, job_id, process)
    finally:
        if process.poll() is None:
            process.kill()


def test_a_rejected_update_waits_for_new_actions_instead_of_retrying(trained_cloud, tmp_path):
    settings = trained_cloud
    state, store = wiring.state_store(settings), wiring.action_store(settings)
    first = state.get_current()
    # Every update is rejected: a candidate must beat the current version's holdout AUC by 1.
    job_id, process = start_continuous_trainer(settings, tmp_path, PROMOTION_AUC_TOLERANCE="-1",
                                               CONTINUOUS_POLL_MS="100")

    def versions():
        return [v for v in state.list_versions() if v.version != first.version]

    try:
        store.put_batch(_purchases(3, "item-5", 30, "rejected-a"))
        wait_while_running(lambda: [v for v in versions() if v.status == "rejected"], 120, "a rejected update", process)
        # The trainer looked again after its backoff and found only the actions it was rejected on.
        detail = wait_while_running(lambda: (lambda d: d if d.get("backoff_over_at") else None)(
            state.get_job(job_id).detail), 60, "the backoff to run out", process)
        assert detail["state"] == "waiting_for_new_actions" and detail["rejected_in_a_row"] == 1, detail
        assert len(versions()) == 1, versions()  # no retry on the same actions
        store.put_batch(_purchases(4, "item-6", 30, "rejected-b"))
        # The second attempt's holdout may hold one class only (no AUC to compare), and is then promoted:
        # any new version record is the attempt.
        wait_while_running(lambda: len(versions()) == 2, 120, "a second attempt once new actions came", process)
        stop_trainer(settings, job_id, process)
    finally:
        if process.poll() is None:
            process.kill()
