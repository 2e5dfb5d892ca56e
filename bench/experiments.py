"""Experiments proven in a simulation: synthetic users with a known true preference, against the
running service (real /recommend requests, real purchases through /online/data/add, real attribution).

  .venv/bin/python -m bench.experiments [--users 600] [--reruns 200] [--activity-sd 1.0]

The world: 40 items in four categories (a..d, 10 items each), liked by 40, 25, 20 and 15 % of users.
A user buys a shown item with probability 0.12 if it is of their category, 0.04 if not, times their
own activity (log-normal, median 1, --activity-sd: users differ in how much they buy at all; the
default spread is MovieLens-100k's, whose users rate 20 items at least: real shops have more one-off
buyers), seeded. Their history
(4 purchases in their category, 4 bounces off others) goes in first and one model is trained; then,
one after another, each on a cohort of its own of --users users, each asking /recommend once (top 5
of the 40):

  A/B           arms "popularity" (control) and "model" (the current version), 50/50
  interleaving  the same two arms, team-draft merged in every list
  A/A           "current" against "current"

Measured:
  - each live experiment's results as the service reports them (GET /experiments/{id}), and after how
    many users its always-valid test first turned significant, read every 20 users as a dashboard would;
  - A/A: the statistics rerun --reruns times on the recorded A/A users (the service's log, read from
    its table, attributed by the service's code), each time with a fresh random split and order, read
    at every check: the false-positive rate, against the stated alpha;
  - power: users until significant, from --reruns resamples of the recorded users of each kind (drawn
    with replacement, in random order): the median and P(significant by n); the interleaving target is
    at least 5x fewer users than A/B;
  - SRM: the recorded A/A users split afresh --reruns times, with a third of one arm's users'
    impressions lost (a logger failing for one arm): how often that is flagged, and how often the
    intact split is; and the service's own check on the recorded split, intact and broken.
Prints a table; writes bench/results/experiments.json.
"""
import argparse
import math
import os
import platform
import random
import sys
import time

import boto3
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "shared"))

from bench import scratch_dir  # noqa: E402
from bench.quickstart import report  # noqa: E402
from easyrec_online.experiments import statistics as st  # noqa: E402
from easyrec_online.experiments.definition import Arm, Experiment  # noqa: E402
from easyrec_online.experiments.results import AB_TAUS, CHECK_EVERY, INTERLEAVING_TAUS, outcomes, preference, results  # noqa: E402
from easyrec_online.experiments.store import DynamoExperimentLog  # noqa: E402
from tests.conftest import wait_for  # noqa: E402
from tests.e2e.conftest import RunningService  # noqa: E402

CATEGORIES = (("a", 0.40), ("b", 0.25), ("c", 0.20), ("d", 0.15))  # and the share of users who like each
ITEMS = ["{}{}".format(c, k) for c, _ in CATEGORIES for k in range(10)]
LIKED, OTHER = 0.12, 0.04
TOP_K = 5


def _taste(user, rng_seed=7):
    point, edge = random.Random("{}-{}".format(rng_seed, user)).random(), 0.0
    for category, share in CATEGORIES:
        edge += share
        if point < edge:
            return category
    return CATEGORIES[-1][0]


ACTIVITY_SD = 1.0  # log-normal spread of how much users buy; MovieLens-100k's ratings per user: 0.88


def _activity(user, rng_seed=8):
    """How much this user buys at all, as real users differ: log-normal, median 1 (at the default spread
    some buy 5x more, some 5x less). It varies between users, not between arms: an A/B test has to see
    through it, an interleaving compares both arms within each user."""
    return math.exp(random.Random("{}-{}".format(rng_seed, user)).gauss(0.0, ACTIVITY_SD))


def _post(service, path, body=None, ok=(200, 201, 202)):
    r = requests.post(service.url + path, json=body, timeout=60)
    assert r.status_code in ok, (path, r.status_code, r.text)
    return r.json()


def _stored(service):
    return requests.get(service.url + "/online/streaming/status", timeout=10).json()["consumer"]["stored_actions"]


