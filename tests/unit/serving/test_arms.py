"""/recommend under experiments: the arm's strategy ranks, the answer says which, the impression is logged."""
from easyrec_online.artifacts.catalog import Catalog
from easyrec_online.core.config import Settings
from easyrec_online.core.http import validate
from easyrec_online.experiments.assignment import arm_of, in_experiment
from easyrec_online.experiments.control import ExperimentService
from easyrec_online.experiments.definition import ExperimentIn
from easyrec_online.experiments.router import RunningExperiments
from easyrec_online.experiments.store import ExperimentDefinitions, InMemoryExperimentLog
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.serving.arms import ArmServing
from easyrec_online.serving.cache import LoadedModel
from easyrec_online.serving.service import RecommendRequest, ScoringService
from easyrec_online.state.registry import COLD_START_RATE_KEY, InMemoryStateStore, ModelVersion
from tests.unit.fakes import FakeScorer


class ByItem(FakeScorer):
    """Scores item n as n / 100 (sign -1: reversed)."""

    def __init__(self, sign=1):
        self.sign = sign

    def probabilities(self, columns):
        return [0.5 + self.sign * (int(item) / 100.0 - 0.5) for item in columns["item_id"]]


def _version(name):
    # A lineage that learnt new users and items: the model scores every candidate (no popularity prior).
    return ModelVersion(name, "lin", "deepfm", "models/lin/{}/".format(name), "2026-12-07T00:00:0{}.000Z".format(name[1]),
                        serving_defaults={COLD_START_RATE_KEY: "0.1"})


class Models:
    """The model cache's face to serving: the current version and the versions arms name."""

    def __init__(self, catalog):
        self.loaded = {"v1": LoadedModel(_version("v1"), ByItem(), catalog),
                       "v2": LoadedModel(_version("v2"), ByItem(-1), catalog)}
        self.kept = set()

    def current(self):
        return self.loaded["v1"]

    def version(self, name):
        return self.loaded[name]

    def keep_loaded(self, names):
        self.kept = set(names)


def _catalog():
    catalog = Catalog()
    # Item 3 is the most popular, then 1 (every candidate known: the model scores them all).
    for k, item in enumerate([3, 3, 3, 1, 1, 2, 4]):
        catalog.add([StoredAction.accept(ActionIn.model_validate({"user_id": "x{}".format(k), "item_id": item,
                                                                  "label": 1}))])
    return catalog


def _setup(body):
    state = InMemoryStateStore()
    for name in ("v1", "v2"):
        state.put_version(_version(name))
    state.set_current("v1")
    definitions, log = ExperimentDefinitions(state), InMemoryExperimentLog()
    settings = Settings.from_env({})
    experiment = ExperimentService(settings, state, definitions, log).create(validate(ExperimentIn, body))
    models = Models(_catalog())
    arms = ArmServing(RunningExperiments(definitions, 0.0), models, state, log, 0.0)
    return ScoringService(settings, models, arms=arms), experiment, definitions, log, models


def _recommend(service, user, top_k=3):
    return service.recommend(validate(RecommendRequest, {"user_id": user, "candidate_items": [1, 2, 3, 4],
                                                         "top_k": top_k}))


def test_each_arm_ranks_with_its_strategy_and_the_impression_is_logged():
    service, experiment, definitions, log, models = _setup({"name": "pop", "arms": [
        {"name": "model", "weight": 50, "strategy": "current"},
        {"name": "older", "weight": 25, "strategy": {"type": "version", "version": "v2"}},
        {"name": "pop", "weight": 25, "strategy": "popularity"}]})
    assert models.kept == set()  # kept once a request asks (the arms resolve on the request path here)
    stored = definitions.get(experiment["experiment_id"])
    seen = {}
    for k in range(60):
        user = "user-{}".format(k)
        answer = _recommend(service, user)
        arm = arm_of(stored, user).name
        assert answer["experiment"] == experiment["experiment_id"] and answer["arm"] == arm
        seen[arm] = [r["item_id"] for r in answer["recommendations"]]
        assert answer["model_version"] == ("v2" if arm == "older" else "v1")
    assert seen == {"model": [4, 3, 2], "older": [1, 2, 3], "pop": [3, 1, 2]}
    assert models.kept == {"v2"}
    impressions, _ = log.read(experiment["experiment_id"])
    assert len(impressions) == 60 and len({i.recommendation_id for i in impressions}) == 60
    assert {tuple(i.items) for i in impressions} == {("4", "3", "2"), ("1", "2", "3"), ("3", "1", "2")}


def test_users_outside_the_experiments_traffic_get_the_default_and_no_impression():
    service, experiment, definitions, log, _ = _setup({"name": "small", "traffic": 10, "arms": [
        {"name": "a", "weight": 50, "strategy": "popularity"}, {"name": "b", "weight": 50, "strategy": "trending"}]})
    stored = definitions.get(experiment["experiment_id"])
    outside = [u for u in ("user-{}".format(k) for k in range(100)) if not in_experiment(stored, u)]
    answer = _recommend(service, outside[0])
    assert "experiment" not in answer and len(answer["recommendation_id"]) == 32
    assert [r["item_id"] for r in answer["recommendations"]] == [4, 3, 2]
    assert log.read(experiment["experiment_id"]) == ([], [])


def test_interleaving_merges_both_arms_and_says_who_contributed_each_item():
    service, experiment, _, log, _ = _setup({"name": "il", "kind": "interleaving", "arms": [
        {"name": "new", "strategy": "current"}, {"name": "old", "strategy": {"type": "version", "version": "v2"}}]})
    answer = _recommend(service, "someone", top_k=2)
    assert answer["arm"] == "interleaved" and answer["arm_versions"] == {"new": "v1", "old": "v2"}
    # Each arm contributes its own best item, which the other does not rank within the 2 shown.
    assert {r["arm"]: r["item_id"] for r in answer["recommendations"]} == {"new": 4, "old": 1}
    (impression,) = log.read(experiment["experiment_id"])[0]
    assert impression.item_arms == [r["arm"] for r in answer["recommendations"]]
    # Four shown of four: both arms would show every item, so none credits either arm.
    everything = _recommend(service, "someone else", top_k=4)
    assert sorted(r["item_id"] for r in everything["recommendations"]) == [1, 2, 3, 4]
    assert {r["arm"] for r in everything["recommendations"]} == {"both"}


def test_an_arm_whose_version_is_still_loading_leaves_the_request_to_the_default_uncounted():
    service, experiment, definitions, log, models = _setup({"name": "loading", "arms": [
        {"name": "model", "weight": 50, "strategy": "current"},
        {"name": "older", "weight": 50, "strategy": {"type": "version", "version": "v2"}}]})
    del models.loaded["v2"]
    models.version = lambda name: models.loaded.get(name)  # v2 not loaded yet
    stored = definitions.get(experiment["experiment_id"])
    waiting = [u for u in ("user-{}".format(k) for k in range(40)) if arm_of(stored, u).name == "older"]
    answer = _recommend(service, waiting[0])
    assert "experiment" not in answer and answer["model_version"] == "v1"
    assert log.read(experiment["experiment_id"]) == ([], [])
