"""Live features: the same numbers for a training row and for a serving request, computed as of the
moment of the action (never from its future), and item-to-item similarities."""
import math

import pytest

from easyrec_online.artifacts.catalog import Catalog
from easyrec_online.artifacts.cf import item_neighbours, refresh_neighbours
from easyrec_online.artifacts.features.derive import derive_spec
from easyrec_online.artifacts.features.encode import Context, Example, columns_for_pairs, encode
from easyrec_online.artifacts.features.live import LIVE_KEYS, LiveReplay, live_columns, live_row
from easyrec_online.artifacts.features.sampling import training_examples
from easyrec_online.ingest.actions import ActionIn, StoredAction, parse_timestamp


def _action(user, item, label=1, at=0, action_type="like"):
    return StoredAction.accept(ActionIn.model_validate({
        "user_id": user, "item_id": item, "label": label, "action_type": action_type,
        "timestamp": 1764547200 + at}))


def _catalog():
    # Users who like a also like b; c goes with d; user 9 disliked e.
    actions = [_action(u, i, at=10 * n) for n, (u, i) in enumerate(
        [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "a"), (3, "b"), (4, "c"), (4, "d"), (5, "c"), (5, "d")])]
    actions.append(_action(9, "e", label=0, at=200))
    catalog = Catalog(1.0).add(actions)
    refresh_neighbours(catalog)
    return catalog


def test_similar_items_are_the_co_liked_ones_with_shrinkage():
    catalog = _catalog()
    assert catalog.neighbours["a"][0][0] == "b" and "c" not in {n for n, _ in catalog.neighbours["a"]}
    # co(a, b) = 3 users, acted(a) = 3, liked(b) = 3: 3 / (3 + 10)
    assert catalog.neighbours["a"][0][1] == pytest.approx(3 / 13.0, abs=1e-6)
    # itself last, by the same formula: liked(a) = 3, acted(a) = 3
    assert catalog.neighbours["a"][-1] == ["a", pytest.approx(3 / 13.0, abs=1e-6)]
    assert "e" not in catalog.neighbours  # liked by no one: similar to nothing, itself included
    assert item_neighbours({"u": [["x", "", 0]]}) == {}  # nothing liked: nothing similar


def test_ease_similarities_are_the_closed_form_weights_of_the_co_liked_items():
    import numpy as np

    catalog = _catalog()
    ease = item_neighbours(catalog.users, similarity="ease")
    assert ease["a"][0][0] == "b" and {n for n, _ in ease["a"]} <= {"b"}  # c, d: other users; never itself
    # Steck's B for the items a, b, c, d (e was never liked): B = -P / diag(P), P = (X'X + lambda I)^-1
    likes = np.array([[1, 1, 0, 0]] * 3 + [[0, 0, 1, 1]] * 2, dtype=float)
    inverse = np.linalg.inv(likes.T @ likes + 250.0 * np.eye(4))
    assert ease["a"][0][1] == pytest.approx(-inverse[0, 1] / inverse[1, 1], abs=1e-6)
    assert item_neighbours(catalog.users, similarity="auto") == ease  # a small catalog: EASE
    assert item_neighbours({"u": [["x", "", 0]]}, similarity="ease") == {}


def test_a_rankings_remembered_spread_follows_new_similarities():
    catalog = _catalog()
    history = [["a", "like", 1], ["c", "like", 1]]
    many = ["b", "d"] + ["x{}".format(i) for i in range(100)]
    before = live_columns(catalog, history, many, 1764547500.0)
    assert live_columns(catalog, history, many, 1764547500.0)["cf_pos"][:2] == pytest.approx(before["cf_pos"][:2])
    # New similarities (as a replay's refresh sets them): the next ranking reads them, not the memo.
    catalog.neighbours = {"a": [["d", 0.5]]}
    catalog.__dict__.pop("_neighbour_index", None)
    after = live_columns(catalog, history, many, 1764547500.0)
    assert list(after["cf_pos"][:2]) == pytest.approx([0.0, 0.9 * 0.5])
    assert list(after["cf_pos"][:2]) == pytest.approx(live_columns(catalog, history, many[:2], 1764547500.0)["cf_pos"])


