"""A change of taste: a group of users switches category, and how fast their rankings follow.

  .venv/bin/python -m bench.shift [--group 10] [--timeout 60]

One fresh local service with the default configuration (no flags: learning on, no training call).
A catalog of two categories, A (a0..a39) and B (b0..b39), with their item profiles. History: half of
the users buy A items and bounce off B (views with bounced=true), the other half the opposite, so both
categories have their regulars. The service learns that (its continuous trainer's first version).
Then a group of A regulars switches: each buys five B items and bounces off three A items. From the
last of those actions being accepted, every `--poll` seconds: the share of B items in each group
member's top 10 (catalog candidates, already-bought items left out) until B dominates (more than
half) for every member. Target (issue 12): within 30 s. The result names the time, and whether it
came before any weight update (the live features) or with one (the version serving at that time).
Prints a table, writes bench/results/shift.json.
"""
import argparse
import os
import platform
import random
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import scratch_dir  # noqa: E402
from bench.quickstart import report  # noqa: E402
from tests.e2e.conftest import RunningService  # noqa: E402

ITEMS = 40
USERS = 80


def _items(category):
    return ["{}{}".format(category, k) for k in range(ITEMS)]


def history(rng):
    samples = []
    for user in range(USERS):
        liked, other = ("a", "b") if user % 2 == 0 else ("b", "a")
        for item in rng.sample(_items(liked), 8):
            samples.append({"user_id": "u{}".format(user), "item_id": item, "action_type": "purchase"})
        for item in rng.sample(_items(other), 4):
            samples.append({"user_id": "u{}".format(user), "item_id": item, "action_type": "view",
                            "parameters": {"bounced": True}})
    rng.shuffle(samples)
    return samples


def b_share(service, user):
    r = requests.post(service.url + "/recommend", json={"user_id": user, "top_k": 10}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    items = [rec["item_id"] for rec in body["recommendations"]]
    return sum(1 for i in items if str(i).startswith("b")) / float(max(1, len(items))), body["model_version"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--group", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args()
    rng = random.Random(11)
    tmp = scratch_dir("bench-shift-")
    service = RunningService(os.path.join(tmp, "state"), os.path.join(tmp, "runner.log"), ["LOCAL_QUIET_ACCESS_LOG=1"])
    results = {"date": time.strftime("%Y-%m-%d"), "machine": "{} cores, {}".format(os.cpu_count(), platform.platform()),
               "group": args.group, "target_s": 30.0}
    service.start()
    try:
        profiles = [{"item_id": i, "profile": {"category": i[0]}} for i in _items("a") + _items("b")]
        assert requests.post(service.url + "/items", json={"items": profiles}, timeout=30).status_code == 200
        samples = history(rng)
        for start in range(0, len(samples), 500):  # MAX_SAMPLES_PER_REQUEST
            r = requests.post(service.url + "/online/data/add", json={"samples": samples[start:start + 500]},
                              timeout=60)
            assert r.status_code == 200, r.text
        started = time.monotonic()
        while not requests.get(service.url + "/health", timeout=10).json()["model_version"]:
            assert time.monotonic() - started < 300, "no first version"
            time.sleep(0.5)
        results["first_version_s"] = time.monotonic() - started
        group = ["u{}".format(2 * k) for k in range(args.group)]  # A regulars
        time.sleep(3)  # the first version serves everywhere
        before = [b_share(service, user) for user in group]
        results["b_share_before"] = sum(s for s, _ in before) / len(before)
        first_version = before[0][1]
        switch = []
        for user in group:
            for item in rng.sample(_items("b"), 5):
                switch.append({"user_id": user, "item_id": item, "action_type": "purchase"})
            for item in rng.sample(_items("a"), 3):
                switch.append({"user_id": user, "item_id": item, "action_type": "view", "parameters": {"bounced": True}})
        r = requests.post(service.url + "/online/data/add", json={"samples": switch}, timeout=60)
        assert r.status_code == 200, r.text
        accepted = time.monotonic()
        timeline = []
        while True:
            shares = [b_share(service, user) for user in group]
            elapsed = time.monotonic() - accepted
            worst = min(s for s, _ in shares)
            timeline.append({"s": round(elapsed, 2), "worst_b_share": worst,
                             "mean_b_share": sum(s for s, _ in shares) / len(shares),
                             "versions": sorted({v for _, v in shares})})
            if worst > 0.5 or elapsed > args.timeout:
                break
            time.sleep(args.poll)
        dominated = timeline[-1]["worst_b_share"] > 0.5
        results["dominates_after_s"] = timeline[-1]["s"] if dominated else None
        results["before_any_weight_update"] = dominated and timeline[-1]["versions"] == [first_version]
        results["timeline"] = timeline
        results["target_met"] = dominated and timeline[-1]["s"] <= 30.0
    finally:
        service.stop()
    report("shift", results)


if __name__ == "__main__":
    main()
