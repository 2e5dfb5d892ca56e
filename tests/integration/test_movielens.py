"""Real data: a MovieLens-100k subset, stored as actions, trained by the real training task."""
import pytest

from easyrec_online import wiring
from easyrec_online.datasets.movielens import load_movielens_100k
from easyrec_online.ingest.actions import ActionIn, StoredAction
from tests.integration.conftest import make_cloud
from tests.integration.runtime import manifest, run_trainer

pytestmark = pytest.mark.model_runtime


def test_deepfm_learns_from_a_movielens_subset(moto_endpoint, tmp_path):
    settings = make_cloud(moto_endpoint, TRAIN_STEPS="300")
    data = load_movielens_100k(max_users=30)
    actions = [StoredAction.accept(ActionIn.model_validate(sample)) for sample in data.actions]
    store = wiring.action_store(settings)
    for start in range(0, len(actions), 500):
        store.put_batch(actions[start:start + 500])
    job_id, result = run_trainer(settings, tmp_path, TRAINING_MODE="full")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    version = wiring.state_store(settings).get_current()
    held = sum(len(ids) for ids in manifest(settings, version)["held_out"].values())
    assert version.num_actions + held == len(actions)
    assert version.metrics["num_eval_rows"] >= held  # the held-out ratings and their sampled negatives
    assert version.metrics["auc"] > 0.55, version.metrics  # ids alone: item popularity and user taste
