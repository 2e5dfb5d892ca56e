"""The model runtime for real: the training task (EasyRec on TF 1.15, Python 3.7) trains on actions
stored in the local cloud and publishes a version; the inference function (also Python 3.7) loads
it and scores. The session's one trained model (conftest `trained_model`) is restored into each
test's own cloud; tests about training train from there."""
import datetime as dt
import json
import os
import subprocess

import pytest

from easyrec_online import wiring
from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.state.registry import TrainingJob, new_id
from tests.conftest import MODEL_PYTHON, ROOT
from tests.integration.runtime import (
    TRAINER_DIR,
    held_out_ids,
    inference_worker,
    manifest,
    preference_actions,
    process_env,
    run_trainer,
    trained_event_ids,
    when_serving,
)

pytestmark = pytest.mark.model_runtime


@pytest.mark.cloud_contract
def test_training_task_publishes_a_registered_version_with_holdout_metrics(trained_cloud, trained_model):
    settings = trained_cloud
    state = wiring.state_store(settings)
    job = state.get_job(trained_model.job_id)
    current = state.get_current()
    assert job.status == "succeeded" and job.outcome == "promoted" and current.version == job.version
    assert current.mode == "full" and current.lineage == "deepfm-" + current.version and current.global_step == 300
    found = manifest(settings, current)
    held = sum(len(v) for v in found["held_out"].values())
    assert 30 <= held <= 100 and job.num_actions == current.num_new_actions == 600 - held
    assert current.metrics["num_eval_rows"] >= held  # the held-out actions and their sampled negatives
    assert current.metrics["auc"] > 0.75, current.metrics
    keys = {o["Key"][len(current.s3_prefix):] for o in
            aws.client("s3", settings).list_objects_v2(Bucket=settings.data_bucket, Prefix=current.s3_prefix)["Contents"]}
    assert {"saved_model/saved_model.pb", "pipeline.config", "metrics.json", "manifest.json", "catalog.json",
            "checkpoint/checkpoint", "checkpoint/model.ckpt-300.index"} <= keys
    assert len(found["keys"]) == 6


@pytest.fixture
def inference(trained_cloud, tmp_path):
    with inference_worker(trained_cloud, tmp_path) as call:
        yield call


@pytest.mark.cloud_contract
def test_inference_function_scores_with_the_current_version(trained_cloud, inference, tmp_path):
    settings = trained_cloud
    # user 4 prefers even items: they must rank first
    status, body = inference("/recommend", {"user_id": 4, "candidate_items": ["item-{}".format(i) for i in range(10)],
                                            "top_k": 5})
    assert status == 200, body
    version = wiring.state_store(settings).get_current().version
    assert body["model_version"] == version and len(body["recommendations"]) == 5
    ranked = [r["item_id"] for r in body["recommendations"]]
    assert sum(int(item.split("-")[1]) % 2 == 0 for item in ranked) >= 4, body
    assert all(0.0 < r["score"] < 1.0 for r in body["recommendations"])
    recommended = body["recommendations"]

    # /predict scores the same pairs as /recommend did, and on the whole prefers user 4's even items.
    pairs = [{"user_id": 4, "item_id": "item-{}".format(i)} for i in range(10)]
    status, body = inference("/predict", {"pairs": pairs})
    assert status == 200 and [p["item_id"] for p in body["predictions"]] == [p["item_id"] for p in pairs], body
    predicted = {p["item_id"]: p["score"] for p in body["predictions"]}
    # float32 scores: the same pair in another batch can differ in the last bits (2e-6 relative in one CI run)
    for r in recommended:
        assert predicted[r["item_id"]] == pytest.approx(r["score"], rel=1e-4), (r, predicted)
    even = [s for item, s in predicted.items() if int(item.split("-")[1]) % 2 == 0]
    odd = [s for item, s in predicted.items() if int(item.split("-")[1]) % 2 == 1]
    assert sum(even) / len(even) > sum(odd) / len(odd), predicted

    # Users and items the version never trained on: the model scores them as new ones (COLD_START_RATE,
    # a blank id inside the graph), flagged.
    assert wiring.state_store(settings).get_current().serving_defaults["cold_start_rate"] == "0.1"
    status, body = inference("/predict", {"user_id": "newcomer", "item_ids": ["item-2", "item-3", "no-such-item"]})
    assert status == 200 and all(p["cold_start"] for p in body["predictions"]), body
    scores = [p["score"] for p in body["predictions"]]
    assert all(0.0 < s < 1.0 for s in scores) and scores[0] != scores[1], body
    status, body = inference("/predict", {"user_id": 4, "item_ids": ["item-2", "no-such-item"]})
    assert status == 200 and [p.get("cold_start", False) for p in body["predictions"]] == [False, True], body
    assert 0.0 < body["predictions"][1]["score"] < 1.0

    status, body = inference("/recommend", {"user_id": 4, "candidate_items": "item-1"})
    assert status == 400 and body["fields"] == ["candidate_items"]
    assert os.path.isdir(str(tmp_path / "model-cache" / version))


