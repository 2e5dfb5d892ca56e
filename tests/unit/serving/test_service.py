"""Request handling of /recommend and /predict. Real TensorFlow scoring is covered by the
integration and e2e suites; here a scorer with known outputs pins down ranking and validation."""
import dataclasses
import math

import pytest
from pytest import approx

from easyrec_online.artifacts.catalog import Catalog
from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError, validate
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.serving.cache import LoadedModel
from easyrec_online.serving.service import PredictRequest, RecommendRequest, ScoringService
from easyrec_online.state.activity import InMemoryActivityStore
from easyrec_online.state.profiles import InMemoryProfileStore
from easyrec_online.state.registry import ModelVersion
from tests.unit.fakes import FakeScorer


class KnownScores(FakeScorer):
    """Scores an item by its id's numeric value / 100 (fixed, so rankings are predictable)."""

    def __init__(self):
        self.calls = []

    def probabilities(self, columns):
        self.calls.append(columns)
        return [int(item) / 100.0 for item in columns["item_id"]]


class Models:
    def __init__(self, loaded):
        self.loaded = loaded

    def current(self):
        return self.loaded


VERSION = ModelVersion("v7", "deepfm", "deepfm", "models/deepfm/v7/", "t")


def _action(user, item, label=1, action_type="like", timestamp="2026-11-01T00:00:00Z"):
    return StoredAction.accept(ActionIn.model_validate({"user_id": user, "item_id": item, "label": label,
                                                        "action_type": action_type, "timestamp": timestamp}))


def _service(loaded=True, catalog=None, profiles=None, activity=None, **env):
    scorer = KnownScores()
    model = LoadedModel(VERSION, scorer, catalog or Catalog()) if loaded else None
    return ScoringService(Settings.from_env(env), Models(model), profiles, activity), scorer


def test_recommend_ranks_by_score_keeps_seed_shape_and_adds_version():
    service, scorer = _service()
    result = service.recommend(validate(RecommendRequest, {"user_id": 123, "candidate_items": [1, 2, 3, 4, 5],
                                                           "top_k": 3}))
    assert len(result.pop("recommendation_id")) == 32  # every answer has an id, for attribution
    assert result == {"user_id": 123, "model_version": "v7", "recommendations": [
        {"item_id": 5, "score": approx(0.05)}, {"item_id": 4, "score": approx(0.04)},
        {"item_id": 3, "score": approx(0.03)}]}
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
    class Broken(FakeScorer):
        def probabilities(self, columns):
            raise RuntimeError("graph exploded")

    service = ScoringService(Settings.from_env({}), Models(LoadedModel(VERSION, Broken(), Catalog())))
    with pytest.raises(ApiError) as caught:
        service.recommend(validate(RecommendRequest, {"user_id": 1, "candidate_items": [1]}))
    assert caught.value.status == 500 and caught.value.error == "scoring_failed"


def test_predict_forms():
    service, _ = _service()
    assert service.predict(validate(PredictRequest, {"user_id": 1, "item_id": 30})) == {
        "user_id": 1, "item_id": 30, "score": approx(0.3), "model_version": "v7"}
    many = service.predict(validate(PredictRequest, {"user_id": 1, "item_ids": [1, 2]}))
    assert [p["score"] for p in many["predictions"]] == approx([0.01, 0.02])
    pairs = service.predict(validate(PredictRequest, {"pairs": [{"user_id": 1, "item_id": 3}, {"user_id": 2, "item_id": 4}]}))
    assert [(p["user_id"], p["item_id"]) for p in pairs["predictions"]] == [(1, 3), (2, 4)]


@pytest.mark.parametrize("body", [{"user_id": 1}, {"item_id": 1}, {"user_id": 1, "item_id": 1, "item_ids": [2]},
                                  {"user_id": 1, "pairs": [{"user_id": 1, "item_id": 2}]}])
def test_predict_rejects_ambiguous_requests(body):
    service, _ = _service()
    with pytest.raises(ApiError) as caught:
        service.predict(validate(PredictRequest, body))
    assert caught.value.status == 400


