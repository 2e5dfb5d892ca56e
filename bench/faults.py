"""Fault injection under load: kill -9 every process of the service, several times each, and count.

  .venv/bin/python -m bench.faults [--kills 2] [--settle 20]

One fresh local service (python -m infra.local_runner, default configuration but small trainings).
A steady mixed load runs throughout: one client posts batches of 20 new actions every 0.2 s (seeded,
event ids included; each item is either bought or viewed and left, so updates are judged on a clear
signal; an action counts as accepted when its request answered 200; a failed request is retried with
the same event ids, as a client should), another asks /recommend for random users every 0.1 s. Meanwhile,
in rotation and at random moments, SIGKILL goes to: an API function worker, the ingest consumer's
worker, the continuous trainer (at a random point of an update, so also mid-upload), the inference
worker, and the local runner itself (the whole service: moto, gateway, workers; then started again
on the same state folder), `--kills` times each, `--settle` seconds apart at most.
A checker reads the registry's current version every 0.5 s and verifies its files are all in S3.

At the end, once the trainer has caught up (when the gate refused the last update, a few more actions
start the next, which trains the refused one's actions too), it reports:
  - accepted actions; stored lines and distinct stored event ids (each accepted action stored once:
    no loss, no duplicate); the trainer's coverage of them (trained, or held out by the latest update
    for its evaluation and trained by the next), each event in the lineage's manifests once;
  - the consumer's stored_actions counter against the distinct accepted actions;
  - failed requests, each checked against the kills: a failure counts as "in flight at a kill" when
    it happened within REQUEST_WINDOW_S of one (the runner's own kill: until it served again);
  - whether the current model was ever unreadable (it must never be).
Writes bench/results/faults.json. tests/e2e/test_faults.py runs the same with one kill per target.
"""
import argparse
import json
import os
import platform
import random
import signal
import sys
import threading
import time

import boto3
import requests
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import scratch_dir  # noqa: E402
from tests.e2e.conftest import RunningService  # noqa: E402

TARGETS = ("api worker", "consumer worker", "trainer", "inference worker", "runner")
REQUEST_WINDOW_S = 15.0  # a request this long after a kill may have been in flight at it


def processes(runner_pid, cloud_url):
    """{target: [pid, ...]} of the service's processes (those talking to its cloud), by what they run."""
    found = {t: [] for t in TARGETS}
    found["runner"] = [runner_pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{}/cmdline".format(entry), "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")
            with open("/proc/{}/environ".format(entry), "rb") as f:
                environ = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        env = dict(e.split("=", 1) for e in environ if "=" in e)
        if env.get("AWS_ENDPOINT_URL") != cloud_url:
            continue
        if any(a.endswith("worker_main.py") for a in argv):
            name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
            kind = {"ApiFunction": "api worker", "IngestConsumerFunction": "consumer worker",
                    "InferenceFunction": "inference worker"}.get(name)
            if kind:
                found[kind].append(int(entry))
        elif "task.py" in argv and env.get("TRAINING_MODE") == "continuous":
            found["trainer"].append(int(entry))
    return found


class Load:
    def __init__(self, service):
        self.service = service
        self.accepted = set()
        self.failures = []  # (monotonic time, what)
        self.requests = 0
        self.stop = threading.Event()
        self._rng = random.Random(3)
        self._users = ["u{}".format(k) for k in range(40)]
        self._items = ["i{}".format(k) for k in range(60)]

    def batch(self, n=20):
        """`n` new actions, from the seeded generator: event ids too (the holdout is a hash of them). Each
        item is either bought or only viewed, so that the model has a clear signal and its updates are
        judged on it, not on noise."""
        actions = []
        for _ in range(n):
            item = self._rng.randrange(len(self._items))
            liked = item % 3 != 0
            actions.append({"user_id": self._rng.choice(self._users), "item_id": self._items[item],
                            "action_type": ("purchase", "like")[item % 2] if liked else "view",
                            "parameters": {} if liked else {"bounced": True},
                            "event_id": "{:032x}".format(self._rng.getrandbits(128))})
        return actions

    def _fail(self, what):
        self.failures.append((time.monotonic(), what))

    def ingest(self):
        session = requests.Session()
        pending = None
        while not self.stop.is_set():
            if pending is None:
                pending = self.batch()
            try:
                r = session.post(self.service.url + "/online/data/add", json={"samples": pending}, timeout=15)
                self.requests += 1
                if r.status_code == 200:
                    self.accepted.update(r.json()["event_ids"])
                    pending = None
                else:
                    self._fail("ingest {}".format(r.status_code))
            except requests.RequestException as exc:
                self.requests += 1
                self._fail("ingest {}".format(type(exc).__name__))
                session = requests.Session()
            self.stop.wait(0.2)

    def recommend(self):
        session = requests.Session()
        while not self.stop.is_set():
            try:
                r = session.post(self.service.url + "/recommend", timeout=15,
                                 json={"user_id": self._rng.choice(self._users), "top_k": 5})
                self.requests += 1
                if r.status_code != 200 and not (r.status_code == 503 and r.json().get("error") == "no_model"):
                    self._fail("recommend {}".format(r.status_code))
            except (requests.RequestException, ValueError) as exc:
                self.requests += 1
                self._fail("recommend {}".format(type(exc).__name__))
                session = requests.Session()
            self.stop.wait(0.1)


class Checker:
    """The current version, as inference would load it, is whole at every moment."""

    def __init__(self, service):
        self.service = service
        self.unreadable = []
        self.checks = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                s3 = boto3.client("s3", endpoint_url=self.service.cloud_url, region_name="us-east-1",
                                  aws_access_key_id="x", aws_secret_access_key="x",
                                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
                ddb = boto3.client("dynamodb", endpoint_url=self.service.cloud_url, region_name="us-east-1",
                                   aws_access_key_id="x", aws_secret_access_key="x")
                tables = [t for t in ddb.list_tables()["TableNames"] if t.endswith("statetable")]
                pointer = ddb.get_item(TableName=tables[0], Key={"pk": {"S": "model"}, "sk": {"S": "current"}},
                                       ConsistentRead=True).get("Item") if tables else None
                if pointer:
                    name = json.loads(pointer["doc"]["S"])["version"]
                    record = ddb.get_item(TableName=tables[0], ConsistentRead=True,
                                          Key={"pk": {"S": "model"}, "sk": {"S": "version#" + name}})["Item"]
                    prefix = json.loads(record["doc"]["S"])["s3_prefix"]
                    bucket = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].endswith("databucket")][0]
                    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}
                    needed = {prefix + "saved_model/saved_model.pb", prefix + "saved_model/variables/variables.index",
                              prefix + "manifest.json", prefix + "catalog.json"}
                    self.checks += 1
                    if not needed <= keys:
                        self.unreadable.append({"version": name, "missing": sorted(needed - keys)})
            except Exception:  # noqa: BLE001 - the cloud is down while the runner restarts: not the model's fault
                pass
            self.stop.wait(0.5)


