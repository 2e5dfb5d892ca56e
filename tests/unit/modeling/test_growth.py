"""The continuous trainer's retraining triggers (modeling/growth.py) and how a new lineage is judged."""
import datetime as dt

from easyrec_online.artifacts.features.derive import derive_spec
from easyrec_online.artifacts.features.encode import Context, Example, Profiles
from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.modeling.growth import FreshAuc, RetrainingState, fields_a_retraining_would_add, retraining_reason
from easyrec_online.modeling.job import TrainingData, rows_the_lineage_never_trained

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)
SETTINGS = Settings.from_env({"LINEAGE_GROWTH_FACTOR": "4", "LINEAGE_GROWTH_MIN_ACTIONS": "200"})


def _action(n, **parameters):
    return StoredAction.accept(ActionIn.model_validate({
        "user_id": "u{}".format(n % 7), "item_id": "i{}".format(n % 11), "action_type": "watering", "label": n % 2,
        "event_id": "e{}".format(n), "parameters": parameters or None}), NOW)


def _reason(history=None, **given):
    arguments = dict(requested=False, trained_actions=100, born_with=100, born_at="2026-12-07T11:00:00Z",
                     new_fields=[], fresh_auc=None, history=history or RetrainingState(), now=NOW)
    arguments.update(given)
    return retraining_reason(SETTINGS, **arguments)


def test_nothing_outgrown_means_no_retraining():
    assert _reason() is None
    assert _reason(trained_actions=399) is None  # under 4x
    assert _reason(born_with=1, trained_actions=150) is None  # 150x, but fewer than 200 more actions
    assert _reason(fresh_auc=0.60) is None  # above AUTO_RETRAIN_AUC_THRESHOLD


def test_each_trigger_says_why():
    assert _reason(requested=True).startswith("requested")
    assert _reason(new_fields=["param.soil_moisture"]) == "new features: param.soil_moisture"
    assert _reason(trained_actions=400).startswith("data grew 4.0x")
    assert _reason(born_with=3, trained_actions=300).startswith("data grew 100.0x")
    assert _reason(fresh_auc=0.41).startswith("drift: AUC 0.410")
    scheduled = Settings.from_env({"RETRAIN_EVERY_H": "0.5"})
    assert retraining_reason(scheduled, requested=False, trained_actions=1, born_with=1, born_at="2026-12-07T11:00:00Z",
                             new_fields=[], fresh_auc=None, history=RetrainingState(), now=NOW).startswith("schedule")
    assert Settings.from_env({}).retrain_every_h == 0  # no schedule by default


def test_a_refused_retraining_is_not_tried_again_on_the_same_grounds():
    history = RetrainingState(attempted_at_actions=400, tried_fields={"param.soil_moisture"})
    assert _reason(history, new_fields=["param.soil_moisture"]) is None
    assert _reason(history, new_fields=["param.soil_moisture", "param.device"]) == "new features: param.device"
    assert _reason(history, trained_actions=1000) is None  # 2.5x the attempt: not yet
    assert _reason(history, trained_actions=1600).startswith("data grew 16.0x")
    never = Settings.from_env({"LINEAGE_GROWTH_FACTOR": "0"})
    assert retraining_reason(never, requested=False, trained_actions=10 ** 6, born_with=1, born_at=None, new_fields=[],
                             fresh_auc=None, history=RetrainingState(), now=NOW) is None


def test_fields_a_retraining_would_add_are_those_the_lineage_lacks_with_enough_support():
    born = [_action(0)]
    spec = derive_spec(born)
    later = born + [_action(n, soil_moisture=0.3 + n / 100.0) for n in range(1, 4)] + [_action(9, device="phone")]
    assert fields_a_retraining_would_add(SETTINGS, spec, later, Profiles()) == ["param.soil_moisture"]  # device: once
    grown = derive_spec(later)
    assert fields_a_retraining_would_add(SETTINGS, grown, later, Profiles()) == []
    profiles = Profiles(items={"i{}".format(n): {"genre": "drama"} for n in range(11)})
    assert "item.genre" in fields_a_retraining_would_add(SETTINGS, grown, later, profiles)


def test_drift_is_judged_on_enough_fresh_rows_of_both_labels_in_a_sliding_window():
    fresh = FreshAuc(window=200)
    fresh.add([1] * 50, [0.9] * 50)
    assert fresh.auc() is None  # one label only
    fresh.add([0] * 40, [0.1] * 40)
    assert fresh.auc() is None  # 90 rows: too few
    fresh.add([0] * 10, [0.2] * 10)
    assert fresh.auc() == 1.0
    fresh.add([1] * 100, [0.0] * 100)  # the taste turned
    fresh.add([0] * 100, [1.0] * 100)
    assert len(fresh) == 200 and fresh.auc() == 0.0
    fresh.reset()
    assert fresh.auc() is None


def _example(event_id, label=1):
    return Example(user_id="u", item_id="i", context=Context("rating", NOW), label=label, event_id=event_id)


def test_a_new_lineage_is_judged_on_the_holdout_rows_the_current_lineage_never_trained():
    rows = [_example(e) for e in ("a1", "a2", "b1", "c1")]
    data = TrainingData(new_actions=[], train_actions=[], train_rows=[], holdout_rows=rows, has_holdout=True,
                        held_out_next={"k-a": ["a1", "a2"], "k-b": ["b1"], "k-c": ["c1"]}, catalog=[], spec=None,
                        profiles=Profiles())
    # The current lineage read k-a and k-b; it held a2 out of its last version and has not trained it since.
    manifest = {"keys": ["k-a", "k-b"], "held_out": {"k-a": ["a2"]}}
    assert [e.event_id for e in rows_the_lineage_never_trained(data, manifest)] == ["a2", "c1"]
