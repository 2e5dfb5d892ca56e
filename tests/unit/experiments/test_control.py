"""The admin routes' logic: bad input is a clear 4xx; conclude makes the winner current only when it won."""
import random

import pytest
from pydantic import ValidationError

from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError, validate
from easyrec_online.experiments.control import ExperimentService
from easyrec_online.experiments.definition import ConcludeIn, ExperimentIn, Impression, Success
from easyrec_online.experiments.store import ExperimentDefinitions, InMemoryExperimentLog
from easyrec_online.state.registry import InMemoryStateStore, ModelVersion


def _service(**env):
    state = InMemoryStateStore()
    for name, status in (("v1", "ready"), ("v2", "ready"), ("v3", "rejected")):
        state.put_version(ModelVersion(name, "lin-a", "deepfm", "models/lin-a/{}/".format(name),
                                       "2026-12-0{}T00:00:00.000Z".format(name[1]), status=status))
    state.set_current("v1")
    log = InMemoryExperimentLog()
    return ExperimentService(Settings.from_env(env), state, ExperimentDefinitions(state), log), state, log


def _ab(*strategies, weights=None, **extra):
    weights = weights or [100.0 / len(strategies)] * len(strategies)
    return dict({"name": "test", "arms": [{"name": "arm{}".format(k), "weight": w, "strategy": s}
                                          for k, (s, w) in enumerate(zip(strategies, weights))]}, **extra)


@pytest.mark.parametrize("body, field", [
    (_ab("current", "popularity", weights=[50, 40]), "arms"),  # weights that do not sum to 100
    ({"name": "x", "arms": [{"name": "a", "weight": 100, "strategy": "current"}]}, "arms"),  # one arm
    (_ab("current", {"type": "version"}), "arms"),  # a version strategy without its version
    (_ab("current", "nonsense"), "arms"),
    (dict(_ab("current", "trending"), kind="interleaving"), "arms"),  # interleaving takes no weights
    ({"name": "x", "kind": "interleaving", "arms": [{"name": "both", "strategy": "current"},  # the shared mark
                                                    {"name": "other", "strategy": "trending"}]}, "arms"),
    (_ab("current", {"type": "new_lineage"}), "arms"),  # a new lineage without its model
    (_ab("current", {"type": "new_lineage", "model_name": "dcn", "settings": {"DATA_BUCKET": "x"}}), "arms"),
    (_ab("current", {"type": "popularity", "model_name": "dcn"}), "arms"),
    (dict(_ab("current", "trending"), traffic=0), "traffic"),
    (dict(_ab("current", "trending"), layer="has space"), "layer"),
])
def test_bad_definitions_are_400s_naming_the_field(body, field):
    with pytest.raises(ApiError) as caught:
        validate(ExperimentIn, body)
    assert caught.value.status == 400 and field in str(caught.value.fields)


def test_unknown_or_unservable_versions_are_refused():
    service, _, _ = _service()
    with pytest.raises(ApiError) as caught:
        service.create(validate(ExperimentIn, _ab("current", {"type": "version", "version": "nope"})))
    assert caught.value.status == 400 and caught.value.error == "unknown_version"
    with pytest.raises(ApiError) as caught:
        service.create(validate(ExperimentIn, _ab("current", {"type": "version", "version": "v3"})))
    assert caught.value.status == 409
    with pytest.raises(ApiError) as caught:
        service.create(validate(ExperimentIn, _ab("current", {"type": "lineage", "lineage": "nope"})))
    assert caught.value.error == "unknown_lineage"


def test_overlapping_experiments_in_one_layer_are_409_other_layers_are_free():
    service, _, _ = _service()
    first = service.create(validate(ExperimentIn, dict(_ab("current", "popularity"), traffic=60)))
    assert first["buckets"] == [0, 600] and "salt" not in first
    with pytest.raises(ApiError) as caught:
        service.create(validate(ExperimentIn, dict(_ab("current", "trending"), traffic=50)))
    assert caught.value.status == 409 and caught.value.error == "layer_full"
    assert service.create(validate(ExperimentIn, dict(_ab("current", "trending"), traffic=40)))["buckets"] == [600, 1000]
    assert service.create(validate(ExperimentIn, dict(_ab("current", "trending"), layer="ui")))["layer"] == "ui"
    service.stop(first["experiment_id"])
    assert service.create(validate(ExperimentIn, dict(_ab("current", "trending"), traffic=60)))["buckets"] == [0, 600]


def test_too_many_loaded_arms_is_a_409():
    service, _, _ = _service(EXPERIMENT_MAX_LOADED_VERSIONS="1")
    service.create(validate(ExperimentIn, dict(_ab("current", {"type": "version", "version": "v2"}), layer="a")))
    with pytest.raises(ApiError) as caught:
        service.create(validate(ExperimentIn, dict(_ab("current", {"type": "version", "version": "v1"}), layer="b")))
    assert caught.value.status == 409 and caught.value.error == "too_many_arms"


def _record_outcomes(log, experiment, rates, users=1500, seed=3):
    rng = random.Random(seed)
    for k in range(users):
        arm = experiment["arms"][k % 2]["name"]
        rec = "r{}".format(k)
        log.record_impression(Impression(rec, experiment["experiment_id"], arm, "u{}".format(k),
                                         "2026-12-07T00:{:02d}:{:02d}.000Z".format(k // 60 % 60, k % 60), ["i"]))
        if rng.random() < rates[arm]:
            log.record_successes(experiment["experiment_id"], [Success(
                "e{}".format(k), "u{}".format(k), "i", "2026-12-07T01:00:00.000Z", recommendation_id=rec)])


def test_conclude_applies_only_a_significant_winner_with_a_version():
    service, state, log = _service()
    experiment = service.create(validate(ExperimentIn, _ab("current", {"type": "version", "version": "v2"})))
    with pytest.raises(ApiError) as caught:  # no data: no winner
        service.conclude(experiment["experiment_id"], ConcludeIn(apply=True))
    assert caught.value.status == 409 and caught.value.error == "no_winner"
    _record_outcomes(log, experiment, {"arm0": 0.1, "arm1": 0.3})
    found = service.get(experiment["experiment_id"])["results"]
    assert found["winner"] == "arm1"
    done = service.conclude(experiment["experiment_id"], ConcludeIn(apply=True))
    assert done["status"] == "concluded" and done["concluded"]["applied_version"] == "v2"
    assert state.pointer()["version"] == "v2" and state.pointer()["pinned"]
    with pytest.raises(ApiError) as caught:
        service.conclude(experiment["experiment_id"], ConcludeIn())
    assert caught.value.error == "already_concluded"


def test_a_catalog_arm_can_win_but_there_is_no_version_to_apply():
    service, state, log = _service()
    experiment = service.create(validate(ExperimentIn, _ab("current", "popularity")))
    _record_outcomes(log, experiment, {"arm0": 0.1, "arm1": 0.3})
    with pytest.raises(ApiError) as caught:
        service.conclude(experiment["experiment_id"], ConcludeIn(apply=True))
    assert caught.value.error == "not_a_model" and state.pointer()["version"] == "v1"
    assert service.conclude(experiment["experiment_id"], ConcludeIn())["concluded"]["winner"] == "arm1"


def test_unknown_experiments_are_404():
    service, _, _ = _service()
    for call in (service.get, service.stop):
        with pytest.raises(ApiError) as caught:
            call("exp-missing")
        assert caught.value.status == 404


def test_validation_error_type_is_pydantic():
    with pytest.raises(ValidationError):
        ExperimentIn.model_validate({"name": "x"})