def _history(users, rng):
    samples = []
    for user in users:
        taste = _taste(user)
        liked = [i for i in ITEMS if i[0] == taste]
        other = [i for i in ITEMS if i[0] != taste]
        samples += [{"user_id": user, "item_id": i, "action_type": "purchase", "label": 1} for i in rng.sample(liked, 4)]
        samples += [{"user_id": user, "item_id": i, "action_type": "view", "label": 0, "parameters": {"bounced": True}}
                    for i in rng.sample(other, 4)]
    for n, sample in enumerate(samples):
        sample["event_id"] = "history-{}".format(n)
    return samples


def _run_live(service, body, users, rng, posted):
    """One live experiment over `users`; returns (experiment id, users at first significance as read every
    CHECK_EVERY users, actions posted)."""
    experiment = _post(service, "/experiments", body)["experiment_id"]
    # Serving re-reads the running experiments every EXPERIMENT_REFRESH_MS: wait until it serves this one
    # (the probe user is one more user of the experiment, with no purchases).
    wait_for(lambda: _post(service, "/recommend", {"user_id": "probe", "candidate_items": ITEMS, "top_k": TOP_K}).get(
        "experiment") == experiment, 30, "the experiment served")
    first_significant = None
    for start in range(0, len(users), CHECK_EVERY):
        purchases = []
        for user in users[start:start + CHECK_EVERY]:
            answer = _post(service, "/recommend", {"user_id": user, "candidate_items": ITEMS, "top_k": TOP_K})
            assert answer.get("experiment") == experiment, answer
            taste = _taste(user)
            for rec in answer["recommendations"]:
                if rng.random() < min(1.0, _activity(user) * (LIKED if rec["item_id"][0] == taste else OTHER)):
                    purchases.append({"user_id": user, "item_id": rec["item_id"], "action_type": "purchase",
                                      "recommendation_id": answer["recommendation_id"],
                                      "event_id": "{}-{}-{}".format(experiment, user, rec["item_id"])})
        if purchases:
            _post(service, "/online/data/add", {"samples": purchases})
            posted += len(purchases)
            wait_for(lambda: _stored(service) >= posted, 60, "purchases stored")
        if first_significant is None:
            found = requests.get(service.url + "/experiments/" + experiment, timeout=30).json()["results"]
            if found["winner"] is not None:
                first_significant = min(start + CHECK_EVERY, len(users))
    return experiment, first_significant, posted


def _first_significant(sequence, kind, taus, limit):
    """Users until the always-valid test is significant (None: not within `limit`), checked every
    CHECK_EVERY users as the service does. `sequence`: (arm index, impressions, successes, vote)."""
    sums = [st.Sums(), st.Sums()]
    votes = st.Sums()
    p = 1.0
    for n, (arm, impressions, successes, vote) in enumerate(sequence[:limit], 1):
        if kind == "ab":
            sums[arm] = sums[arm].add(successes, impressions)
        elif successes:
            votes = votes.add(vote, 1.0)
        if n % CHECK_EVERY:
            continue
        if kind == "ab":
            if sums[0].n < 2 or sums[1].n < 2:
                continue
            estimate = st.difference(st.ratio_of_sums(sums[1]), st.ratio_of_sums(sums[0]))
        else:
            if votes.n < 2:
                continue
            estimate = st.vote_mean_of_sums(votes)
        p = min(p, 1.0 / max(st.msprt_lambda(estimate, taus), 1e-300))
        if p < st.ALPHA:
            return n
    return None


def _power(users, kind, taus, reruns, limit, rng):
    """Resamples of the recorded users, in random order: users until significant, each rerun."""
    if kind == "ab":
        pools = [[u for u in users if u[0] == arm] for arm in (0, 1)]
    found = []
    for _ in range(reruns):
        if kind == "ab":
            sequence = [rng.choice(pools[rng.random() < 0.5]) for _ in range(limit)]
        else:
            sequence = [rng.choice(users) for _ in range(limit)]
        found.append(_first_significant(sequence, kind, taus, limit))
    return found


def _curve(found, points):
    return {n: round(sum(1 for f in found if f is not None and f <= n) / float(len(found)), 3) for n in points}


