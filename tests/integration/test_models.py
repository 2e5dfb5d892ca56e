"""Every ranking model the service offers trains and exports from the same stored actions, through
the real training task (EasyRec on TF 1.15), chosen by configuration alone (MODEL_NAME)."""
import pytest

from easyrec_online import wiring
from easyrec_online.core import aws
from tests.integration.conftest import make_cloud
from tests.integration.runtime import inference_worker, preference_actions, run_trainer, store_in_batches

pytestmark = pytest.mark.model_runtime


@pytest.fixture(scope="module")
def stored(moto_endpoint):
    # Explicit likes and dislikes (user/item parity): the AUC below measures liked-vs-disliked, so no
    # sampled unseen items beside them (NEGATIVE_SAMPLING=always blurs the parity signal in 150 steps).
    settings = make_cloud(moto_endpoint, TRAIN_STEPS="150", NEGATIVE_SAMPLING="auto")
    # Every user-item pair about 4 times: AutoInt (with Adam) too learns it in 150 steps.
    store_in_batches(settings, preference_actions(1600))
    return settings


@pytest.mark.parametrize("model", ["wide_and_deep", "dcn", "autoint", "dssm", "mind", "mmoe"])
def test_model_trains_and_exports(stored, model, tmp_path):
    job_id, result = run_trainer(stored, tmp_path, MODEL_NAME=model, TRAINING_MODE="full",
                                  PROMOTION_AUC_TOLERANCE="1.0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = wiring.state_store(stored)
    version = state.get_version(state.get_job(job_id).version)
    assert version.model_name == model and version.lineage.startswith(model + "-") and version.global_step == 150
    assert version.metrics["auc"] > 0.5, version.metrics
    keys = [o["Key"] for o in aws.client("s3", stored).list_objects_v2(
        Bucket=stored.data_bucket, Prefix=version.saved_model_prefix)["Contents"]]
    assert version.saved_model_prefix + "saved_model.pb" in keys
    assert state.get_current().version == version.version
    if model in ("dssm", "mind"):  # matching models: their SavedModels also serve both towers' embeddings
        graph = aws.client("s3", stored).get_object(Bucket=stored.data_bucket,
                                                    Key=version.saved_model_prefix + "saved_model.pb")["Body"].read()
        assert b"user_emb" in graph and b"item_emb" in graph
        # Without candidate_items, candidates come from embedding retrieval over the catalog.
        with inference_worker(stored, tmp_path) as inference:
            status, body = inference("/recommend", {"user_id": 4, "top_k": 5,
                                                    "filters": {"exclude_acted_on": False}})
        assert status == 200 and body["candidate_sources"][0] == "retrieval", body
        assert len(body["recommendations"]) == 5 and not any(r.get("cold_start") for r in body["recommendations"])
    if model == "mmoe":  # multi-task: engagement (served) and conversion heads
        graph = aws.client("s3", stored).get_object(Bucket=stored.data_bucket,
                                                    Key=version.saved_model_prefix + "saved_model.pb")["Body"].read()
        assert b"probs_main" in graph and b"probs_convert" in graph


def test_unparseable_configuration_fails_the_job_with_a_clear_message(stored, tmp_path):
    job_id, result = run_trainer(stored, tmp_path, TRAIN_STEPS="many")
    assert result.returncode == 2 and "invalid value for TRAIN_STEPS" in result.stderr
    job = wiring.state_store(stored).get_job(job_id)
    assert job.status == "failed" and "bad configuration: invalid value for TRAIN_STEPS: 'many'" in job.error