def test_incremental_update_learns_a_new_preference_training_each_action_once(trained_cloud, inference, tmp_path):
    settings = trained_cloud
    state = wiring.state_store(settings)
    parent = state.get_current()
    _, before = inference("/predict", {"user_id": 4, "item_id": "item-7"})  # odd item: user 4 dislikes it
    # One purchase an hour: a burst within an hour would train as REPEAT_ACTIONS_MAX rows only.
    now = dt.datetime.now(dt.timezone.utc)
    purchases = [StoredAction.accept(ActionIn.model_validate(
        {"user_id": 4, "item_id": "item-7", "label": 1, "action_type": "purchase", "event_id": "buy-{}".format(k),
         "timestamp": (now - dt.timedelta(hours=k)).isoformat()})) for k in range(40)]
    new_key = wiring.action_store(settings).put_batch(purchases)

    # The gate is tested on its own below; here every candidate is promoted.
    job_id, result = run_trainer(settings, tmp_path, PROMOTION_AUC_TOLERANCE="1.0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    child = state.get_current()
    made = state.get_version(state.get_job(job_id).version)
    assert child.version == made.version and child.mode == "incremental", (made.gate, made.metrics)
    assert child.parent_version == parent.version and child.lineage == parent.lineage
    assert child.global_step > parent.global_step

    after = when_serving(inference, child.version, {"user_id": 4, "item_id": "item-7"})
    assert after["score"] > before["score"] + 0.05, (before, after)
    # The catalog grows with the lineage: every trained action counted once.
    catalog = json.loads(aws.client("s3", settings).get_object(Bucket=settings.data_bucket,
                                                               Key=child.catalog_key)["Body"].read())
    assert catalog["actions"] == child.num_actions and "4" in catalog["users"] and "item-7" in catalog["items"]

    # exactly once per lineage: what the child trained on is new to the lineage, and together with
    # what is still held out for evaluation it is every stored action, with no repeats
    trained_before, trained_now = trained_event_ids(settings, parent), trained_event_ids(settings, child)
    assert len(trained_now) == len(set(trained_now)) and set(trained_before) <= set(trained_now)
    assert len(trained_now) - len(trained_before) == child.num_new_actions
    held_by_parent = held_out_ids(settings, parent)
    assert held_by_parent and held_by_parent <= set(trained_now)  # evaluated on last time, trained now
    held = held_out_ids(settings, child)
    every = {a.event_id for a in wiring.action_store(settings).iter_actions()}
    assert set(trained_now) | held == every and not set(trained_now) & held
    assert new_key in manifest(settings, child)["keys"]


def test_a_candidate_worse_than_the_current_version_is_rejected(trained_cloud, tmp_path):
    settings = trained_cloud
    state = wiring.state_store(settings)
    current = state.get_current()
    # A mixed-label batch to evaluate on: its holdout (fixed event ids) holds both labels, so an AUC exists.
    wiring.action_store(settings).put_batch(preference_actions(300, prefix="more"))
    # A tolerance of -1 demands an AUC one point above the current one: impossible, so rejected.
    job_id, result = run_trainer(settings, tmp_path, PROMOTION_AUC_TOLERANCE="-1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    job = state.get_job(job_id)
    rejected = state.get_version(job.version)
    assert job.outcome == "rejected" and rejected.status == "rejected" and rejected.gate["promote"] is False, rejected.gate
    assert "worse than current version" in rejected.gate["reason"]
    assert state.get_current().version == current.version
    with pytest.raises(ValueError):
        state.set_current(rejected.version)


def test_bad_training_configuration_fails_clearly_and_keeps_serving(trained_cloud, tmp_path):
    settings = trained_cloud
    state = wiring.state_store(settings)
    before = state.get_current().version
    job_id, result = run_trainer(settings, tmp_path, MODEL_NAME="transformer")
    assert result.returncode == 1 and "unknown model 'transformer'" in result.stderr + result.stdout
    job = state.get_job(job_id)
    assert job.status == "failed" and "unknown model 'transformer'" in job.error
    assert state.get_current().version == before


def test_full_training_without_actions_fails_with_a_clear_message(trained_cloud, tmp_path):
    settings = trained_cloud
    empty = Settings.from_env(dict(settings.as_env(), ACTIONS_PREFIX="nothing-here/"))
    before = wiring.state_store(settings).get_current().version
    job_id, result = run_trainer(empty, tmp_path, TRAINING_MODE="full")
    assert result.returncode == 1
    job = wiring.state_store(settings).get_job(job_id)
    assert job.status == "failed" and "not enough stored actions to train: 0" in job.error
    assert wiring.state_store(settings).get_current().version == before


def test_killing_the_training_task_changes_nothing_and_the_next_run_trains_the_same_actions(trained_cloud, tmp_path):
    settings = trained_cloud
    state = wiring.state_store(settings)
    current = state.get_current()
    wiring.action_store(settings).put_batch(preference_actions(100, prefix="late", seed=4))
    pending_before = {a.event_id for a in wiring.action_store(settings).iter_actions()} - set(
        trained_event_ids(settings, current))

    job_id = new_id("job-")
    state.put_job(TrainingJob(job_id, "pending", "t"))
    process = subprocess.Popen([MODEL_PYTHON, "task.py"], cwd=TRAINER_DIR,
                               env=process_env(settings, tmp_path, JOB_ID=job_id),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    for line in iter(process.stdout.readline, b""):  # kill it in the middle of EasyRec's training loop
        seen += line
        if b"global step" in line or b"Saving checkpoints for" in line:
            break
    process.kill()
    process.wait(timeout=30)
    assert b"Saving checkpoints for" in seen or b"global step" in seen, seen[-2000:]
    assert state.get_current().version == current.version
    assert state.get_job(job_id).version is None
    assert [v.job_id for v in state.list_versions()].count(job_id) == 0
    # What the supervisor's reconciliation records for a task that vanished; it frees the trainer lease.
    state.update_job(job_id, status="failed", error="task no longer exists")

    # An incremental run (not a drift retrain: that one trains everything again, test below).
    job_id, result = run_trainer(settings, tmp_path, PROMOTION_AUC_TOLERANCE="1.0", AUTO_RETRAIN_AUC_THRESHOLD="0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    child = state.get_version(state.get_job(job_id).version)
    assert child.mode == "incremental"
    trained_now = set(trained_event_ids(settings, child))
    held = held_out_ids(settings, child)
    assert trained_now - set(trained_event_ids(settings, current)) | held == pending_before


def test_an_automatic_update_on_drifted_actions_becomes_a_full_retrain(trained_cloud, tmp_path):
    settings = trained_cloud
    state = wiring.state_store(settings)
    current = state.get_current()
    # Tastes flip: users now prefer items of the other parity, so the current model's AUC on the
    # fresh actions collapses (0.05 on this holdout: the live CF features read the users' flipped
    # actions too, which only helps the current version) and the update retrains from scratch.
    wiring.action_store(settings).put_batch(preference_actions(300, prefix="flip", flipped=True))
    job_id, result = run_trainer(settings, tmp_path, PROMOTION_AUC_TOLERANCE="1.0", AUTO_RETRAIN_AUC_THRESHOLD="0.5")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    retrained = state.get_version(state.get_job(job_id).version)
    assert retrained.mode == "full", "\n".join(l[-250:] for l in result.stderr.splitlines() if "job-" in l or "AUC" in l)
    assert retrained.lineage != current.lineage and retrained.lineage.endswith(retrained.version)
    print("drift gate:", retrained.gate["retrain"])
    assert retrained.gate["retrain"]["current_auc_on_fresh_actions"] < 0.5
    assert state.get_current().version == retrained.version


def test_the_easyrec_adapter_matches_the_pinned_and_installed_easyrec():
    """modeling/easyrec.py drives EasyRec internals: a changed pin (or a changed private function) must
    fail here, loudly, rather than somewhere inside a training run."""
    with open(os.path.join(ROOT, "infra", "model-runtime", "requirements.txt")) as f:
        pinned = [line.split("==", 1)[1].strip() for line in f if line.startswith("pai-easy-rec==")]
    check = ("import importlib, json\n"
             "from easyrec_online.modeling import easyrec\n"
             "easyrec.check_pinned()\n"
             "missing = []\n"
             "for module, path in easyrec.PRIVATE_API:\n"
             "    obj = importlib.import_module(module)\n"
             "    for part in path.split('.'):\n"
             "        obj = getattr(obj, part, None)\n"
             "    if not callable(obj): missing.append(module + '.' + path)\n"
             "print(json.dumps({'pin': easyrec.EASYREC_VERSION, 'missing': missing}))\n")
    result = subprocess.run([MODEL_PYTHON, "-c", check], capture_output=True, text=True, timeout=120,
                            env={"PATH": os.environ["PATH"], "PYTHONPATH": os.path.join(ROOT, "shared"),
                                 "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert pinned == [found["pin"]], "infra/model-runtime/requirements.txt pins {}, the adapter {}".format(pinned, found)
    assert found["missing"] == [], "EasyRec internals the adapter calls are gone: {}".format(found["missing"])
