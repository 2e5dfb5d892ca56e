"""Which stored actions the consumer logs as an experiment's successes."""
from easyrec_online.experiments.assignment import in_experiment
from easyrec_online.experiments.definition import Arm, Experiment
from easyrec_online.experiments.router import RunningExperiments, SuccessRecorder
from easyrec_online.experiments.store import ExperimentDefinitions, InMemoryExperimentLog
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.state.registry import InMemoryStateStore


def _action(user, item, label=None, action_type="purchase", recommendation_id=None):
    return StoredAction.accept(ActionIn.model_validate(
        {"user_id": user, "item_id": item, "label": label, "action_type": action_type,
         "recommendation_id": recommendation_id}))


def test_successes_of_users_in_running_experiments_are_logged_once():
    definitions = ExperimentDefinitions(InMemoryStateStore())
    experiment = Experiment(experiment_id="exp-1", name="n", kind="ab",
                            arms=[Arm("a", {"type": "current"}, 50.0), Arm("b", {"type": "popularity"}, 50.0)],
                            salt="s", layer="default", buckets=[0, 500], created_at="2026-12-07T00:00:00.000Z",
                            success_actions=["purchase"])
    definitions.create("default", lambda ranges: experiment)
    log = InMemoryExperimentLog()
    recorder = SuccessRecorder(RunningExperiments(definitions, 0.0), log)
    users = ["u{}".format(k) for k in range(40)]
    inside = [u for u in users if in_experiment(experiment, u)]
    outside = [u for u in users if not in_experiment(experiment, u)]
    actions = ([_action(inside[0], "i1", recommendation_id="r1"), _action(inside[1], "i1", action_type="view", label=1),
                _action(outside[0], "i1")])
    recorder.record(actions)
    recorder.record(actions[:1])  # a redelivered batch
    _, successes = log.read("exp-1")
    assert [(s.user_id, s.recommendation_id) for s in successes] == [(inside[0], "r1")]

    def stop(e):
        e.status = "stopped"
        return e

    definitions.update("exp-1", stop)
    recorder.record([_action(inside[2], "i1")])
    assert len(log.read("exp-1")[1]) == 1  # a stopped experiment counts no more


def test_an_action_keeps_its_recommendation_id_and_others_store_as_before():
    named = _action("u", "i", recommendation_id="abc")
    assert StoredAction.from_json(named.to_json()).recommendation_id == "abc"
    assert "recommendation_id" not in _action("u", "i").to_json()
