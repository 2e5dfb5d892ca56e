"""Attribution and results from an experiment's log."""
import datetime as dt
import random

from easyrec_online.experiments.definition import Arm, Experiment, Impression, Success
from easyrec_online.experiments.results import PREFERENCE_CAP, outcomes, preference, results

T0 = dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc)


def _at(seconds):
    return (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _experiment(kind="ab", window=3600):
    arms = [Arm("control", {"type": "current"}, 50.0 if kind == "ab" else None),
            Arm("treatment", {"type": "popularity"}, 50.0 if kind == "ab" else None)]
    return Experiment(experiment_id="exp-1", name="n", kind=kind, arms=arms, salt="s", layer="default",
                      buckets=[0, 1000], created_at=_at(0), attribution_window_s=window)


def _impression(rec, user, at, items, arm="control", item_arms=()):
    return Impression(recommendation_id=rec, experiment_id="exp-1", arm=arm, user_id=user, at=_at(at),
                      items=list(items), item_arms=list(item_arms))


def test_a_success_goes_to_the_impression_it_names_else_the_latest_that_showed_its_item():
    experiment = _experiment()
    log = [_impression("r1", "u", 0, ["a", "b"]), _impression("r2", "u", 100, ["b", "c"])]
    named = Success("e1", "u", "b", _at(200), recommendation_id="r1")
    unnamed = Success("e2", "u", "c", _at(200))
    (user,) = outcomes(experiment, log, [named, unnamed])
    assert (user.impressions, user.successes) == (2, 2)
    # An impression converts once: buying b again after r1, or a (naming an unknown id: the latest
    # impression that showed a, r1 again), adds nothing; c, shown by r2, does.
    again = [named, Success("e3", "u", "b", _at(300), recommendation_id="r1"),
             Success("e4", "u", "a", _at(300), recommendation_id="nope")]
    assert outcomes(experiment, log, again)[0].successes == 1
    assert outcomes(experiment, log, again + [Success("e5", "u", "c", _at(300))])[0].successes == 2


def test_outside_the_window_or_never_shown_counts_nothing():
    experiment = _experiment(window=600)
    log = [_impression("r1", "u", 0, ["a"])]
    late = Success("e1", "u", "a", _at(700))
    other_item = Success("e2", "u", "z", _at(10))
    other_user = Success("e3", "v", "a", _at(10))
    before = Success("e4", "u", "a", _at(-60))
    assert outcomes(experiment, log, [late, other_item, other_user, before])[0].successes == 0


def test_interleaving_credits_the_arm_that_contributed_the_item():
    experiment = _experiment(kind="interleaving")
    log = [_impression("r1", "u", 0, ["a", "b"], arm="interleaved", item_arms=["control", "treatment"])]
    (user,) = outcomes(experiment, log, [Success("e1", "u", "b", _at(5))])
    assert user.credits == {"treatment": 1}


def test_a_users_preference_is_their_credits_difference_capped_and_shared_items_count_for_neither():
    experiment = _experiment(kind="interleaving")
    items = ["t1", "t2", "t3", "t4", "t5", "c1", "s"]
    owners = ["treatment"] * 5 + ["control", "both"]
    log = [_impression("r1", "u", 0, items, arm="interleaved", item_arms=owners)]
    bought = [Success("e{}".format(k), "u", item, _at(5 + k)) for k, item in enumerate(items)]
    (user,) = outcomes(experiment, log, bought)
    assert user.credits == {"treatment": 5, "control": 1, "both": 1}
    assert preference(user, "control", "treatment") == PREFERENCE_CAP == 3  # 5 - 1, capped
    assert preference(user, "treatment", "control") == -3
    (only_shared,) = outcomes(experiment, log, [bought[-1]])
    assert only_shared.successes == 1 and preference(only_shared, "control", "treatment") == 0


def _simulated(experiment, users, rates, seed, skew=None):
    """Users assigned by name parity (or `skew`), each shown 3 lists, succeeding with their arm's rate."""
    rng = random.Random(seed)
    impressions, successes = [], []
    names = [a.name for a in experiment.arms]
    for k in range(users):
        user = "u{}".format(k)
        arm = names[k % 2] if skew is None else skew(k)
        for j in range(3):
            rec = "{}-{}".format(user, j)
            if experiment.kind == "interleaving":
                items, item_arms = ["x{}".format(j), "y{}".format(j)], names
                impressions.append(_impression(rec, user, k * 10 + j, items, "interleaved", item_arms))
                for item, owner in zip(items, item_arms):
                    if rng.random() < rates[owner]:
                        successes.append(Success(rec + item, user, item, _at(k * 10 + j + 1)))
            else:
                impressions.append(_impression(rec, user, k * 10 + j, ["i{}".format(j)], arm))
                if rng.random() < rates[arm]:
                    successes.append(Success(rec + "s", user, "i{}".format(j), _at(k * 10 + j + 1)))
    return impressions, successes


def test_a_clear_winner_is_declared_and_an_a_a_test_declares_none():
    experiment = _experiment()
    found = results(experiment, *_simulated(experiment, 2000, {"control": 0.10, "treatment": 0.20}, seed=1))
    (comparison,) = found["comparisons"]
    assert comparison["significant"] and comparison["difference"] > 0 and found["winner"] == "treatment"
    assert found["arms"][1]["success_per_impression"]["ci95"][0] > found["arms"][0]["success_per_impression"]["value"]
    assert "mSPRT" in found["method"]["test"] and not found["srm"]["mismatch"]
    same = results(experiment, *_simulated(experiment, 2000, {"control": 0.15, "treatment": 0.15}, seed=2))
    assert same["winner"] is None and not same["comparisons"][0]["significant"]


def test_a_broken_split_is_flagged():
    experiment = _experiment()
    skewed = results(experiment, *_simulated(experiment, 2000, {"control": 0.1, "treatment": 0.1}, seed=3,
                                             skew=lambda k: "control" if k % 5 < 3 else "treatment"))
    assert skewed["srm"]["mismatch"] and "sample ratio mismatch" in skewed["srm"]["warning"]


def test_interleaving_finds_the_preferred_arm():
    experiment = _experiment(kind="interleaving")
    found = results(experiment, *_simulated(experiment, 600, {"control": 0.10, "treatment": 0.25}, seed=4))
    assert found["winner"] == "treatment" and found["comparisons"][0]["preference"] > 0
    assert "team-draft" in found["method"]["merge"]


def _arrivals(experiment, users, rates, rng):
    """Users arriving one per second, each shown 2 lists a second apart, buying with their arm's rate
    (interleaving: each item of its contributing arm)."""
    impressions, successes = [], []
    names = [a.name for a in experiment.arms]
    for k in range(users):
        user, arm = "u{}".format(k), names[rng.random() < 0.5]
        for j in range(2):
            at, rec = k + j, "u{}-{}".format(k, j)
            if experiment.kind == "interleaving":
                items, item_arms = ["x", "y"], names[:] if rng.random() < 0.5 else names[::-1]
                impressions.append(_impression(rec, user, at, items, "interleaved", item_arms))
                for item, owner in zip(items, item_arms):
                    if rng.random() < rates[owner]:
                        successes.append(Success(rec + item, user, item, _at(at + 0.5)))
            else:
                impressions.append(_impression(rec, user, at, ["i"], arm))
                if rng.random() < rates[arm]:
                    successes.append(Success(rec, user, "i", _at(at + 0.5)))
    return impressions, successes


def _ever_significant(experiment, impressions, successes, reads):
    """Results read at `reads` moments, each on the log as it stood then: significant at any of them?"""
    for moment in reads:
        now = _at(moment)
        found = results(experiment, [i for i in impressions if i.at <= now], [s for s in successes if s.at <= now])
        if found["winner"] is not None:
            return True
    return False


def test_reading_results_again_and_again_keeps_a_null_experiment_below_alpha():
    """A/A and null interleaving, 80 runs each, read every 50 users: named a winner at most alpha of the time."""
    rng = random.Random(21)
    for kind, rates in (("ab", {"control": 0.2, "treatment": 0.2}), ("interleaving", {"control": 0.1, "treatment": 0.1})):
        experiment = _experiment(kind=kind)
        wrong = sum(_ever_significant(experiment, *_arrivals(experiment, 300, rates, rng), range(50, 302, 50))
                    for _ in range(80))
        assert wrong <= 4, (kind, wrong)


def test_early_checks_do_not_change_when_read_later():
    experiment = _experiment()
    impressions, successes = _arrivals(experiment, 200, {"control": 0.1, "treatment": 0.5}, random.Random(3))
    early = results(experiment, [i for i in impressions if i.at <= _at(100)], [s for s in successes if s.at <= _at(100)])
    later = results(experiment, impressions, successes)
    # The p-value is a running minimum over the same early checks, so it can only have fallen since.
    assert later["comparisons"][0]["always_valid_p"] <= early["comparisons"][0]["always_valid_p"]
    low_early, high_early = early["comparisons"][0]["always_valid_ci95"]
    low, high = later["comparisons"][0]["always_valid_ci95"]
    assert low_early <= low <= high <= high_early  # and the confidence sequence only narrows
