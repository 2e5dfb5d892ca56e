"""An experiment's log -> per-user outcomes (attribution) -> results with the method named.

Attribution. A success is credited to one impression of the same user that showed its item, at most
`attribution_window_s` before it: the impression its action names (`recommendation_id`), else the
latest such impression. A/B counts an impression once however many of its items were acted on (a
conversion), so the rate per impression is a rate in [0, 1]. In an interleaving experiment each
item of a list counts once, for the arm that contributed it (neither, for an item both arms would
have shown); a user's preference is their credits' difference (PREFERENCE_CAP).

The sequential test (statistics.py) is checked each time another CHECK_EVERY users have been
served, on the data as it stood at that moment (impressions and successes up to then), and once more
on all the data now. Earlier checks are rebuilt identically at every read (up to successes still in
flight), so the always-valid p-value, the running minimum over the checks, and the confidence
sequence, the running intersection, are one sequence whichever moment results are read at: reading
them as often as wanted keeps the false-positive rate at most ALPHA. With several treatment arms,
each is tested at ALPHA / (arms - 1) (Bonferroni), so that the chance of naming any false winner
stays within ALPHA.
"""
from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from easyrec_online.experiments import statistics as st
from easyrec_online.experiments.definition import Experiment, Impression, Success
from easyrec_online.ingest.actions import parse_timestamp

CHECK_EVERY = 20  # users between two checks of the sequential test
# The mSPRT's mixture scales, unless the experiment names one (mixing_sd): differences of rates per
# impression from a quarter of a percentage point to 32 points (A/B), mean preferences from 0.05 to
# 0.8 (interleaving). Fixed in advance: nothing about the test is read off the data.
AB_TAUS = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
INTERLEAVING_TAUS = (0.05, 0.1, 0.2, 0.4, 0.8)
CLOCK_SKEW_S = 5.0  # an action may be accepted this much before the impression it follows is logged


@dataclass
class UserOutcome:
    user: str
    arm: str  # A/B: the user's arm; interleaving: ""
    first_at: float
    impressions: int = 0
    successes: int = 0
    credits: Dict[str, int] = field(default_factory=dict)  # interleaving: arm -> credited successes
    # (moment, "i" impression | "s" success, the credited arm for interleaving) in time order
    events: List[Tuple[float, str, str]] = field(default_factory=list)


def _epoch(text: str) -> float:
    return parse_timestamp(text).timestamp()


def outcomes(experiment: Experiment, impressions: Sequence[Impression], successes: Sequence[Success]) -> List[UserOutcome]:
    """Per-user outcomes, in the order users were first served."""
    by_user: Dict[str, List[Tuple[float, Impression]]] = collections.defaultdict(list)
    by_id: Dict[str, Tuple[float, Impression]] = {}
    for impression in impressions:
        moment = _epoch(impression.at)
        by_user[impression.user_id].append((moment, impression))
        by_id[impression.recommendation_id] = (moment, impression)
    users: Dict[str, UserOutcome] = {}
    for user, served in by_user.items():
        served.sort(key=lambda pair: (pair[0], pair[1].recommendation_id))
        users[user] = UserOutcome(user=user, arm=served[0][1].arm if experiment.kind == "ab" else "",
                                  first_at=served[0][0], impressions=len(served),
                                  events=[(moment, "i", "") for moment, _ in served])
    credited = set()
    window = float(experiment.attribution_window_s)
    for success in sorted(successes, key=lambda s: (s.at, s.event_id)):
        served = by_user.get(success.user_id)
        if not served:
            continue
        moment = _epoch(success.at)

        def fits(pair: Tuple[float, Impression]) -> bool:
            return (pair[1].user_id == success.user_id and success.item_id in pair[1].items
                    and -CLOCK_SKEW_S <= moment - pair[0] <= window)

        chosen: Optional[Tuple[float, Impression]] = None
        named = by_id.get(success.recommendation_id or "")
        if named is not None and fits(named):
            chosen = named
        else:
            times = [pair[0] for pair in served]
            for pair in reversed(served[:bisect.bisect_right(times, moment + CLOCK_SKEW_S)]):
                if fits(pair):
                    chosen = pair
                    break
        if chosen is None:
            continue
        # Interleaving credits each item of a list once (a vote per item); A/B counts an impression once,
        # however many of its items were acted on (a conversion: the rate per impression stays a rate).
        key = (chosen[1].recommendation_id, success.item_id if experiment.kind == "interleaving" else "")
        if key in credited:
            continue
        credited.add(key)
        outcome = users[success.user_id]
        outcome.successes += 1
        arm = ""
        if experiment.kind == "interleaving" and chosen[1].item_arms:
            arm = chosen[1].item_arms[chosen[1].items.index(success.item_id)]
            outcome.credits[arm] = outcome.credits.get(arm, 0) + 1
        outcome.events.append((max(moment, chosen[0]), "s", arm))
    for outcome in users.values():
        outcome.events.sort()
    return sorted(users.values(), key=lambda u: (u.first_at, u.user))


