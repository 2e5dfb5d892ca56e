import pytest

from easyrec_online.artifacts.features.spec import BASE_FEATURES, FeatureDef, FeatureSpec
from easyrec_online.modeling.pipeline import build_pipeline_config

BASE = FeatureSpec()
RICH = FeatureSpec(BASE_FEATURES + (
    FeatureDef("p_device", "id", "param", "device", hash_bucket_size=100),
    FeatureDef("p_price", "raw", "param", "price", mean=3.0, std=2.0),
    FeatureDef("i_genres", "tags", "item", "genres", hash_bucket_size=50),
    FeatureDef("u_age", "raw", "user", "age", mean=30.0, std=10.0),
))


def test_deepfm_config_matches_feature_set():
    text = build_pipeline_config("deepfm", BASE, "/d/train.csv", "/d/eval.csv", "/d/model", num_steps=10, batch_size=4)
    assert 'model_class: "DeepFM"' in text and "num_steps: 10" in text and "batch_size: 4" in text
    for feature in BASE.features:
        assert 'input_name: "{}"'.format(feature.name) in text
        assert "hash_bucket_size: {}".format(feature.hash_bucket_size) in text
    assert 'separator: "\\t"' in text


def test_feature_kinds_map_to_easyrec_feature_types():
    text = build_pipeline_config("deepfm", RICH, "a", "b", "c", 10, 4)
    assert 'input_name: "p_price" input_type: FLOAT' in text and 'input_name: "p_device" input_type: STRING' in text
    assert 'input_names: "p_price" feature_type: RawFeature embedding_dim: 16' in text
    assert 'input_names: "i_genres" feature_type: TagFeature separator: "|"' in text
    assert 'input_names: "p_device" feature_type: IdFeature' in text


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'transformer'"):
        build_pipeline_config("transformer", BASE, "a", "b", "c", 1, 1)


@pytest.mark.parametrize("model, model_class", [("deepfm", "DeepFM"), ("wide_and_deep", "WideAndDeep"),
                                                ("dcn", "DCN"), ("autoint", "AutoInt"), ("dssm", "DSSM"),
                                                ("mind", "MIND"), ("mmoe", "MMoE")])
def test_every_supported_model_has_a_config(model, model_class):
    text = build_pipeline_config(model, RICH, "a", "b", "c", 10, 4)
    assert 'model_class: "{}"'.format(model_class) in text


def test_two_tower_model_puts_the_item_and_its_profile_in_the_item_tower():
    text = build_pipeline_config("dssm", RICH, "a", "b", "c", 10, 4)
    assert 'group_name: "item" feature_names: "item_id" feature_names: "i_genres" wide_deep: DEEP' in text
    assert ('group_name: "user" feature_names: "user_id" feature_names: "action_type" feature_names: "hour" '
            'feature_names: "dow" feature_names: "p_device" feature_names: "p_price" feature_names: "u_age"') in text


def test_only_multi_task_models_read_the_conversion_label():
    assert 'label_fields: "conversion"' in build_pipeline_config("mmoe", BASE, "a", "b", "c", 10, 4)
    assert 'label_fields: "conversion"' not in build_pipeline_config("deepfm", BASE, "a", "b", "c", 10, 4)


def test_mind_routes_the_history_sequence_into_its_own_group():
    spec = FeatureSpec(RICH.features + (FeatureDef("hist_item_id", "seq", "history", "items", hash_bucket_size=99),))
    text = build_pipeline_config("mind", spec, "a", "b", "c", 10, 4)
    assert 'group_name: "hist" feature_names: "hist_item_id" }' in text
    assert 'input_names: "hist_item_id" feature_type: SequenceFeature separator: "|"' in text
    assert 'group_name: "user" feature_names: "user_id"' in text and '"hist_item_id" wide_deep' not in text
    assert "hist_item_id" not in build_pipeline_config("deepfm", spec, "a", "b", "c", 10, 4).split("model_config")[1]


def test_the_control_planes_list_of_models_is_the_model_planes():
    """core/config.MODEL_NAMES (what POST /experiments checks a new_lineage arm against) names exactly the
    models the pipeline builds."""
    from easyrec_online.core.config import MODEL_NAMES
    from easyrec_online.modeling.pipeline import SUPPORTED_MODELS

    assert sorted(MODEL_NAMES) == sorted(SUPPORTED_MODELS)