def test_one_definition_for_a_handful_of_items_and_for_a_ranking():
    catalog = _catalog()
    history = [["a", "like", 1], ["e", "view", 0], ["c", "like", 1]]
    many = ["b", "d", "a", "zz"] + ["x{}".format(i) for i in range(100)]  # over the small-list path's size
    big = live_columns(catalog, history, many, 1764547500.0)
    small = live_columns(catalog, history, many[:4], 1764547500.0)
    for key in LIVE_KEYS:
        assert big[key][:4] == pytest.approx(small[key]), key
    # b is similar to a (liked 3 actions ago: weight 0.9**2), d to c (liked last: weight 1)
    assert small["cf_pos"][0] == pytest.approx(0.81 * catalog.neighbours["a"][0][1])
    assert small["cf_pos"][1] == pytest.approx(1.0 * dict(catalog.neighbours["c"])["d"])
    # a itself: liked 3 actions ago (its similarity to itself); e (disliked) resembles nothing
    assert small["cf_pos"][2] == pytest.approx(0.81 * dict(catalog.neighbours["a"])["a"])
    assert small["cf_neg"] == [0.0] * 4
    assert small["item_pos"][0] == pytest.approx(math.log1p(3)) and small["item_rate"][3] == 0.5  # unknown zz
    assert small["user_actions"] == [math.log1p(3)] * 4 and small["user_rate"][0] == pytest.approx(3 / 5.0)
    # trend: 3 positives of b, 1 hour half-life, read 1 hour after the newest of them
    late = live_columns(catalog, history, ["b"], catalog.newest + 3600)
    now = live_columns(catalog, history, ["b"], catalog.newest)
    assert math.expm1(late["item_trend"][0]) == pytest.approx(math.expm1(now["item_trend"][0]) / 2)


def test_the_trend_read_later_is_the_trend_decayed_and_adding_is_constant_time():
    catalog = Catalog(1.0)
    catalog.add([_action(1, "a", at=0), _action(2, "a", at=3600)])
    assert catalog.trend_at("a", catalog.newest) == pytest.approx(1.5)
    catalog.add([_action(3, "a", at=3600 * 100)])  # far later: the anchor moves, the scores stay right
    assert catalog.trend_at("a", catalog.newest) == pytest.approx(1.0 + 1.5 * 0.5 ** 99)
    assert Catalog.from_json(catalog.to_json()).trend_at("a", catalog.newest) == pytest.approx(
        catalog.trend_at("a", catalog.newest))


def test_training_rows_see_the_catalog_as_it_was_just_before_their_action():
    actions = [_action(1, "a", at=0), _action(2, "a", at=10), _action(2, "b", at=20)]
    replay = LiveReplay(Catalog(1.0))
    examples = training_examples(actions, 1, 3, catalog=["a", "b", "c", "d"], sampling="always", live=replay)
    first, second = [e for e in examples if e.item_id == "a" and e.label == 1]
    assert first.live["item_pos"] == 0.0 and first.live["user_actions"] == 0.0  # nothing before it
    assert second.live["item_pos"] == pytest.approx(math.log1p(1))  # user 1's like of a, not its own
    negative = [e for e in examples if e.label == 0 and e.event_id == actions[0].event_id]
    assert negative and negative[0].live["item_pos"] == 0.0  # a negative shares its positive's moment
    assert replay.catalog.items["a"][1] == 2  # the replay advanced past every action


def test_a_training_row_and_a_serving_request_encode_the_live_features_alike():
    catalog = _catalog()
    actions = [_action(1, "a", at=300), _action(1, "d", label=0, at=310)]
    examples = training_examples(actions, 1, 3, catalog=["a", "b", "c", "d"], sampling="always",
                                 live=LiveReplay(catalog))
    spec = derive_spec(actions, live_examples=examples)
    assert [f.name for f in spec.features if f.source == "live"] == ["l_" + k for k in LIVE_KEYS]
    moment = parse_timestamp(actions[0].timestamp)
    history = catalog.users["1"]
    columns = live_columns(catalog, history, ["b", "c"], moment.timestamp())
    served = columns_for_pairs([(1, "b"), (1, "c")], Context("like", moment), spec, live=columns)
    for index, item in enumerate(["b", "c"]):
        row = encode(Example(1, item, Context("like", moment), live=live_row(columns, index)), spec)
        assert {name: served[name][index] for name in spec.names} == row


