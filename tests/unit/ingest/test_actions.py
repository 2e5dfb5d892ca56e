import pytest
from pydantic import ValidationError

from easyrec_online.ingest.actions import ActionIn, AddDataRequest, StoredAction


def test_seed_examples_validate_and_keep_everything():
    rating = ActionIn.model_validate({
        "user_id": 123, "item_id": 6, "label": 1, "action_type": "rating",
        "parameters": {"stars": 5, "time_of_day": "evening", "device": "mobile", "completion_rate": 0.95},
    })
    stored = StoredAction.accept(rating)
    assert stored.user_id == 123 and stored.item_id == 6 and stored.label == 1.0
    assert stored.parameters["completion_rate"] == 0.95
    assert len(stored.event_id) == 32 and stored.accepted_at.endswith("Z")
    assert StoredAction.from_json(stored.to_json()) == stored


def test_string_ids_and_client_event_id_and_timestamp_are_kept():
    sample = ActionIn.model_validate({"user_id": 101, "item_id": "corn_field_3", "label": 0.5,
                                      "event_id": "e-1", "timestamp": "2026-11-01T08:00:00+02:00"})
    stored = StoredAction.accept(sample)
    assert stored.item_id == "corn_field_3" and stored.event_id == "e-1"
    assert stored.timestamp == "2026-11-01T06:00:00.000Z"


def test_epoch_timestamp():
    stored = StoredAction.accept(ActionIn.model_validate({"user_id": 1, "item_id": 2, "label": 1, "timestamp": 0}))
    assert stored.timestamp == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize("sample", [
    {"user_id": 1.5, "item_id": 2, "label": 1},
    {"user_id": True, "item_id": 2, "label": 1},
    {"user_id": "", "item_id": 2, "label": 1},
    {"user_id": "x" * 300, "item_id": 2, "label": 1},
    {"user_id": 1, "item_id": 2, "label": 2},
    {"user_id": 1, "item_id": 2, "label": "1"},
    {"user_id": 1, "item_id": 2, "label": 1, "timestamp": "yesterday"},
    {"user_id": 1, "item_id": 2, "label": 1, "unknown": 1},
    {"user_id": 1, "item_id": 2, "label": 1, "parameters": ["not", "an", "object"]},
])
def test_bad_samples_are_rejected(sample):
    with pytest.raises(ValidationError):
        ActionIn.model_validate(sample)


def test_empty_samples_rejected():
    with pytest.raises(ValidationError):
        AddDataRequest.model_validate({"samples": []})


def test_no_label_and_no_rule_is_refused_at_accept():
    from easyrec_online.ingest.labels import LabelRuleError

    with pytest.raises(LabelRuleError):
        StoredAction.accept(ActionIn.model_validate({"user_id": 1, "item_id": 2}))
