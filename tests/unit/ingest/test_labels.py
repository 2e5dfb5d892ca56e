import pytest

from easyrec_online.control.ingest import IngestService
from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError
from easyrec_online.ingest.actions import ActionIn, AddDataRequest, StoredAction
from easyrec_online.ingest.labels import DEFAULT_LABEL_RULES, LabelRuleError, check_rules, derive_label
from easyrec_online.ingest.publishers import InMemoryActionPublisher


@pytest.mark.parametrize("action_type, parameters, label", [
    ("purchase", None, 1.0),
    ("dislike", {}, 0.0),
    ("rating", {"stars": 5}, 1.0),
    ("rating", {"stars": 3}, 0.0),
    ("view", {"bounced": True, "time_spent": "15_sec"}, 0.0),
    ("view", {"time_spent": "5_min"}, 1.0),
])
def test_default_rules(action_type, parameters, label):
    assert derive_label(action_type, parameters, DEFAULT_LABEL_RULES) == label


@pytest.mark.parametrize("action_type, parameters, message", [
    (None, None, "send an action_type that has a label rule"),
    ("watering", {}, "no label rule for action_type 'watering'"),
    ("rating", {"stars": "five"}, "numeric parameters.stars"),
])
def test_no_rule_no_label(action_type, parameters, message):
    with pytest.raises(LabelRuleError, match=message):
        derive_label(action_type, parameters, DEFAULT_LABEL_RULES)


def test_a_given_label_wins_over_the_rule():
    sample = ActionIn.model_validate({"user_id": 1, "item_id": 2, "label": 0, "action_type": "purchase"})
    assert StoredAction.accept(sample).label == 0.0


def test_rules_come_from_configuration():
    settings = Settings.from_env({"LABEL_RULES": '{"watering": 1, "harvest": {"param": "grade", "is": "premium", '
                                                 '"label": 1, "otherwise": 0}}'})
    assert derive_label("watering", {}, settings.label_rules) == 1.0
    assert derive_label("harvest", {"grade": "standard"}, settings.label_rules) == 0.0
    assert Settings.from_env(settings.as_env()).label_rules == settings.label_rules
    for bad in ("[1]", "not json"):
        with pytest.raises(ValueError, match="LABEL_RULES"):
            Settings.from_env({"LABEL_RULES": bad})
    for bad in ('{"x": 2}', '{"x": {"param": "p"}}'):
        with pytest.raises(ValueError, match="LABEL_RULES"):
            check_rules(Settings.from_env({"LABEL_RULES": bad}).label_rules)


def test_the_api_names_the_sample_whose_label_cannot_be_derived():
    service = IngestService(Settings.from_env({}), InMemoryActionPublisher())
    accepted = service.add(AddDataRequest.model_validate({"samples": [
        {"user_id": 1, "item_id": 2, "action_type": "rating", "parameters": {"stars": 5}}]}))
    assert accepted["accepted"] == 1
    with pytest.raises(ApiError) as caught:
        service.add(AddDataRequest.model_validate({"samples": [
            {"user_id": 1, "item_id": 2, "label": 1}, {"user_id": 1, "item_id": 3, "action_type": "watering"}]}))
    assert caught.value.status == 400 and caught.value.fields == ["samples[1].label"]