def _catalog():
    """Users 1 and 2 trained on items 10..14; item 14 is the most popular, 13 the newest hit."""
    actions = [_action(1, 10), _action(1, 11, 1, "purchase"), _action(2, 12, 0, "view"),
               _action(1, 14), _action(2, 14), _action(2, 11, 0, "view"),
               _action(2, 13, 1, "like", "2026-11-20T00:00:00Z")]
    return Catalog(half_life_hours=24).add(actions)


def test_unknown_users_and_items_get_the_popularity_prior_and_are_flagged():
    catalog = _catalog()
    service, scorer = _service(catalog=catalog)
    result = service.recommend(validate(RecommendRequest, {"user_id": 1, "candidate_items": [12, 99], "top_k": 2}))
    by_item = {r["item_id"]: r for r in result["recommendations"]}
    assert by_item[12] == {"item_id": 12, "score": approx(0.12)}  # known pair: the model's score, no flag
    assert by_item[99] == {"item_id": 99, "score": catalog.base_rate, "cold_start": True}
    assert scorer.calls[-1]["item_id"] == ["12"]  # the model never saw the unknown item
    stranger = service.predict(validate(PredictRequest, {"user_id": "new", "item_id": 14}))
    assert stranger["cold_start"] is True and stranger["score"] == pytest.approx(catalog.prior(14))
    assert catalog.prior(14) > catalog.prior(12) > 0  # 2 positives of 2 beats 0 of 1


def test_a_lineage_that_learnt_cold_start_scores_new_users_and_items_with_the_model():
    import dataclasses

    class NewAware(KnownScores):
        """A blank item id (a new item) scores 0.5."""

        def probabilities(self, columns):
            self.calls.append(columns)
            return [int(item) / 100.0 if item else 0.5 for item in columns["item_id"]]

    catalog = _catalog()
    learnt = dataclasses.replace(VERSION, serving_defaults={"cold_start_rate": "0.1"})
    scorer = NewAware()
    service = ScoringService(Settings.from_env({}), Models(LoadedModel(learnt, scorer, catalog)))
    result = service.predict(validate(PredictRequest, {"user_id": "new", "item_ids": [14, 99]}))
    assert result["predictions"] == [
        {"user_id": "new", "item_id": 14, "score": 0.14, "cold_start": True},  # the model, as a new user
        {"user_id": "new", "item_id": 99, "score": 0.5, "cold_start": True}]  # ... and a new item
    assert scorer.calls[-1]["user_id"] == ["", ""] and scorer.calls[-1]["item_id"] == ["14", ""]
    mixed = service.predict(validate(PredictRequest, {"pairs": [{"user_id": 1, "item_id": 12},
                                                                {"user_id": "new", "item_id": 12},
                                                                {"user_id": 1, "item_id": 99}]}))
    assert [p.get("cold_start", False) for p in mixed["predictions"]] == [False, True, True]
    assert scorer.calls[-1]["user_id"] == ["1", "", "1"] and scorer.calls[-1]["item_id"] == ["12", "12", ""]
    ranked = service.recommend(validate(RecommendRequest, {"user_id": 1, "candidate_items": [12, 14, 99],
                                                           "top_k": 2}))
    assert [(r["item_id"], r["score"]) for r in ranked["recommendations"]] == [(99, 0.5), (14, 0.14)]


def test_without_candidates_the_catalog_supplies_popular_and_trending_items_minus_those_acted_on():
    service, _ = _service(catalog=_catalog())
    result = service.recommend(validate(RecommendRequest, {"user_id": 1, "top_k": 10}))
    items = [r["item_id"] for r in result["recommendations"]]
    # user 1 liked 10 and 14 and bought 11: left out by default; 12 was only viewed by someone else
    assert sorted(items) == ["12", "13"] and result["candidate_sources"] == ["trending", "popular"]
    kept = service.recommend(validate(RecommendRequest, {"user_id": 1, "filters": {"exclude_acted_on": False}}))
    assert len(kept["recommendations"]) == 5
    assert _catalog().trending(1) == ["13"] and _catalog().popular(1) == ["14"]