def _kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def coverage(service):
    """(distinct stored event ids, stored lines, event ids the current version's lineage covers, and how many
    times each appears across its manifest's objects)."""
    s3 = boto3.client("s3", endpoint_url=service.cloud_url, region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x", config=Config(s3={"addressing_style": "path"}))
    bucket = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].endswith("databucket")][0]
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="actions/"):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
            lines += [json.loads(line)["event_id"] for line in body.splitlines() if line.strip()]
    info = requests.get(service.url + "/model/info", timeout=10).json()["current"]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=info["s3_prefix"] + "manifest.json")["Body"].read())
    covered = []
    for key in manifest["keys"]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        covered += [json.loads(line)["event_id"] for line in body.splitlines() if line.strip()]
    return set(lines), lines, covered


def _wait_for_progress(load, actions, timeout_s=180.0):
    """Until `actions` more actions are accepted (the service took load again since the last kill)."""
    target = len(load.accepted) + actions
    deadline = time.monotonic() + timeout_s
    while len(load.accepted) < target:
        assert time.monotonic() < deadline, "no progress: {} of {} actions accepted".format(len(load.accepted), target)
        time.sleep(0.2)


def run_faults(kills=2, settle_s=20.0, seed=7, state_dir=None, log=print, pace_actions=None, parameters=()):
    """`pace_actions`: instead of a random pause of up to `settle_s` before each kill (the benchmark),
    wait until that many more actions were accepted (tests: the next kill meets a service that has
    demonstrably recovered). `parameters`: template parameters of the service."""
    rng = random.Random(seed)
    tmp = state_dir or scratch_dir("bench-faults-")
    service = RunningService(os.path.join(tmp, "state"), os.path.join(tmp, "runner.log"),
                             ["TRAIN_STEPS=60", "LOCAL_QUIET_ACCESS_LOG=1", "CONTINUOUS_POLL_MS=300",
                              "LOCAL_SCHEDULE_SECONDS=5"], parameters=parameters)
    service.start()
    load, checker = Load(service), Checker(service)
    threads = [threading.Thread(target=load.ingest, daemon=True), threading.Thread(target=load.recommend, daemon=True),
               threading.Thread(target=checker.run, daemon=True)]
    for t in threads:
        t.start()
    kill_log = []
    try:
        deadline = time.monotonic() + 300
        while not requests.get(service.url + "/health", timeout=10).json().get("model_version"):
            assert time.monotonic() < deadline, "no first version"
            time.sleep(1)
        schedule = [t for t in TARGETS for _ in range(kills)]
        rng.shuffle(schedule)
        for target in schedule:
            if pace_actions:
                _wait_for_progress(load, pace_actions)
            else:
                time.sleep(rng.uniform(3.0, settle_s))
            found = processes(service.process.pid, service.cloud_url)
            if target == "trainer":  # a trainer restarting (after a kill of the runner) is waited for
                deadline = time.monotonic() + 120
                while not found["trainer"] and time.monotonic() < deadline:
                    time.sleep(0.5)
                    found = processes(service.process.pid, service.cloud_url)
            pids = found.get(target) or []
            if target == "runner":
                service.process.send_signal(signal.SIGKILL)
                service.process.wait(timeout=30)
                # Its workers see their pipes close and exit; a trainer task loses its cloud and ends.
                _kill(found["trainer"])
                at = time.monotonic()
                service.start()
                kill_log.append({"target": target, "at": at, "back_after_s": round(time.monotonic() - at, 1)})
            elif pids:
                _kill(pids)
                kill_log.append({"target": target, "at": time.monotonic(), "pids": len(pids)})
            else:
                kill_log.append({"target": target, "at": time.monotonic(), "pids": 0, "note": "not running"})
            log("killed {} ({})".format(target, kill_log[-1]))
        if pace_actions:
            _wait_for_progress(load, pace_actions)
        else:
            time.sleep(settle_s)
    finally:
        load.stop.set()
        for t in threads[:2]:
            t.join(30)
    try:
        accepted = set(load.accepted)
        started = time.monotonic()
        nudges, nudged_at = [], float("-inf")  # actions sent to start one more update after a refused one
        while True:
            stored, lines, covered = coverage(service)
            if accepted <= set(covered) or time.monotonic() - started > 240:
                break
            online = requests.get(service.url + "/model/info", timeout=10).json().get("online") or {}
            if (online.get("awaiting_update") == 0 and online.get("state") == "waiting_for_new_actions"
                    and time.monotonic() - nudged_at > 10):
                nudged_at = time.monotonic()
                # The gate refused the last update and nothing newer came: its actions go into the next
                # update, which newer actions start (what a live stream does by itself).
                batch = load.batch()
                r = requests.post(service.url + "/online/data/add", json={"samples": batch}, timeout=15)
                if r.status_code == 200:
                    nudges += r.json()["event_ids"]
            time.sleep(2)
        checker.stop.set()
        threads[2].join(10)
        # A consumer killed between storing an object and counting it leaves the count to the message's
        # redelivery, after the queue's visibility timeout: the counter is exact once that has come.
        counted_from = time.monotonic()
        while True:
            status = requests.get(service.url + "/online/streaming/status", timeout=10).json()
            if status["consumer"]["stored_actions"] >= len(stored) or time.monotonic() - counted_from > 240:
                break
            time.sleep(2)
        counter_wait_s = round(time.monotonic() - counted_from, 1)
        windows = []
        for k in kill_log:
            end = k["at"] + (k.get("back_after_s", 0) + REQUEST_WINDOW_S)
            windows.append((k["at"] - 1.0, end))
        in_flight = [f for f in load.failures if any(a <= f[0] <= b for a, b in windows)]
        results = {
            "kills": [{k: v for k, v in entry.items() if k != "at"} for entry in kill_log],
            "accepted_actions": len(accepted),
            "stored_event_ids": len(stored), "stored_lines": len(lines),
            "accepted_not_stored": len(accepted - stored), "stored_twice": len(lines) - len(set(lines)),
            "nudge_actions_after_a_refused_update": len(nudges),
            "nudge_actions_not_stored": len(set(nudges) - stored),
            "covered_by_current_version": len(accepted & set(covered)),
            "accepted_not_covered": len(accepted - set(covered)),
            "covered_twice": len(covered) - len(set(covered)),
            "consumer_stored_actions": status["consumer"]["stored_actions"],
            "consumer_stored_actions_waited_s": counter_wait_s,
            "requests": load.requests, "failed_requests": len(load.failures),
            "failed_in_flight_at_a_kill": len(in_flight),
            "failed_otherwise": len(load.failures) - len(in_flight),
            "failures": sorted({what for _, what in load.failures}),
            "current_model_checks": checker.checks, "current_model_unreadable": checker.unreadable,
        }
    finally:
        service.stop()
    return results


def main():
    parser = argparse.ArgumentParser()
    # Two kills of each of the five targets keep the whole `python -m bench` within 25 minutes.
    parser.add_argument("--kills", type=int, default=2, help="kills per target")
    parser.add_argument("--settle", type=float, default=20.0, help="most seconds between two kills")
    args = parser.parse_args()
    results = {"date": time.strftime("%Y-%m-%d"), "machine": "{} cores, {}".format(os.cpu_count(), platform.platform())}
    results.update(run_faults(args.kills, args.settle))
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "faults.json"), "w") as f:
        json.dump(results, f, indent=2)
    for key, value in results.items():
        print("{}: {}".format(key, value))


if __name__ == "__main__":
    main()
