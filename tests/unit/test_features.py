import datetime as dt

from easyrec_online.actions import ActionIn, StoredAction
from easyrec_online.features import (
    CSV_SEPARATOR, FEATURE_NAMES, Context, columns_for_pairs, csv_lines, feature_row, serving_action_type,
    training_rows,
)


def _action(user, item, label=1, action_type=None):
    return StoredAction.accept(ActionIn.model_validate({"user_id": user, "item_id": item, "label": label,
                                                        "action_type": action_type}))


def test_training_and_serving_build_identical_rows():
    action = StoredAction.accept(ActionIn.model_validate({
        "user_id": 123, "item_id": "a\tb,c", "label": 1, "action_type": "rating",
        "timestamp": "2026-11-27T20:15:00Z"}))  # a Friday evening
    row = training_rows([action], negatives_per_positive=0, seed=1)[0]
    serving = columns_for_pairs([(123, "a\tb,c")], Context("rating", dt.datetime(2026, 11, 27, 20, 15, tzinfo=dt.timezone.utc)))
    assert {name: [row.features[name]] for name in FEATURE_NAMES} == serving
    assert row.features["hour"] == "20" and row.features["dow"] == "4" and row.features["action_type"] == "rating"
    assert CSV_SEPARATOR not in row.features["item_id"]


def test_int_and_string_ids_are_one_id():
    context = Context("", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    assert feature_row(6, 7, context) == feature_row("6", "7", context)


def test_negatives_share_their_positive_context_and_serving_predicts_the_main_positive_type():
    actions = [_action(1, "a"), _action(1, "b", 1, "purchase"), _action(2, "a", 1, "purchase"), _action(2, "c", 0)]
    assert serving_action_type(actions) == "purchase"
    assert serving_action_type([]) == ""
    positive = _action(3, "a", 1, "like")
    rows = training_rows([positive], negatives_per_positive=2, seed=1, catalog=["a", "b", "c"])
    assert len(rows) == 3 and all(r.features["action_type"] == "like" for r in rows)
    assert len({(r.features["hour"], r.features["dow"]) for r in rows}) == 1


def test_all_positive_data_gets_sampled_negatives_from_unseen_items():
    actions = [_action(u, i) for u in range(3) for i in range(u, u + 2)]
    rows = training_rows(actions, negatives_per_positive=2, seed=7)
    negatives = [r for r in rows if r.label == 0.0]
    assert len(negatives) == 2 * len(actions)
    seen = {(str(a.user_id), str(a.item_id)) for a in actions}
    assert all((r.features["user_id"], r.features["item_id"]) not in seen for r in negatives)
    assert rows == training_rows(actions, negatives_per_positive=2, seed=7)  # deterministic


def test_explicit_negatives_are_not_padded():
    actions = [_action(1, 1, 1), _action(1, 2, 0), _action(2, 1, 0)]
    assert len(training_rows(actions, negatives_per_positive=3, seed=1)) == 3


def test_negatives_come_from_the_lineage_catalog():
    rows = training_rows([_action(1, "a")], negatives_per_positive=2, seed=1, catalog=["a", "b", "c"])
    assert sorted(r.features["item_id"] for r in rows if r.label == 0.0) == ["b", "c"]


def test_csv_lines_match_feature_order():
    row = training_rows([_action("u", "i")], 0, 1)[0]
    line = next(iter(csv_lines([row])))
    assert line == CSV_SEPARATOR.join(["1.0", "0.0"] + [row.features[n] for n in FEATURE_NAMES]) + "\n"
    assert line.startswith(CSV_SEPARATOR.join(["1.0", "0.0", "u", "i", ""]))
    columns = columns_for_pairs([(1, 2), (3, 4)], Context("view", dt.datetime(2026, 1, 5, 9, tzinfo=dt.timezone.utc)))
    assert columns["item_id"] == ["2", "4"] and columns["action_type"] == ["view", "view"] and columns["dow"] == ["0", "0"]


def test_conversion_label_marks_positive_purchases_only():
    rows = training_rows([_action(1, "a", 1, "purchase"), _action(1, "b", 0, "purchase"), _action(2, "a", 1, "like")],
                         negatives_per_positive=0, seed=1)
    assert [r.conversion for r in rows] == [1.0, 0.0, 0.0]
