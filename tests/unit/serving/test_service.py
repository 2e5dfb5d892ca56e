"""Request handling of /recommend and /predict. Real TensorFlow scoring is covered by the
integration and e2e suites; here a scorer with known outputs pins down ranking and validation."""
import pytest

from easyrec_online.config import Settings
from easyrec_online.http import ApiError, validate
from easyrec_online.registry import ModelVersion
from easyrec_online.serving.service import PredictRequest, RecommendRequest, ScoringService


class KnownScores:
    """Scores an item by its id's numeric value / 100 (fixed, so rankings are predictable)."""

    def __init__(self):
        self.calls = []

    def score(self, columns):
        self.calls.append(columns)
        return [int(item) / 100.0 for item in columns["item_id"]]


class Models:
    def __init__(self, loaded):
        self.loaded = loaded

    def current(self):
        return self.loaded


VERSION = ModelVersion("v7", "deepfm", "deepfm", "models/deepfm/v7/", "t")


def _service(loaded=(VERSION, None), **env):
    scorer = KnownScores()
    loaded = (loaded[0], scorer) if loaded else None
    return ScoringService(Settings.from_env(env), Models(loaded)), scorer


def test_recommend_ranks_by_score_keeps_seed_shape_and_adds_version():
    service, scorer = _service()
    result = service.recommend(validate(RecommendRequest, {"user_id": 123, "candidate_items": [1, 2, 3, 4, 5],
                                                           "top_k": 3}))
    assert result == {"user_id": 123, "model_version": "v7", "recommendations": [
        {"item_id": 5, "score": 0.05}, {"item_id": 4, "score": 0.04}, {"item_id": 3, "score": 0.03}]}
    assert scorer.calls[0]["user_id"] == ["123"] * 5


def test_top_k_larger_than_candidates_returns_all():
    service, _ = _service()
    result = service.recommend(validate(RecommendRequest, {"user_id": "u", "candidate_items": ["1", "2"], "top_k": 10}))
    assert [r["item_id"] for r in result["recommendations"]] == ["2", "1"]


@pytest.mark.parametrize("body, field", [
    ({"user_id": 1, "candidate_items": [1, 1]}, "candidate_items"),
    ({"user_id": 1, "candidate_items": [1, "1"]}, "candidate_items"),
    ({"user_id": 1, "candidate_items": list(range(6))}, "candidate_items"),
    ({"user_id": 1, "candidate_items": [1], "top_k": 11}, "top_k"),
    ({"user_id": 1, "candidate_items": [1], "top_k": 0}, "top_k"),
    ({"candidate_items": [1]}, "user_id"),
])
def test_recommend_rejects_bad_input(body, field):
    service, scorer = _service(MAX_CANDIDATES="5", MAX_TOP_K="10")
    with pytest.raises(ApiError) as caught:
        service.recommend(validate(RecommendRequest, body))
    assert caught.value.status == 400 and field in caught.value.fields
    assert scorer.calls == []


def test_no_model_is_a_documented_503():
    service, _ = _service(loaded=None)
    with pytest.raises(ApiError) as caught:
        service.recommend(validate(RecommendRequest, {"user_id": 1, "candidate_items": [1]}))
    assert caught.value.status == 503 and caught.value.error == "no_model"
    assert "POST /online/training/start" in caught.value.detail


def test_scoring_failure_is_never_a_200():
    class Broken:
        def score(self, columns):
            raise RuntimeError("graph exploded")

    service = ScoringService(Settings.from_env({}), Models((VERSION, Broken())))
    with pytest.raises(ApiError) as caught:
        service.recommend(validate(RecommendRequest, {"user_id": 1, "candidate_items": [1]}))
    assert caught.value.status == 500 and caught.value.error == "scoring_failed"


def test_predict_forms():
    service, _ = _service()
    assert service.predict(validate(PredictRequest, {"user_id": 1, "item_id": 30})) == {
        "user_id": 1, "item_id": 30, "score": 0.3, "model_version": "v7"}
    many = service.predict(validate(PredictRequest, {"user_id": 1, "item_ids": [1, 2]}))
    assert [p["score"] for p in many["predictions"]] == [0.01, 0.02]
    pairs = service.predict(validate(PredictRequest, {"pairs": [{"user_id": 1, "item_id": 3}, {"user_id": 2, "item_id": 4}]}))
    assert [(p["user_id"], p["item_id"]) for p in pairs["predictions"]] == [(1, 3), (2, 4)]


@pytest.mark.parametrize("body", [{"user_id": 1}, {"item_id": 1}, {"user_id": 1, "item_id": 1, "item_ids": [2]},
                                  {"user_id": 1, "pairs": [{"user_id": 1, "item_id": 2}]}])
def test_predict_rejects_ambiguous_requests(body):
    service, _ = _service()
    with pytest.raises(ApiError) as caught:
        service.predict(validate(PredictRequest, body))
    assert caught.value.status == 400
