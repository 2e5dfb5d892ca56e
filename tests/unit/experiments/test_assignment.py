"""Assignment: sticky, split as weighted, independent across layers; interleaving: team draft."""
import collections

from easyrec_online.experiments.assignment import arm_of, assign, free_range, in_experiment
from easyrec_online.experiments.definition import Arm, Experiment
from easyrec_online.experiments.interleave import SHARED, credited_arms, team_draft


def _experiment(experiment_id="exp-1", weights=(50, 50), layer="default", buckets=(0, 1000), salt="s1",
                created_at="2026-12-07T00:00:00.000Z", kind="ab"):
    arms = [Arm(name="arm{}".format(k), strategy={"type": "current"}, weight=w) for k, w in enumerate(weights)]
    return Experiment(experiment_id=experiment_id, name="n", kind=kind, arms=arms, salt=salt, layer=layer,
                      buckets=list(buckets), created_at=created_at)


USERS = ["user-{}".format(k) for k in range(20000)]


def test_assignment_is_sticky_and_split_as_weighted():
    experiment = _experiment(weights=(20, 30, 50))
    first = [arm_of(experiment, u).name for u in USERS]
    assert first == [arm_of(experiment, u).name for u in USERS]  # the same user, the same arm, every time
    counts = collections.Counter(first)
    for name, share in (("arm0", 0.2), ("arm1", 0.3), ("arm2", 0.5)):
        assert abs(counts[name] / len(USERS) - share) < 0.015


def test_another_salt_is_another_split_and_layers_are_independent():
    one, other = _experiment(salt="a"), _experiment(salt="b")
    same = sum(arm_of(one, u).name == arm_of(other, u).name for u in USERS) / len(USERS)
    assert 0.47 < same < 0.53  # independent: agree by chance only
    # An experiment on half of layer "ranking": its users split between another layer's arms alike.
    half = _experiment(layer="ranking", buckets=(0, 500))
    inside = [u for u in USERS if in_experiment(half, u)]
    assert 0.47 < len(inside) / len(USERS) < 0.53
    shares = collections.Counter(arm_of(one, u).name for u in inside)
    assert abs(shares["arm0"] / len(inside) - 0.5) < 0.02


def test_a_user_is_served_by_the_oldest_running_experiment_that_has_them():
    old = _experiment("exp-old", layer="a", created_at="2026-12-01T00:00:00.000Z")
    new = _experiment("exp-new", layer="b", created_at="2026-12-02T00:00:00.000Z")
    assert assign([new, old], "u1")[0].experiment_id == "exp-old"
    old.status = "stopped"
    assert assign([new, old], "u1")[0].experiment_id == "exp-new"
    assert assign([], "u1") is None


def test_free_ranges_never_overlap():
    assert free_range([], 300) == [0, 300]
    assert free_range([[0, 300]], 300) == [300, 600]
    assert free_range([[300, 600]], 300) == [0, 300]
    assert free_range([[0, 300], [600, 1000]], 300) == [300, 600]
    assert free_range([[0, 300], [600, 1000]], 301) is None
    assert free_range([[0, 1000]], 1) is None


def test_team_draft_takes_from_both_rankings_without_duplicates_and_is_reproducible():
    a = ["a1", "a2", "a3", "s1", "a4", "a5"]
    b = ["s1", "b1", "b2", "b3", "b4", "b5"]
    items, arms = team_draft(a, b, ("A", "B"), 6, "rec-1")
    assert len(items) == len(set(items)) == 6
    assert (items, arms) == team_draft(a, b, ("A", "B"), 6, "rec-1")
    assert sorted(collections.Counter(arms).values()) == [3, 3]  # each round one pick each
    for item, arm in zip(items, arms):
        assert item in (a if arm == "A" else b)
    # Who picks first is a fair coin over requests.
    firsts = collections.Counter(team_draft(a, b, ("A", "B"), 2, "rec-{}".format(k))[1][0] for k in range(2000))
    assert abs(firsts["A"] - 1000) < 100
    # Identical rankings: the list is that ranking.
    assert team_draft(a, a, ("A", "B"), 6, "rec-2")[0] == a
    # One ranking runs out: the other fills the list.
    assert set(team_draft(["x"], b, ("A", "B"), 4, "rec-3")[0]) == {"x", "s1", "b1", "b2"}


def test_an_item_both_arms_would_show_credits_neither():
    a = ["a1", "s1", "a2", "a3", "s2"]
    b = ["s1", "b1", "b2", "s2", "b3"]
    items, picked = team_draft(a, b, ("A", "B"), 4, "rec-1")
    credits = dict(zip(items, credited_arms(items, picked, a, b, 4)))
    assert credits["s1"] == SHARED  # in both top-4s, whoever picked it
    assert all(credit == (SHARED if item == "s1" else "A" if item in a else "B") for item, credit in credits.items())
    # s2 is in B's top 4 but not in A's: if shown, it is B's (or A's, had A picked it) alone.
    assert credited_arms(["s2"], ["B"], a, b, 4) == ["B"]
    # Identical arms share everything: no success can ever vote.
    items, picked = team_draft(a, a, ("A", "B"), 5, "rec-2")
    assert set(credited_arms(items, picked, a, a, 5)) == {SHARED}