def test_catalog_candidates_start_with_items_similar_to_what_the_user_just_liked():
    from easyrec_online.artifacts.cf import refresh_neighbours

    # Users 3..5 liked 20 with 21, user 6 liked 22 with 23: similar to 20 is 21.
    actions = [_action(u, i) for u in (3, 4, 5) for i in (20, 21)] + [_action(6, 22), _action(6, 23)]
    actions += [_action(7, 30) for _ in range(5)]  # the most popular item, similar to nothing liked
    catalog = Catalog(half_life_hours=24).add(actions)
    refresh_neighbours(catalog)
    activity = InMemoryActivityStore()
    service, _ = _service(catalog=catalog, activity=activity, CATALOG_CANDIDATES="2")
    # A new user who liked 20 a second ago (live activity, not in the version's catalog).
    activity.record([_action("n", 20)])
    result = service.recommend(validate(RecommendRequest, {"user_id": "n", "top_k": 2}))
    assert result["candidate_sources"][0] == "similar", result
    assert "21" in [r["item_id"] for r in result["recommendations"]]
    assert "20" not in [r["item_id"] for r in result["recommendations"]]  # acted on: left out


def test_filters_include_exclude_and_category():
    profiles = InMemoryProfileStore()
    profiles.put("item", 11, {"category": "tools"})
    profiles.put("item", 12, {"category": ["garden", "tools"]})
    profiles.put("item", 13, {"category": "garden"})
    service, _ = _service(catalog=_catalog(), profiles=profiles)

    def ranked(**body):
        body.setdefault("user_id", 1)
        return [r["item_id"] for r in service.recommend(validate(RecommendRequest, body))["recommendations"]]

    assert ranked(candidate_items=[10, 11, 12]) == [12, 11, 10]  # listed candidates: nothing excluded by default
    assert ranked(candidate_items=[10, 11, 12], filters={"exclude_acted_on": True}) == [12]
    assert ranked(candidate_items=[10, 11, 12], filters={"exclude_items": [12]}) == [11, 10]
    assert ranked(candidate_items=[10, 11, 12], filters={"include_items": [10, 11, 77]}) == [11, 10]
    assert ranked(candidate_items=[10, 11, 12, 13], filters={"category": "tools"}) == [12, 11]
    assert ranked(candidate_items=[10, 11, 12, 13], filters={"category": ["garden"]}) == [13, 12]
    assert ranked(filters={"include_items": [13, "99"]}) == ["99", 13]  # unknown 99: the prior beats 0.13


def test_context_reaches_the_model_and_bad_context_or_filters_are_400s():
    service, scorer = _service()
    service.recommend(validate(RecommendRequest, {"user_id": 1, "candidate_items": [1], "context": {
        "action_type": "purchase", "timestamp": "2026-11-27T20:15:00Z", "device": "mobile"}}))
    assert scorer.calls[-1]["action_type"] == ["purchase"] and scorer.calls[-1]["hour"] == ["20"]
    for body, field in [({"context": {"timestamp": "later"}}, "context.timestamp"),
                        ({"context": {"action_type": 3}}, "context.action_type"),
                        ({"filters": {"exclude_acted_on": "yes"}}, "filters.exclude_acted_on"),
                        ({"filters": {"colour": "red"}}, "filters.colour"),
                        ({"filters": {"include_items": [1.5]}}, "filters.include_items[0]")]:
        with pytest.raises(ApiError) as caught:
            validate(RecommendRequest, dict({"user_id": 1, "candidate_items": [1]}, **body))
        assert caught.value.status == 400 and any(f.startswith(field) for f in caught.value.fields), (
            body, caught.value.fields)


