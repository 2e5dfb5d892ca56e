import datetime as dt
from dataclasses import replace

import pytest

from easyrec_online.artifacts.features.derive import derive_spec
from easyrec_online.artifacts.features.encode import (
    Context,
    Example,
    Profiles,
    columns_for_pairs,
    encode,
    feature_row,
    flatten,
)
from easyrec_online.artifacts.features.rows import csv_lines, serving_action_type
from easyrec_online.artifacts.features.sampling import training_examples
from easyrec_online.artifacts.features.spec import BASE_NAMES, CSV_SEPARATOR, FeatureSpec
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.ingest.labels import DEFAULT_LABEL_RULES


def _action(user, item, label=1, action_type=None, parameters=None, timestamp=None):
    sample = {"user_id": user, "item_id": item, "label": label, "action_type": action_type, "parameters": parameters}
    if timestamp:
        sample["timestamp"] = timestamp
    return StoredAction.accept(ActionIn.model_validate(sample))


FRIDAY_EVENING = dt.datetime(2026, 11, 27, 20, 15, tzinfo=dt.timezone.utc)
# The seed's three examples: a rating, an agriculture watering, a plain like.
SEED_ACTIONS = [
    _action(123, "movie_456", None, "rating", {"stars": 5, "time": "friday_evening", "device": "mobile"}),
    _action("farmer_7", "plot_3", 1, "watering", {"liters": 12.5, "soil": {"moisture": 0.31, "type": "clay"},
                                                 "sensors": ["ph", "temp"], "automated": True}),
    _action(5, 9, 1, "like"),
]


def test_training_and_serving_build_identical_rows():
    action = _action(123, "a\tb,c", 1, "rating", {"device": {"os": "ios"}, "slot": 3, "tags": ["x", "y"]},
                     "2026-11-27T20:15:00Z")  # a Friday evening
    spec = derive_spec([action, _action(1, 2, 0, "rating", {"device": {"os": "web"}, "slot": 1, "tags": ["z"]})],
                       min_support=0)
    profiles = Profiles({"123": {"age": 31}}, {"a\tb,c": {"genres": ["drama"]}})
    row = encode(training_examples([action], 0, 1)[0], spec, profiles)
    serving = columns_for_pairs([(123, "a\tb,c")], Context("rating", FRIDAY_EVENING, {"device": {"os": "ios"},
                                                                                       "slot": 3, "tags": ["x", "y"]}),
                                spec, profiles)
    assert {name: [row[name]] for name in spec.names} == serving
    assert row["hour"] == "20" and row["dow"] == "4" and row["action_type"] == "rating"
    assert row["p_device_os"] == "ios" and row["p_tags"] == "x|y" and row["p_slot"] == pytest.approx(1.0)
    assert CSV_SEPARATOR not in row["item_id"]