def check_moments(users: Sequence[UserOutcome]) -> List[float]:
    """When the sequential test is checked: as each CHECK_EVERY-th user was first served, and now."""
    return [users[n - 1].first_at for n in range(CHECK_EVERY, len(users), CHECK_EVERY)] + [float("inf")]


def _replay(users: Sequence[UserOutcome], moments: Sequence[float], kind: str, first: str = "", second: str = ""
            ) -> List[Dict[str, st.Sums]]:
    """The running sums at each check moment, from each user's events up to it: per arm (A/B: x =
    impressions, y = successes per user), or of the users' votes (interleaving, under "votes")."""
    events = sorted((moment, k, what, arm) for k, u in enumerate(users) for moment, what, arm in u.events)
    state: Dict[int, Tuple[float, float]] = {}  # user -> (impressions, successes) so far
    credits: Dict[int, Dict[str, int]] = collections.defaultdict(dict)
    sums: Dict[str, st.Sums] = collections.defaultdict(st.Sums)
    out: List[Dict[str, st.Sums]] = []
    position = 0
    for moment in moments:
        while position < len(events) and events[position][0] <= moment:
            _, k, what, arm = events[position]
            position += 1
            x, y = state.get(k, (0.0, 0.0))
            if kind == "ab":
                key = users[k].arm
                if k in state:
                    sums[key] = sums[key].remove(y, x)
                x, y = (x + 1, y) if what == "i" else (x, y + 1)
                sums[key] = sums[key].add(y, x)
            elif what == "s":
                before = _vote(credits[k], first, second) if y else None
                if before is not None:
                    sums["votes"] = sums["votes"].remove(before, 1.0)
                credits[k][arm] = credits[k].get(arm, 0) + 1
                y += 1
                sums["votes"] = sums["votes"].add(_vote(credits[k], first, second), 1.0)
            else:
                x += 1
            state[k] = (x, y)
        out.append(dict(sums))
    return out


# A user's preference is the difference of their credited successes, capped at +-PREFERENCE_CAP: a user
# who bought three of one arm's items and none of the other's says more than one who bought one (the
# sign alone threw that away), but no single heavy user (or bot) outweighs many. Symmetric, so under
# no preference its mean is 0 whatever the cap.
PREFERENCE_CAP = 3


def _vote(credits: Dict[str, int], first: str, second: str) -> float:
    difference = credits.get(second, 0) - credits.get(first, 0)
    return float(max(-PREFERENCE_CAP, min(PREFERENCE_CAP, difference)))


def _ab_arm(group: Sequence[UserOutcome]) -> Tuple[st.Estimate, st.Estimate]:
    per_impression = st.ratio([u.successes for u in group], [u.impressions for u in group])
    per_user = st.mean([1.0 if u.successes else 0.0 for u in group])
    return per_impression, per_user


