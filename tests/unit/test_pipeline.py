import pytest

from easyrec_online.features import FEATURES
from easyrec_online.modeling.pipeline import build_pipeline_config


def test_deepfm_config_matches_feature_set():
    text = build_pipeline_config("deepfm", "/d/train.csv", "/d/eval.csv", "/d/model", num_steps=10, batch_size=4)
    assert 'model_class: "DeepFM"' in text and "num_steps: 10" in text and "batch_size: 4" in text
    for feature in FEATURES:
        assert 'input_name: "{}"'.format(feature.name) in text
        assert "hash_bucket_size: {}".format(feature.hash_bucket_size) in text
    assert 'separator: "\\t"' in text


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'transformer'"):
        build_pipeline_config("transformer", "a", "b", "c", 1, 1)


@pytest.mark.parametrize("model, model_class", [("deepfm", "DeepFM"), ("wide_and_deep", "WideAndDeep"),
                                                ("dcn", "DCN"), ("autoint", "AutoInt"), ("dssm", "DSSM"),
                                                ("mmoe", "MMoE")])
def test_every_supported_model_has_a_config(model, model_class):
    text = build_pipeline_config(model, "a", "b", "c", 10, 4)
    assert 'model_class: "{}"'.format(model_class) in text


def test_two_tower_model_puts_the_item_alone_in_its_tower():
    text = build_pipeline_config("dssm", "a", "b", "c", 10, 4)
    assert 'group_name: "item" feature_names: "item_id" wide_deep: DEEP' in text
    assert 'group_name: "user" feature_names: "user_id" feature_names: "action_type"' in text


def test_only_multi_task_models_read_the_conversion_label():
    assert 'label_fields: "conversion"' in build_pipeline_config("mmoe", "a", "b", "c", 10, 4)
    assert 'label_fields: "conversion"' not in build_pipeline_config("deepfm", "a", "b", "c", 10, 4)