def test_int_and_string_ids_are_one_id():
    context = Context("", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    assert feature_row(6, 7, context) == feature_row("6", "7", context)


def test_parameters_flatten_to_dotted_names_and_become_features_by_kind():
    assert flatten({"soil": {"moisture": 0.31, "type": "clay"}, "n": None, "a": 1}) == {
        "soil.moisture": 0.31, "soil.type": "clay", "a": 1}
    another_watering = _action("farmer_8", "plot_3", 1, "watering", {"liters": 3, "soil": {"moisture": 0.5, "type": "loam"},
                                                                    "sensors": ["ph"], "automated": False})
    spec = derive_spec(SEED_ACTIONS + [another_watering], min_support=0, label_rules=DEFAULT_LABEL_RULES)
    by_key = {(f.source, f.key): f for f in spec.features}
    assert by_key[("param", "liters")].kind == "raw" and by_key[("param", "soil.moisture")].kind == "raw"
    assert by_key[("param", "soil.type")].kind == "id" and by_key[("param", "automated")].kind == "id"
    assert by_key[("param", "sensors")].kind == "tags"
    assert ("param", "device") not in by_key  # carried by one action only: below the minimum support of 2
    # The rating rule reads stars: a stars feature would be the label itself.
    assert ("param", "stars") not in by_key
    row = encode(training_examples(SEED_ACTIONS[1:2], 0, 1)[0], spec)
    assert row["p_automated"] == "true" and row["p_sensors"] == "ph|temp" and row["p_soil_type"] == "clay"


def test_raw_features_are_normalised_with_the_lineage_statistics_and_missing_is_the_mean():
    actions = [_action(1, i, 1, "buy", {"price": p}) for i, p in enumerate([10, 20, 30, 40])]
    spec = derive_spec(actions, min_support=0)
    price = next(f for f in spec.features if f.key == "price")
    assert (price.mean, round(price.std, 3)) == (25.0, 11.18)
    at = Context("buy", FRIDAY_EVENING)
    assert feature_row(1, 1, Context("buy", FRIDAY_EVENING, {"price": 25}), spec)["p_price"] == 0.0
    assert feature_row(1, 1, at, spec)["p_price"] == 0.0
    assert feature_row(1, 1, Context("buy", FRIDAY_EVENING, {"price": 1e9}), spec)["p_price"] == 5.0  # clipped
    assert feature_row(1, 1, Context("buy", FRIDAY_EVENING, {"price": "cheap"}), spec)["p_price"] == 0.0


def test_keys_a_lineage_has_not_seen_are_ignored_and_never_break_rows():
    spec = derive_spec([_action(1, 2, 1, "like", {"device": "ios"}), _action(2, 3, 1, "like", {"device": "web"})],
                       min_support=0)
    row = feature_row(1, 2, Context("like", FRIDAY_EVENING, {"device": "ios", "brand_new": {"deep": [1, 2]}}), spec)
    assert set(row) == set(spec.names) and row["p_device"] == "ios"
    # Wrong type for the feature's kind: encoded, not an error.
    assert feature_row(1, 2, Context("like", FRIDAY_EVENING, {"device": 7}), spec)["p_device"] == "7"


def test_profiles_join_in_by_user_and_item():
    actions = [_action(u, i) for u in (1, 2) for i in ("a", "b")]
    profiles = Profiles({"1": {"age": 20, "city": "Oslo"}, "2": {"age": 40, "city": "Rome"}},
                        {"a": {"genres": ["drama", "war"]}, "b": {"genres": ["comedy"]}})
    spec = derive_spec(actions, profiles, min_support=0)
    assert {(f.source, f.key, f.kind) for f in spec.features if f.source in ("user", "item")} == {
        ("user", "age", "raw"), ("user", "city", "id"), ("item", "genres", "tags")}
    row = feature_row(2, "a", Context("", FRIDAY_EVENING), spec, profiles)
    assert row["u_city"] == "Rome" and row["i_genres"] == "drama|war" and row["u_age"] == 1.0
    unknown = feature_row(99, "zz", Context("", FRIDAY_EVENING), spec, profiles)
    assert unknown["u_city"] == "" and unknown["i_genres"] == "" and unknown["u_age"] == 0.0


def test_spec_round_trips_through_json_and_defaults_to_the_base_features():
    spec = derive_spec(SEED_ACTIONS * 2, min_support=0)
    assert FeatureSpec.from_json(spec.to_json()) == spec
    assert FeatureSpec.from_json(None).names == list(BASE_NAMES)


def test_negatives_share_their_positive_context_and_serving_predicts_the_main_positive_type():
    actions = [_action(1, "a"), _action(1, "b", 1, "purchase"), _action(2, "a", 1, "purchase"), _action(2, "c", 0)]
    assert serving_action_type(actions) == "purchase"
    assert serving_action_type([]) == ""
    positive = _action(3, "a", 1, "like", {"device": "ios"})
    examples = training_examples([positive], negatives_per_positive=2, seed=1, catalog=["a", "b", "c"])
    assert len(examples) == 3 and all(e.context == examples[0].context for e in examples)


def test_all_positive_data_gets_sampled_negatives_from_unseen_items():
    actions = [_action(u, i) for u in range(3) for i in range(u, u + 2)]
    examples = training_examples(actions, negatives_per_positive=2, seed=7)
    negatives = [e for e in examples if e.label == 0.0]
    assert len(negatives) == 2 * len(actions)
    seen = {(str(a.user_id), str(a.item_id)) for a in actions}
    assert all((str(e.user_id), str(e.item_id)) not in seen for e in negatives)
    assert examples == training_examples(actions, negatives_per_positive=2, seed=7)  # deterministic


def test_one_users_repeated_actions_on_an_item_give_a_few_rows_and_all_reach_the_live_features():
    from easyrec_online.artifacts.catalog import Catalog
    from easyrec_online.artifacts.features.live import LiveReplay

    burst = [_action(42, "A", 1, "purchase") for _ in range(40)]
    others = [_action(u, "A", 0, "rating") for u in range(5)] + [_action(42, "A", 0, "rating")]
    live = LiveReplay(Catalog(24.0))
    examples = training_examples(burst + others, negatives_per_positive=1, seed=3, catalog=["A", "B", "C"],
                                 sampling="always", repeats_max=3, live=live)
    rows = [(str(e.user_id), e.item_id, e.label) for e in examples]
    assert rows.count(("42", "A", 1.0)) == 3 and rows.count(("42", "A", 0.0)) == 1  # the rating is another label
    assert sum(1 for r in rows if r[0] != "42") == 5 and len(examples) == 3 + 3 + 5 + 1
    assert live.catalog.items["A"][0] == 46  # every action counted
    assert len(training_examples(burst, 1, 3, catalog=["A", "B"], sampling="always")) == 80  # no limit: 0
    daily = [_action("farmer", "plot", 1, "watering", timestamp="2026-11-{:02d}T08:00:00Z".format(d)) for d in range(1, 11)]
    assert len(training_examples(daily, 0, 1, repeats_max=3)) == 10  # repeats spread over days all train
    held = {a.event_id for a in burst[-5:]}  # a holdout keeps rows of such a pair too
    capped = training_examples(burst, 0, 3, repeats_max=3, held_out=held)
    assert len(capped) == 6 and sum(1 for e in capped if e.event_id in held) == 3


def test_explicit_negatives_are_not_padded():
    actions = [_action(1, 1, 1), _action(1, 2, 0), _action(2, 1, 0)]
    assert len(training_examples(actions, negatives_per_positive=3, seed=1)) == 3


def test_negatives_come_from_the_lineage_catalog():
    examples = training_examples([_action(1, "a")], negatives_per_positive=2, seed=1, catalog=["a", "b", "c"])
    assert sorted(e.item_id for e in examples if e.label == 0.0) == ["b", "c"]


def test_an_update_never_samples_as_negative_what_the_user_acted_on_before():
    catalog = ["a", "b", "c", "d", "e"]
    examples = training_examples([_action(1, "a"), _action(2, "a")], negatives_per_positive=3, seed=1,
                                 catalog=catalog, acted_on={"1": {"b", "c"}})
    assert sorted(e.item_id for e in examples if e.label == 0.0 and e.user_id == 1) == ["d", "e"]
    others = [e.item_id for e in examples if e.label == 0.0 and e.user_id == 2]
    assert len(others) == 3 and "a" not in others  # another user's history does not matter


def test_csv_lines_match_feature_order():
    spec = derive_spec([_action("u", "i", 1, None, {"price": 1}), _action("v", "i", 1, None, {"price": 3})],
                       min_support=0)
    example = training_examples([_action("u", "i", 1, None, {"price": 3})], 0, 1)[0]
    line = next(iter(csv_lines([example], spec)))
    row = encode(example, spec)
    assert line == CSV_SEPARATOR.join(["1.0", "0.0"] + [row[n] if isinstance(row[n], str) else repr(row[n])
                                                         for n in spec.names]) + "\n"
    assert line.startswith(CSV_SEPARATOR.join(["1.0", "0.0", "u", "i", ""])) and line.endswith("\t1.0\n")
    columns = columns_for_pairs([(1, 2), (3, 4)], Context("view", dt.datetime(2026, 1, 5, 9, tzinfo=dt.timezone.utc)))
    assert columns["item_id"] == ["2", "4"] and columns["action_type"] == ["view", "view"] and columns["dow"] == ["0", "0"]


def test_conversion_label_marks_positive_purchases_only():
    examples = training_examples([_action(1, "a", 1, "purchase"), _action(1, "b", 0, "purchase"),
                                  _action(2, "a", 1, "like")], negatives_per_positive=0, seed=1)
    assert [e.conversion for e in examples] == [1.0, 0.0, 0.0]


def test_columns_for_many_pairs_equal_row_by_row_encoding():
    actions = [_action(u, "i%d" % i, 1, "like", {"device": ["ios", "web"][u % 2], "n": u * i}) for u in range(3)
               for i in range(4)]
    profiles = Profiles({"0": {"age": 20}, "1": {"age": 50, "city": "Oslo"}, "2": {"city": "Rome"}},
                        {"i1": {"genres": ["a", "b"], "price": 3.5}, "i2": {"price": 1}, "i3": {"genres": "c"}})
    spec = derive_spec(actions, profiles, min_support=0)
    assert spec.uses("user") and spec.uses("item") and spec.uses("param")
    pairs = [(u, "i%d" % i) for u in (2, 0, 1, 0) for i in (3, 1, 0, 9)]
    context = Context("like", FRIDAY_EVENING, {"device": "web", "n": 4})
    columns = columns_for_pairs(pairs, context, spec, profiles)
    expected = [encode(training_examples([_action(u, i, 1, "like", {"device": "web", "n": 4},
                                                  "2026-11-27T20:15:00Z")], 0, 1)[0], spec, profiles)
                for u, i in pairs]
    assert columns == {name: [row[name] for row in expected] for name in spec.names}


def test_history_is_the_users_earlier_positives_in_training_and_the_catalogs_at_serving():
    from easyrec_online.artifacts.catalog import Catalog
    from easyrec_online.artifacts.features.sampling import histories_before

    actions = [_action(1, "a", 1, "like", None, "2026-11-01T00:00:00Z"), _action(1, "b", 0, "view", None,
                                                                             "2026-11-02T00:00:00Z"),
               _action(1, "c", 1, "like", None, "2026-11-03T00:00:00Z"), _action(2, "a", 1, "like", None,
                                                                             "2026-11-01T00:00:00Z")]
    spec = derive_spec(actions, with_history=True)
    assert spec.uses("history") and spec.names[-1] == "hist_item_id"
    histories = histories_before(actions, {"1": ["old"]})
    examples = training_examples(actions, 0, 1, histories=histories)
    assert [encode(e, spec)["hist_item_id"] for e in examples] == ["old", "old|a", "old|a", "__none__"]
    catalog = Catalog().add(actions)
    assert catalog.history(1) == ["a", "c"] and catalog.acted_on(1) == {"a", "b", "c"}
    columns = columns_for_pairs([(1, "x"), (3, "x")], Context("like", FRIDAY_EVENING), spec,
                                Profiles(histories=catalog.histories()))
    assert columns["hist_item_id"] == ["a|c", "__none__"]


@pytest.mark.parametrize("sampling, expected_negatives", [("auto", 0), ("always", 4), ("never", 0)])
def test_negative_sampling_beside_explicit_negatives(sampling, expected_negatives):
    # Ratings: half liked, half not (explicit negatives), so "auto" samples none; "always" adds
    # unseen catalog items for each liked one (2 per positive here).
    actions = [_action(1, 10, 1), _action(1, 11, 0), _action(2, 12, 1), _action(2, 13, 0)]
    examples = training_examples(actions, 2, 7, catalog=[str(i) for i in range(10, 30)], sampling=sampling)
    pairs = {(str(a.user_id), str(a.item_id)) for a in actions}
    sampled = [e for e in examples if (str(e.user_id), str(e.item_id)) not in pairs]
    assert len(sampled) == expected_negatives
    seen = {"1": {"10", "11"}, "2": {"12", "13"}}
    assert all(e.label == 0.0 and str(e.item_id) not in seen[str(e.user_id)] for e in sampled)


def test_cold_start_copies_teach_the_model_new_users_and_items_with_their_profiles():
    actions = [_action(u, "i%d" % i, int(i % 2 == 0), "like") for u in range(10) for i in range(10)]
    profiles = Profiles({str(u): {"age": 20 + u} for u in range(10)})
    spec = derive_spec(actions, profiles, min_support=0, with_history=True)
    histories = {a.event_id: ("x",) for a in actions}
    assert not [e for e in training_examples(actions, 0, 1) if e.cold_user or e.cold_item]
    examples = training_examples(actions, 0, 1, histories=histories, cold_start_rate=0.2)
    copies = [e for e in examples if e.cold_user]
    item_copies = [e for e in examples if e.cold_item]
    assert len(examples) == 100 + len(copies) + len(item_copies) and 8 <= len(copies) <= 35
    assert 8 <= len(item_copies) <= 35 and not [e for e in copies if e.cold_item]
    assert examples == training_examples(actions, 0, 1, histories=histories, cold_start_rate=0.2)  # seeded
    item_row = encode(item_copies[0], spec, profiles)
    assert item_row["item_id"] == "" and item_row["user_id"] == str(item_copies[0].user_id)
    for copy in copies:
        row = encode(copy, spec, profiles)
        original = encode(replace(copy, cold_user=False, history=("x",)), spec, profiles)
        assert row["user_id"] == "" and original["user_id"] == str(copy.user_id)
        assert row["hist_item_id"] == "__none__" and original["hist_item_id"] == "x"
        assert {n: v for n, v in row.items() if n not in ("user_id", "hist_item_id")} == \
            {n: v for n, v in original.items() if n not in ("user_id", "hist_item_id")}  # profile kept
    # Serving encodes the users it is told are new the same way.
    columns = columns_for_pairs([(3, "i1"), (4, "i1"), (3, "new")], Context("like", FRIDAY_EVENING), spec, profiles,
                                cold_users={"4"}, cold_items={"new"})
    assert columns["item_id"] == ["i1", "i1", ""]
    assert columns["user_id"] == ["3", "", "3"] and columns["u_age"][1] == encode(
        Example(4, "i1", Context("like", FRIDAY_EVENING), cold_user=True), spec, profiles)["u_age"]


def test_sample_unseen_draws_distinct_unseen_items_whatever_the_user_has_seen():
    import random

    from easyrec_online.artifacts.features.sampling import sample_unseen

    items = [str(i) for i in range(100)]
    rng = random.Random(3)
    for seen_count, k in ((0, 5), (10, 5), (49, 5), (60, 5), (97, 5), (100, 5)):
        seen = set(items[:seen_count])
        picked = sample_unseen(rng, items, seen, k)
        assert len(picked) == min(k, 100 - seen_count) and len(set(picked)) == len(picked)
        assert not set(picked) & seen
    # Uniform over the unseen items: each of 50 is drawn about equally often.
    counts = {}
    for _ in range(2000):
        for item in sample_unseen(rng, items, set(items[:50]), 2):
            counts[item] = counts.get(item, 0) + 1
    assert set(counts) == set(items[50:]) and max(counts.values()) < 2 * min(counts.values())


def test_a_request_moment_long_before_the_catalogs_time_is_a_finite_trend_not_an_overflow():
    """A /recommend context timestamp of 0 (1970) raised OverflowError in the trend's decay: a 500."""
    import math

    from easyrec_online.artifacts.catalog import Catalog
    from easyrec_online.artifacts.features.live import live_columns

    catalog = Catalog().add([_action(1, "a", 1, "like", None, "2026-11-01T00:00:00Z"),
                             _action(2, "b", 1, "like", None, "2026-11-02T00:00:00Z")])
    assert math.isfinite(catalog.trend_factor(0.0)) and catalog.trend_at("b", 0.0) >= catalog.trend_at("a", 0.0)
    columns = live_columns(catalog, [], ["a", "b"], 0.0)
    assert all(math.isfinite(v) for v in columns["item_trend"])