def _median(found):
    ordered = sorted(f if f is not None else float("inf") for f in found)
    return ordered[len(ordered) // 2]


def main():
    global ACTIVITY_SD
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--reruns", type=int, default=200)
    parser.add_argument("--limit", type=int, default=4000, help="most users a resampled run may take")
    parser.add_argument("--activity-sd", type=float, default=ACTIVITY_SD,
                        help="log-normal spread of users' activity (how much they buy at all)")
    parser.add_argument("--out", default="experiments", help="results file name under bench/results/")
    args = parser.parse_args()
    ACTIVITY_SD = args.activity_sd
    rng = random.Random(2026)
    tmp = scratch_dir("bench-experiments-")
    service = RunningService(os.path.join(tmp, "state"), os.path.join(tmp, "runner.log"), [
        "CONTINUOUS_TRAINING=false", "TRAIN_STEPS=300", "CURRENT_CHECK_INTERVAL_MS=200", "PROMOTION_AUC_TOLERANCE=1.0",
        "EXPERIMENT_REFRESH_MS=200", "LOCAL_QUIET_ACCESS_LOG=1"])
    out = {"date": time.strftime("%Y-%m-%d"), "machine": "{} cores, {}".format(os.cpu_count(), platform.platform()),
           "users": args.users, "reruns": args.reruns, "alpha": st.ALPHA,
           "world": ("40 items in 4 categories liked by 40/25/20/15 % of users; P(buy a shown item) {} in taste, {} "
                     "not, times the user's activity (log-normal, median 1, sd of its log {:g})").format(
                         LIKED, OTHER, ACTIVITY_SD)}
    started = time.monotonic()
    service.start()
    try:
        # One cohort of users per experiment: an experiment's results are its own users' (a user's actions
        # after one experiment stopped still count for it within its attribution window).
        cohorts = {name: ["{}-{}".format(name, k) for k in range(args.users)] for name in ("ab", "interleaving", "aa")}
        history = _history([u for cohort in cohorts.values() for u in cohort], rng)
        for start in range(0, len(history), 500):
            _post(service, "/online/data/add", {"samples": history[start:start + 500]})
        posted = len(history)
        wait_for(lambda: _stored(service) >= posted, 120, "history stored")
        _post(service, "/online/training/start")
        wait_for(lambda: requests.get(service.url + "/health", timeout=10).json().get("model_version"), 600,
              "the first model")
        model_arms = [{"name": "popularity", "weight": 50, "strategy": "popularity"},
                      {"name": "model", "weight": 50, "strategy": "current"}]
        live = {}
        for name, body in (
                ("ab", {"name": "bench A/B", "success_actions": ["purchase"], "arms": model_arms}),
                ("interleaving", {"name": "bench interleaving", "kind": "interleaving", "success_actions": ["purchase"],
                                  "arms": [{"name": a["name"], "strategy": a["strategy"]} for a in model_arms]}),
                ("aa", {"name": "bench A/A", "success_actions": ["purchase"], "arms": [
                    {"name": "one", "weight": 50, "strategy": "current"},
                    {"name": "two", "weight": 50, "strategy": "current"}]})):
            experiment, first, posted = _run_live(service, body, cohorts[name], rng, posted)
            found = requests.get(service.url + "/experiments/" + experiment, timeout=30).json()
            _post(service, "/experiments/{}/stop".format(experiment))
            live[name] = {"experiment": experiment, "definition": found, "first_significant_users": first,
                          "winner": found["results"]["winner"], "comparison": found["results"]["comparisons"][0]}
        ddb = boto3.client("dynamodb", endpoint_url=service.cloud_url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        table = [t for t in ddb.list_tables()["TableNames"] if t.endswith("experimentstable")][0]
        log = DynamoExperimentLog(ddb, table)
        recorded = {name: log.read(v["experiment"]) for name, v in live.items()}
    finally:
        service.stop()
    out["service_s"] = round(time.monotonic() - started, 1)

    def experiment_of(name):
        d = live[name]["definition"]
        return Experiment(experiment_id=d["experiment_id"], name=d["name"], kind=d["kind"],
                          arms=[Arm(**a) for a in d["arms"]], salt="", layer=d["layer"], buckets=d["buckets"],
                          created_at=d["created_at"], success_actions=d["success_actions"],
                          attribution_window_s=d["attribution_window_s"], mixing_sd=d["mixing_sd"])

    per_user = {name: outcomes(experiment_of(name), *recorded[name]) for name in live}
    power_rng = random.Random(5)
    ab_users = [(0 if u.arm == "popularity" else 1, u.impressions, u.successes, 0.0) for u in per_user["ab"]]
    il_users = [(0, u.impressions, u.successes, preference(u, "popularity", "model")) for u in per_user["interleaving"]]
    out["recorded_users"] = {name: {"users": len(u), "impressions": sum(x.impressions for x in u),
                                    "converted": sum(x.successes for x in u)} for name, u in per_user.items()}
    ab_found = _power(ab_users, "ab", AB_TAUS, args.reruns, args.limit, power_rng)
    il_found = _power(il_users, "interleaving", INTERLEAVING_TAUS, args.reruns, args.limit, power_rng)
    points = [50, 100, 200, 400, 800, 1600, 3200]

    # A/A: the recorded users, split afresh and reordered each time, read at every check.
    aa = per_user["aa"]
    false_positives = 0
    for _ in range(args.reruns):
        order = list(aa)
        power_rng.shuffle(order)
        sequence = [(power_rng.random() < 0.5, u.impressions, u.successes, 0.0) for u in order]
        if _first_significant([(int(s[0]),) + s[1:] for s in sequence], "ab", AB_TAUS,
                              len(sequence)) is not None:
            false_positives += 1

    # SRM over reruns: the recorded A/A users split afresh each time, intact and with a third of arm two's
    # users lost (a logger failing for one arm): how often the check flags each. One split alone says
    # little: its luck moves a third's loss from p = 1e-6 to p = 0.002.
    detected = false_flags = 0
    for _ in range(args.reruns):
        in_two = [power_rng.random() < 0.5 for _ in aa]
        intact_counts = [in_two.count(False), in_two.count(True)]
        kept_two = sum(1 for two in in_two if two and power_rng.random() >= 1.0 / 3.0)
        false_flags += st.sample_ratio_mismatch(intact_counts, [50, 50]).mismatch
        detected += st.sample_ratio_mismatch([intact_counts[0], kept_two], [50, 50]).mismatch

    # The service's own check on the recorded split: intact, and with every third of arm "two"'s users'
    # impressions lost.
    impressions, successes = recorded["aa"]
    two = sorted({i.user_id for i in impressions if i.arm == "two"})
    lost_users = set(two[::3])
    kept = [i for i in impressions if i.user_id not in lost_users]
    broken = results(experiment_of("aa"), kept, successes)["srm"]
    intact = results(experiment_of("aa"), impressions, successes)["srm"]

    ab_median, il_median = _median(ab_found), _median(il_found)
    out.update({
        "live": {name: {k: v[k] for k in ("experiment", "first_significant_users", "winner", "comparison")}
                 for name, v in live.items()},
        "ab_rates": {a["name"]: a["success_per_impression"] for a in live["ab"]["definition"]["results"]["arms"]},
        "aa_false_positive_rate": round(false_positives / float(args.reruns), 3),
        "ab_users_to_significance_median": ab_median, "ab_power_curve": _curve(ab_found, points),
        "interleaving_users_to_significance_median": il_median, "interleaving_power_curve": _curve(il_found, points),
        "interleaving_fewer_users_x": round(ab_median / il_median, 2) if il_median not in (0, float("inf")) else None,
        "srm_broken_flagged": broken["mismatch"], "srm_broken_p": broken["p_value"],
        "srm_broken_users": broken["observed"],
        "srm_intact_flagged": intact["mismatch"], "srm_intact_p": intact["p_value"],
        "srm_intact_users": intact["observed"],
        "srm_detection_rate": round(detected / float(args.reruns), 3),
        "srm_false_flag_rate": round(false_flags / float(args.reruns), 3),
    })
    out["targets"] = {"aa_fpr_at_most_alpha": out["aa_false_positive_rate"] <= st.ALPHA,
                      "interleaving_5x_fewer": bool(out["interleaving_fewer_users_x"]
                                                    and out["interleaving_fewer_users_x"] >= 5),
                      "srm_flags_broken_only": broken["mismatch"] and not intact["mismatch"]}
    report(args.out, out)


if __name__ == "__main__":
    main()