def _live_lineage():
    """Two taste groups (a, b) and (c, d): their catalog with similarities, and a live-feature spec."""
    from easyrec_online.artifacts.cf import refresh_neighbours
    from easyrec_online.artifacts.features.derive import derive_spec
    from easyrec_online.artifacts.features.live import LiveReplay
    from easyrec_online.artifacts.features.sampling import training_examples

    actions = [_action(u, i, timestamp="2026-11-01T00:00:{:02d}Z".format(n)) for n, (u, i) in enumerate(
        [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "c"), (3, "d"), (4, "c"), (4, "d")])]
    catalog = Catalog().add(actions)
    refresh_neighbours(catalog)
    examples = training_examples(actions, 1, 3, catalog=["a", "b", "c", "d"], sampling="always",
                                 live=LiveReplay(Catalog()))
    return catalog, derive_spec(actions, live_examples=examples).to_json()


class LiveSum(FakeScorer):
    """Scores a pair by its live features (their encoded sum): what live features change, scores show."""

    def probabilities(self, columns):
        names = [name for name in columns if name.startswith("l_")]
        return [sum(float(columns[name][i]) for name in names) / 100.0 for i in range(len(columns["item_id"]))]


def test_an_accepted_action_changes_the_next_ranking_before_any_weight_update():
    """The user's live activity (written on accept) reaches the live features of the very next request."""
    from easyrec_online.state.activity import InMemoryActivityStore

    catalog, spec = _live_lineage()
    version = ModelVersion("v7", "deepfm", "deepfm", "models/deepfm/v7/", "t",
                           feature_spec=spec,
                           serving_defaults={"cold_start_rate": "0.1"})  # the model scores new users
    activity = InMemoryActivityStore()
    service = ScoringService(Settings.from_env({}), Models(LoadedModel(version, LiveSum(), catalog)), None, activity)
    request = {"user_id": 9, "candidate_items": ["b", "d"], "top_k": 2}
    before = service.recommend(validate(RecommendRequest, request))["recommendations"]
    activity.record([_action(9, "c")])  # user 9, unknown to the version, likes c: d is like c
    after = service.recommend(validate(RecommendRequest, request))["recommendations"]
    assert [r["item_id"] for r in after] == ["d", "b"], (before, after)
    assert {r["item_id"]: r["score"] for r in after}["d"] > {r["item_id"]: r["score"] for r in before}["d"]


class Constant(FakeScorer):
    def probabilities(self, columns):
        return [0.5] * len(columns["item_id"])


def test_scores_blend_the_model_with_what_the_user_liked_lately():
    """The version's CF blend weight: an item like the one the user just liked scores above the model's
    probability; an item their history says nothing about keeps it; weight 0 serves the probability."""
    from easyrec_online.state.activity import InMemoryActivityStore

    catalog, spec = _live_lineage()
    activity = InMemoryActivityStore()
    activity.record([_action(9, "c")])
    request = {"user_id": 9, "candidate_items": ["b", "d"], "top_k": 2}
    scores = {}
    for weight in ("0", "2"):
        version = ModelVersion("v7", "deepfm", "deepfm", "models/deepfm/v7/", "t", feature_spec=spec,
                               serving_defaults={"cold_start_rate": "0.1", "cf_blend": weight})
        service = ScoringService(Settings.from_env({}), Models(LoadedModel(version, Constant(), catalog)), None,
                                 activity)
        answer = service.recommend(validate(RecommendRequest, request))["recommendations"]
        scores[weight] = {r["item_id"]: r["score"] for r in answer}
        assert service.predict(validate(PredictRequest, {"user_id": 9, "item_id": "d"}))["score"] == scores[weight]["d"]
    assert scores["0"] == {"b": 0.5, "d": 0.5}
    assert scores["2"]["b"] == 0.5 and scores["2"]["d"] > 0.5


