"""One contract, two backends: the experiment log in memory and on DynamoDB (moto server); the
definitions over both state stores."""
import pytest

from easyrec_online import wiring
from easyrec_online.experiments.definition import Arm, Experiment, Impression, Success
from easyrec_online.experiments.store import ExperimentDefinitions, InMemoryExperimentLog, LayerFull
from easyrec_online.state.registry import InMemoryStateStore
from tests.integration.conftest import contract_backend


@pytest.fixture(params=["memory", "dynamodb"])
def log(request):
    return contract_backend(request, InMemoryExperimentLog, wiring.experiment_log)


@pytest.fixture(params=["memory", "dynamodb"])
def definitions(request):
    return ExperimentDefinitions(contract_backend(request, InMemoryStateStore, wiring.state_store))


def _impression(rec, user="u1", experiment="exp-1"):
    return Impression(recommendation_id=rec, experiment_id=experiment, arm="a", user_id=user,
                      at="2026-12-07T00:00:00.000Z", items=["i1", "i2"])


class TestExperimentLogContract:
    def test_impressions_and_successes_are_kept_once_per_key(self, log):
        log.record_impression(_impression("r1"))
        log.record_impression(_impression("r1"))  # a retried request
        log.record_impression(_impression("r2", experiment="exp-2"))
        success = Success("e1", "u1", "i1", "2026-12-07T00:00:01.000Z", "purchase", "r1")
        log.record_successes("exp-1", [success, success])  # twice in one batch
        log.record_successes("exp-1", [success])  # a redelivered batch
        impressions, successes = log.read("exp-1")
        assert [i.recommendation_id for i in impressions] == ["r1"] and impressions[0].items == ["i1", "i2"]
        assert successes == [success]
        assert log.read("exp-3") == ([], [])

    def test_many_records_read_back_whole(self, log):
        log.record_successes("exp-1", [Success("e{}".format(k), "u", "i", "2026-12-07T00:00:01.000Z")
                                       for k in range(120)])
        for k in range(30):
            log.record_impression(_impression("r{}".format(k), user="u{}".format(k)))
        impressions, successes = log.read("exp-1")
        assert len(impressions) == 30 and len(successes) == 120


def _experiment(experiment_id, layer="default", buckets=(0, 1000)):
    return Experiment(experiment_id=experiment_id, name="n", kind="ab",
                      arms=[Arm("a", {"type": "current"}, 50.0), Arm("b", {"type": "version", "version": "v1"}, 50.0)],
                      salt="s", layer=layer, buckets=list(buckets), created_at="2026-12-07T00:00:00.000Z")


class TestExperimentDefinitionsContract:
    def test_a_layer_gives_each_running_experiment_its_own_buckets(self, definitions):
        def build(experiment_id, size):
            def make(ranges):
                taken = sorted(ranges.values())
                start = taken[-1][1] if taken else 0
                if start + size > 1000:
                    raise LayerFull()
                return _experiment(experiment_id, buckets=(start, start + size))
            return make

        first = definitions.create("default", build("exp-a", 600))
        assert first.buckets == [0, 600] and definitions.get("exp-a").buckets == [0, 600]
        with pytest.raises(LayerFull):
            definitions.create("default", build("exp-b", 600))
        assert definitions.arm_versions() == (["v1"], [])

        def stop(experiment):
            experiment.status = "stopped"
            return experiment

        definitions.update("exp-a", stop)  # frees its buckets
        assert definitions.create("default", build("exp-c", 600)).buckets == [0, 600]
        assert sorted(e.experiment_id for e in definitions.list()) == ["exp-a", "exp-c"]
        assert definitions.get("missing") is None
