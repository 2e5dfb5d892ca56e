import pytest

from easyrec_online.artifacts.features.spec import BASE_FEATURES, FeatureDef, FeatureSpec
from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.modeling.job import TrainingFailed, plan_training, promotion_decision, split_holdout
from easyrec_online.state.registry import ModelVersion

SETTINGS = Settings.from_env({})


def _current(**extra):
    fields = dict(version="v1", lineage="deepfm-v1", model_name="deepfm", s3_prefix="models/deepfm-v1/v1/",
                  created_at="t", global_step=200, optimizer="adagrad")
    fields.update(extra)
    return ModelVersion(**fields)


def test_first_run_is_full_and_starts_a_lineage():
    plan = plan_training(SETTINGS, "auto", None, ["a", "b"], None, "v9")
    assert plan.mode == "full" and plan.lineage == "deepfm-v9" and plan.new_keys == ["a", "b"]


def test_auto_continues_the_current_lineage_on_untrained_objects_only():
    plan = plan_training(SETTINGS, "auto", _current(), ["a", "b", "c"], {"keys": ["a", "b"], "items": ["x"]}, "v2")
    assert (plan.mode, plan.lineage, plan.trained_keys, plan.new_keys, plan.catalog) == (
        "incremental", "deepfm-v1", ["a", "b"], ["c"], ["x"])


def test_an_update_keeps_its_lineage_features_and_a_full_run_derives_new_ones():
    spec = FeatureSpec(BASE_FEATURES + (FeatureDef("p_device", "id", "param", "device", hash_bucket_size=10),))
    current = _current(feature_spec=spec.to_json(), feature_columns=spec.names)
    assert plan_training(SETTINGS, "auto", current, ["a"], {"keys": []}, "v2").spec == spec
    assert plan_training(SETTINGS, "full", current, ["a"], {"keys": []}, "v2").spec is None


def test_full_on_request_or_when_the_model_changed():
    assert plan_training(SETTINGS, "full", _current(), ["a"], {"keys": ["a"]}, "v2").mode == "full"
    changed = _current(model_name="dcn")
    assert plan_training(SETTINGS, "auto", changed, ["a"], {"keys": []}, "v2").mode == "full"
    with pytest.raises(TrainingFailed, match="train with mode=full first"):
        plan_training(SETTINGS, "incremental", changed, ["a"], {"keys": []}, "v2")
    with pytest.raises(TrainingFailed, match="unknown training mode"):
        plan_training(SETTINGS, "sideways", None, [], None, "v2")


def _actions(n):
    return [StoredAction.accept(ActionIn.model_validate({"user_id": i, "item_id": i, "label": 1, "event_id": "e%d" % i}))
            for i in range(n)]


def test_holdout_is_a_stable_tenth_and_small_runs_hold_nothing_out():
    actions = _actions(1000)
    train, held = split_holdout(actions)
    assert 70 <= len(held) <= 130 and len(train) + len(held) == 1000
    assert split_holdout(list(reversed(actions)))[1] == list(reversed(held))  # by event id, not position
    assert split_holdout(actions[:49]) == (actions[:49], [])


def test_held_out_actions_are_pending_for_the_next_update():
    manifest = {"keys": ["a"], "held_out": {"a": ["e1"]}, "items": []}
    plan = plan_training(SETTINGS, "auto", _current(), ["a", "b"], manifest, "v2")
    assert plan.new_keys == ["b"] and plan.held_out == {"a": ["e1"]}


def test_promotion_gate():
    assert promotion_decision({"auc": 0.7}, None, 0.02, None)["promote"]
    assert promotion_decision({"auc": 0.79}, {"auc": 0.80}, 0.02, "v1")["promote"]
    rejected = promotion_decision({"auc": 0.70}, {"auc": 0.80}, 0.02, "v1")
    assert not rejected["promote"] and "worse than current version v1" in rejected["reason"]
    assert promotion_decision({"logloss": 0.3}, {"auc": 0.8}, 0.02, "v1")["promote"]  # one-class holdout


def test_actions_held_out_last_time_are_trained_now_and_fresh_ones_split():
    from easyrec_online.ingest.store import InMemoryActionStore
    from easyrec_online.modeling.job import is_holdout, load_training_data

    store = InMemoryActionStore()
    old = _actions(100)
    old_key = store.put_batch(old)
    held_before = [a.event_id for a in old if is_holdout(a.event_id)]
    fresh = [StoredAction.accept(ActionIn.model_validate({"user_id": i, "item_id": i, "label": i % 2,
                                                          "event_id": "f%d" % i})) for i in range(200)]
    fresh_key = store.put_batch(fresh)
    manifest = {"keys": [old_key], "held_out": {old_key: held_before}, "items": []}
    plan = plan_training(SETTINGS, "auto", _current(), [old_key, fresh_key], manifest, "v2")
    data = load_training_data(SETTINGS, store, plan)
    trained = {a.event_id for a in data.train_actions}
    assert set(held_before) <= trained
    held_now = {e for ids in data.held_out_next.values() for e in ids}
    assert held_now == {a.event_id for a in fresh if is_holdout(a.event_id)} and list(data.held_out_next) == [fresh_key]
    assert trained | held_now == set(held_before) | {a.event_id for a in fresh}