def test_a_catalog_copy_is_independent_of_its_original():
    original = Catalog(24.0).add([_action(1, "a"), _action(1, "b", label=0, at=60), _action(2, "a", at=120)])
    refresh_neighbours(original)
    before = original.to_json()
    copy = original.copy()
    assert copy.to_json() == before
    copy.add([_action(1, "c", at=180), _action(3, "a", at=240)])
    refresh_neighbours(copy)
    assert original.to_json() == before
    assert copy.items["a"][0] == 3 and original.items["a"][0] == 2
    assert [e[0] for e in copy.users["1"]] == ["a", "b", "c"] and len(original.users["1"]) == 2


def test_one_users_burst_counts_in_the_items_popularity_at_most_repeats_max_times():
    # Thirty users liked b; one user buys a forty times within a minute, then once more two hours on.
    crowd = [_action(u, "b", at=u) for u in range(30)]
    burst = [_action(42, "a", at=100 + k, action_type="purchase") for k in range(40)]
    later = [_action(42, "a", at=100 + 2 * 3600, action_type="purchase")]
    catalog = Catalog(24.0, repeats_max=3).add(crowd + burst)
    assert catalog.items["a"][:2] == [3, 3] and catalog.items["b"][:2] == [30, 30]
    assert catalog.popular(1) == ["b"] and catalog.trend_at("a", 1764547400) < catalog.trend_at("b", 1764547400)
    assert catalog.actions == 70 and len(catalog.users["42"]) == 40  # the user's own history has them all
    # The limit and the open bursts carry over a copy and a JSON round trip (the next update's catalog).
    for carried in (catalog.copy(), Catalog.from_json(catalog.to_json())):
        carried.add([_action(42, "a", at=200, action_type="purchase")])
        assert carried.items["a"][0] == 3
        carried.add(later)  # a repeat hours later counts again
        assert carried.items["a"][0] == 4 and len(carried.bursts) == 1
    # Without a limit every action counts.
    assert Catalog(24.0).add(crowd + burst).items["a"][:2] == [40, 40]


def test_a_live_value_beyond_what_training_saw_reads_as_the_edge_of_that_range():
    # The lineage's users had at most 3 recent actions; one with 40 is read as one with 3, by the
    # training rows' encoding and by serving's alike.
    catalog = _catalog()
    actions = [_action(u, i, at=10 * n) for n, (u, i) in enumerate([(1, "a"), (1, "b"), (1, "c"), (2, "a")])]
    examples = training_examples(actions, 1, 3, sampling="always", live=LiveReplay(Catalog(1.0)))
    spec = derive_spec(actions, live_examples=examples)
    feature = next(f for f in spec.features if f.key == "user_actions")
    assert (feature.lo, feature.hi) == (0.0, pytest.approx(math.log1p(2)))  # the third action saw two before it
    moment = parse_timestamp(actions[-1].timestamp)
    busy = [["a", "like", 1]] * 40
    usual = [["a", "like", 1]] * 2
    for history in (busy, usual):
        columns = live_columns(catalog, history, ["b"], moment.timestamp())
        served = columns_for_pairs([(1, "b")], Context("like", moment), spec, live=columns)[feature.name][0]
        row = encode(Example(1, "b", Context("like", moment), live=live_row(columns, 0)), spec)[feature.name]
        assert served == pytest.approx(row) == pytest.approx((math.log1p(2) - feature.mean) / feature.std)
    # A lineage recorded before the bounds existed reads its spec without them.
    old = [{k: v for k, v in f.to_dict().items() if k not in ("lo", "hi")} for f in spec.features]
    assert all(f.lo is None for f in type(spec).from_json(old).features)
    # The item side stays unbounded: an item's counts grow for as long as the lineage lives.
    assert all(f.lo is None and f.hi is None for f in spec.features if f.key in ("item_pos", "item_actions"))


def test_the_self_term_counts_the_users_own_actions_on_each_item_newest_weighing_most():
    from easyrec_online.artifacts.features.live import RECENCY

    history = [["a", "purchase", 1], ["b", "view", 0], ["a", "view", 0], ["c", "like", 1]]
    for items in (["a", "b", "c", "d"], ["a", "b", "c", "d"] + ["x{}".format(k) for k in range(70)]):  # row, ranking
        columns = live_columns(Catalog(), history, items, 0.0)
        own = [float(v) for v in columns["self"][:4]]
        assert own == pytest.approx([RECENCY ** 3 - RECENCY ** 1, -RECENCY ** 2, 1.0, 0.0]), own
        assert not any(float(v) for v in columns["self"][4:])