def ab_results(experiment: Experiment, users: Sequence[UserOutcome], alpha: float = st.ALPHA) -> Dict[str, Any]:
    names = [arm.name for arm in experiment.arms]
    control = names[0]
    groups = {name: [u for u in users if u.arm == name] for name in names}
    arms = []
    for arm in experiment.arms:
        group = groups[arm.name]
        per_impression, per_user = _ab_arm(group)
        arms.append({"name": arm.name, "strategy": arm.strategy, "weight": arm.weight, "users": len(group),
                     "impressions": sum(u.impressions for u in group),
                     "successes": sum(u.successes for u in group),
                     "success_per_impression": st.summary(per_impression),
                     "success_per_user": st.summary(per_user)})
    estimates: Dict[str, List[st.Estimate]] = {name: [] for name in names[1:]}
    for sums in _replay(users, check_moments(users), "ab"):
        if all(sums.get(name, st.Sums()).n >= 2 for name in names):  # no variance to speak of before
            for name in names[1:]:
                estimates[name].append(st.difference(st.ratio_of_sums(sums[name]), st.ratio_of_sums(sums[control])))
    final_base = st.ratio(*_columns(groups[control]))
    taus = (experiment.mixing_sd,) if experiment.mixing_sd else AB_TAUS
    per_arm_alpha = alpha / max(1, len(names) - 1)
    comparisons = []
    for name in names[1:]:
        test = st.sequential_test(estimates[name], taus, per_arm_alpha)
        entry: Dict[str, Any] = {"arm": name, "against": control, "alpha": round(per_arm_alpha, 6),
                                 "significant": bool(test and test.significant)}
        if test is not None:
            entry.update({
                "difference": round(test.estimate.value, 6),
                "relative": round(test.estimate.value / final_base.value, 4) if final_base.value > 0 else None,
                "always_valid_ci95": [round(v, 6) for v in test.interval],
                "always_valid_p": round(test.p_value, 6),
                "fixed_horizon_p": round(st.normal_two_sided_p(test.estimate), 6),
            })
        comparisons.append(entry)
    srm = st.sample_ratio_mismatch([len(groups[n]) for n in names], [arm.weight or 0.0 for arm in experiment.arms])
    winner = _ab_winner(comparisons, control)
    return {"arms": arms, "comparisons": comparisons, "srm": _srm(srm, names, groups, experiment), "winner": winner}


def _columns(group: Sequence[UserOutcome]) -> Tuple[List[float], List[float]]:
    return [float(u.successes) for u in group], [float(u.impressions) for u in group]


def _ab_winner(comparisons: List[Dict[str, Any]], control: str) -> Optional[str]:
    """The best arm, when every comparison that decides it is significant: a treatment significantly
    above the control (the best such), or the control when every treatment is significantly below."""
    better = [c for c in comparisons if c["significant"] and c["difference"] > 0]
    if better:
        return max(better, key=lambda c: c["difference"])["arm"]
    if comparisons and all(c["significant"] and c["difference"] < 0 for c in comparisons):
        return control
    return None


def _srm(srm: st.SampleRatio, names: List[str], groups: Dict[str, List[UserOutcome]],
         experiment: Experiment) -> Dict[str, Any]:
    total = sum(len(g) for g in groups.values())
    return {"p_value": round(srm.p_value, 6), "mismatch": srm.mismatch,
            "observed": {n: len(groups[n]) for n in names},
            "expected": {a.name: round(total * (a.weight or 0.0) / 100.0, 1) for a in experiment.arms},
            "warning": ("sample ratio mismatch: users per arm differ from the weights (chi-square p = {:.2g} < {}); "
                        "the split, the exposure or the logging is broken and the results cannot be trusted"
                        ).format(srm.p_value, st.SRM_ALPHA) if srm.mismatch else None}


def preference(user: UserOutcome, first: str, second: str) -> float:
    """The user's credited successes on `second`'s items minus those on `first`'s, capped at
    +-PREFERENCE_CAP (> 0: they preferred `second`; 0: a tie or none; shared items credit neither)."""
    return _vote(user.credits, first, second)


