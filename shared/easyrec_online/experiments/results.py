"""An experiment's log -> per-user outcomes (attribution) -> results with the method named.

Attribution. A success is credited to one impression of the same user that showed its item, at most
`attribution_window_s` before it: the impression its action names (`recommendation_id`), else the
latest such impression. Each (impression, item) counts once, so a rate per impression stays a rate.
In an interleaving experiment the credit goes to the arm that contributed the item.

Users are checked in the order they were first served, every CHECK_EVERY users, for the sequential
test (statistics.py): the always-valid p-value is the running minimum over those checks, so reading
results at any moment, as often as wanted, keeps the false-positive rate at most ALPHA.
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
# Mixture scale of the mSPRT: the effects it is most sensitive to. A/B: relative to the control's rate
# (a 20 % lift is what a new ranking model typically moves); interleaving: a preference of 0.2 on [-1, 1].
TAU_RELATIVE = 0.2
TAU_INTERLEAVING = 0.2
CLOCK_SKEW_S = 5.0  # an action may be stamped this much before the impression it follows


@dataclass
class UserOutcome:
    user: str
    arm: str  # A/B: the user's arm; interleaving: ""
    first_at: float
    impressions: int = 0
    successes: int = 0
    credits: Dict[str, int] = field(default_factory=dict)  # interleaving: arm -> credited successes


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
                                  first_at=served[0][0], impressions=len(served))
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
        key = (chosen[1].recommendation_id, success.item_id)
        if key in credited:
            continue
        credited.add(key)
        outcome = users[success.user_id]
        outcome.successes += 1
        if experiment.kind == "interleaving" and chosen[1].item_arms:
            arm = chosen[1].item_arms[chosen[1].items.index(success.item_id)]
            outcome.credits[arm] = outcome.credits.get(arm, 0) + 1
    return sorted(users.values(), key=lambda u: (u.first_at, u.user))


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
    checks = set(st.check_points(len(users), CHECK_EVERY))
    estimates: Dict[str, List[st.Estimate]] = {name: [] for name in names[1:]}
    sums = {name: st.Sums() for name in names}
    for n, user in enumerate(users, 1):
        if user.arm in sums:
            sums[user.arm] = sums[user.arm].add(user.successes, user.impressions)
        if n in checks:
            for name in names[1:]:
                if sums[name].n >= 2 and sums[control].n >= 2:  # no variance to speak of before
                    estimates[name].append(st.difference(st.ratio_of_sums(sums[name]), st.ratio_of_sums(sums[control])))
    final_base = st.ratio(*_columns(groups[control]))
    tau2 = (TAU_RELATIVE * max(st.ratio(*_columns(list(users))).value, 1e-3)) ** 2
    comparisons = []
    for name in names[1:]:
        test = st.sequential_test(estimates[name], tau2, alpha)
        entry: Dict[str, Any] = {"arm": name, "against": control, "significant": bool(test and test.significant)}
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
    winner = _ab_winner(arms, comparisons, control)
    return {"arms": arms, "comparisons": comparisons, "srm": _srm(srm, names, groups, experiment), "winner": winner}


def _columns(group: Sequence[UserOutcome]) -> Tuple[List[float], List[float]]:
    return [float(u.successes) for u in group], [float(u.impressions) for u in group]


def _ab_winner(arms: List[Dict[str, Any]], comparisons: List[Dict[str, Any]], control: str) -> Optional[str]:
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
    """+1: the user's successes went more to `second`'s items, -1: to `first`'s, 0: a tie or none."""
    a, b = user.credits.get(first, 0), user.credits.get(second, 0)
    return 0.0 if a == b else (1.0 if b > a else -1.0)


def interleaving_results(experiment: Experiment, users: Sequence[UserOutcome],
                         alpha: float = st.ALPHA) -> Dict[str, Any]:
    first, second = experiment.arms[0].name, experiment.arms[1].name
    arms = [{"name": arm.name, "strategy": arm.strategy, "credited_successes": sum(u.credits.get(arm.name, 0) for u in users),
             "users_preferring": sum(1 for u in users if preference(u, first, second) == (1.0 if arm.name == second else -1.0))}
            for arm in experiment.arms]
    checks = set(st.check_points(len(users), CHECK_EVERY))
    estimates = []
    votes = st.Sums()
    for n, user in enumerate(users, 1):
        if user.successes:
            votes = votes.add(preference(user, first, second), 1.0)
        if n in checks and votes.n >= 2:
            estimates.append(st.preference_of_sums(votes))
    test = st.sequential_test(estimates, TAU_INTERLEAVING ** 2, alpha)
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


METHOD_AB = {
    "unit": "user (assignment: hash of the experiment's salt and the user id; sticky)",
    "rate": "successes per impression, per arm; 95 % interval by the delta method over users",
    "test": ("mSPRT, normal mixture with tau = {} x the pooled rate; always-valid p-value (running minimum over "
             "checks every {} users, in the order users were first served) and confidence sequence: the "
             "false-positive rate is at most alpha = {} however often the results are read").format(
                 TAU_RELATIVE, CHECK_EVERY, st.ALPHA),
    "srm": "chi-square goodness of fit of users per arm against the weights; mismatch when p < {}".format(st.SRM_ALPHA),
    "winner": "declared only when significant",
}
METHOD_INTERLEAVING = {
    "unit": "user (every user sees one list merged from both arms)",
    "merge": "team-draft interleaving; a success is credited to the arm that contributed its item",
    "test": ("per-user preference (+1 second arm, -1 first, 0 tie) over users with a success; mSPRT on its mean "
             "(tau = {}), always-valid p-value, checks every {} users; false-positive rate at most alpha = {}"
             ).format(TAU_INTERLEAVING, CHECK_EVERY, st.ALPHA),
    "winner": "declared only when significant",
}


def results(experiment: Experiment, impressions: Sequence[Impression], successes: Sequence[Success],
            alpha: float = st.ALPHA) -> Dict[str, Any]:
    users = outcomes(experiment, impressions, successes)
    if experiment.kind == "interleaving":
        return dict(interleaving_results(experiment, users, alpha), method=METHOD_INTERLEAVING)
    return dict(ab_results(experiment, users, alpha), method=METHOD_AB)