def test_a_user_without_any_history_gets_the_versions_popularity_weight():
    """new_user_popularity_blend: a user the service knows nothing of (no live activity, not in the
    catalog) ranks the items more users liked first; a user with a history keeps the model's scores."""
    from easyrec_online.state.activity import InMemoryActivityStore

    catalog, spec = _live_lineage()
    catalog.add([_action(5, "d", timestamp="2026-11-01T00:01:00Z")])  # d: three likes, b: two
    activity = InMemoryActivityStore()
    activity.record([_action(9, "c")])
    version = ModelVersion("v7", "deepfm", "deepfm", "models/deepfm/v7/", "t", feature_spec=spec,
                           serving_defaults={"cold_start_rate": "0.1", "new_user_popularity_blend": "2"})
    service = ScoringService(Settings.from_env({}), Models(LoadedModel(version, Constant(), catalog)), None, activity)
    request = {"candidate_items": ["b", "d", "zz"], "top_k": 3}
    new = {r["item_id"]: r["score"] for r in service.recommend(validate(RecommendRequest, dict(request, user_id=77)))[
        "recommendations"]}
    assert new["d"] > new["b"] > new["zz"] and new["zz"] < 0.5  # zz: no one liked it, below the model's score
    known = service.predict(validate(PredictRequest, {"user_id": 9, "item_ids": ["b", "d"]}))["predictions"]
    assert [p["score"] for p in known] == [0.5, 0.5]
    mixed = service.predict(validate(PredictRequest, {"pairs": [{"user_id": 77, "item_id": "d"},
                                                                 {"user_id": 9, "item_id": "d"}]}))["predictions"]
    assert [p["score"] for p in mixed] == [new["d"], 0.5]


def test_a_new_users_own_actions_on_new_items_count_at_once_newest_first():
    """SELF_BLEND: a user's purchases of an item no version has seen put it above the one they bounced
    off, before any weight update; when their taste reverses, the newer actions win."""
    from easyrec_online.state.activity import InMemoryActivityStore

    catalog, spec = _live_lineage()
    version = ModelVersion("v7", "deepfm", "deepfm", "models/deepfm/v7/", "t", feature_spec=spec,
                           serving_defaults={"cold_start_rate": "0.1", "self_blend": "1.0"})
    activity = InMemoryActivityStore()
    service = ScoringService(Settings.from_env({}), Models(LoadedModel(version, Constant(), catalog)), None, activity)

    def scores():
        answer = service.predict(validate(PredictRequest, {"user_id": 42, "item_ids": ["new-a", "new-b", "c"]}))
        return {p["item_id"]: p["score"] for p in answer["predictions"]}

    assert scores() == {"new-a": 0.5, "new-b": 0.5, "c": 0.5}
    activity.record([_action(42, "new-a", timestamp="2026-11-02T00:00:{:02d}Z".format(2 * k)) for k in range(5)]
                    + [_action(42, "new-b", label=0, timestamp="2026-11-02T00:00:{:02d}Z".format(2 * k + 1))
                       for k in range(5)])
    first = scores()
    assert first["new-a"] > 0.5 > first["new-b"] and first["c"] == 0.5, first  # untouched items keep the model's
    activity.record([_action(42, "new-a", label=0, timestamp="2026-11-02T00:01:{:02d}Z".format(k)) for k in range(3)]
                    + [_action(42, "new-b", timestamp="2026-11-02T00:02:{:02d}Z".format(k)) for k in range(3)])
    reversed_ = scores()
    assert reversed_["new-b"] > reversed_["new-a"], reversed_  # three newer actions outweigh five older ones


def test_scores_are_served_with_the_versions_calibration():
    """The version's calibration (a, b) turns the model's logits into its scores: sigmoid(a * logit + b)."""
    version = dataclasses.replace(VERSION, serving_defaults={"calibration": "0.5,-1.0"})
    service = ScoringService(Settings.from_env({}), Models(LoadedModel(version, KnownScores(), _catalog())))
    answer = service.predict(validate(PredictRequest, {"user_id": 1, "item_id": 11}))  # the model's 0.11
    assert answer["score"] == pytest.approx(1.0 / (1.0 + math.exp(-(0.5 * math.log(0.11 / 0.89) - 1.0))))