def interleaving_results(experiment: Experiment, users: Sequence[UserOutcome],
                         alpha: float = st.ALPHA) -> Dict[str, Any]:
    first, second = experiment.arms[0].name, experiment.arms[1].name
    arms = [{"name": arm.name, "strategy": arm.strategy, "credited_successes": sum(u.credits.get(arm.name, 0) for u in users),
             "users_preferring": sum(1 for u in users if preference(u, first, second) * (1.0 if arm.name == second else -1.0) > 0)}
            for arm in experiment.arms]
    estimates = [st.vote_mean_of_sums(sums["votes"]) for sums in _replay(users, check_moments(users), "interleaving",
                                                                          first, second)
                 if sums.get("votes", st.Sums()).n >= 2]
    test = st.sequential_test(estimates, (experiment.mixing_sd,) if experiment.mixing_sd else INTERLEAVING_TAUS, alpha)
    comparison: Dict[str, Any] = {"arm": second, "against": first, "significant": bool(test and test.significant),
                                  "users_with_successes": sum(1 for u in users if u.successes)}
    if test is not None:
        comparison.update({"preference": round(test.estimate.value, 6),
                           "always_valid_ci95": [round(v, 6) for v in test.interval],
                           "always_valid_p": round(test.p_value, 6),
                           "fixed_horizon_p": round(st.normal_two_sided_p(test.estimate), 6)})
    winner = None
    if test is not None and test.significant:
        winner = second if test.estimate.value > 0 else first
    return {"arms": arms, "users": len(users), "impressions": sum(u.impressions for u in users),
            "comparisons": [comparison], "winner": winner}


def method(experiment: Experiment) -> Dict[str, str]:
    taus = ((experiment.mixing_sd,) if experiment.mixing_sd else AB_TAUS if experiment.kind == "ab"
            else INTERLEAVING_TAUS)
    scale = "{:g}".format(taus[0]) if len(taus) == 1 else "each of {} (averaged)".format(", ".join(
        "{:g}".format(t) for t in taus))
    test = ("mSPRT with a normal mixture N(0, tau^2) over the effect, tau = {tau}; always-valid p-value (the running "
            "minimum over checks as every {every} users were served, each on the data up to then, and now) and "
            "confidence sequence (the running intersection): the false-positive rate is at most alpha = {alpha} "
            "however often results are read").format(tau=scale, every=CHECK_EVERY, alpha=st.ALPHA)
    if experiment.kind == "interleaving":
        return {"unit": "user (every user sees one list merged from both arms)",
                "merge": "team-draft interleaving; a success is credited to the arm that contributed its item, "
                         "to neither when both arms rank it within the list's length",
                "test": "per-user preference (successes credited to the second arm minus the first's, capped at "
                        "+-{}) over users with a success, its mean tested against 0 with the variance under the "
                        "null (mean of squared preferences); ".format(PREFERENCE_CAP) + test,
                "winner": "declared only when significant"}
    return {"unit": "user (assignment: hash of the experiment's salt and the user id; sticky)",
            "rate": "impressions followed by a success (within the attribution window), per impression, per arm; "
                    "95 % interval by the delta method over users",
            "test": "difference of each arm's rate from the first arm's; " + test + (
                "; with {} treatment arms each is tested at alpha / {} (Bonferroni)".format(
                    len(experiment.arms) - 1, len(experiment.arms) - 1) if len(experiment.arms) > 2 else ""),
            "srm": "chi-square goodness of fit of users per arm against the weights; mismatch when p < {}".format(
                st.SRM_ALPHA),
            "winner": "declared only when significant"}


def results(experiment: Experiment, impressions: Sequence[Impression], successes: Sequence[Success],
            alpha: float = st.ALPHA) -> Dict[str, Any]:
    users = outcomes(experiment, impressions, successes)
    if experiment.kind == "interleaving":
        return dict(interleaving_results(experiment, users, alpha), method=method(experiment))
    return dict(ab_results(experiment, users, alpha), method=method(experiment))
