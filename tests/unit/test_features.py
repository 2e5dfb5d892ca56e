from easyrec_online.actions import ActionIn, StoredAction
from easyrec_online.features import (
    CSV_SEPARATOR, FEATURE_NAMES, columns_for_pairs, csv_lines, feature_row, serving_columns, training_rows,
)


def _action(user, item, label=1):
    return StoredAction.accept(ActionIn.model_validate({"user_id": user, "item_id": item, "label": label}))


def test_training_and_serving_encode_ids_identically():
    action = _action(123, "a\tb,c")
    row = training_rows([action], negatives_per_positive=0, seed=1)[0]
    columns = serving_columns(123, ["a\tb,c"])
    assert {name: [row.features[name]] for name in FEATURE_NAMES} == columns
    assert CSV_SEPARATOR not in row.features["item_id"]


def test_int_and_string_ids_are_one_id():
    assert feature_row(6, 7) == feature_row("6", "7")


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
    line = next(iter(csv_lines(training_rows([_action("u", "i")], 0, 1))))
    assert line == CSV_SEPARATOR.join(["1.0", "u", "i"]) + "\n"
    assert columns_for_pairs([(1, 2), (3, 4)]) == {"user_id": ["1", "3"], "item_id": ["2", "4"]}
