"""Per-transport benchmark: throughput of accepted-and-stored actions, and accept -> new current
version, for each stream the template offers (StreamTransport=sqs|kinesis|kafka).

  .venv/bin/python -m bench.transports [--actions 4000] [--trials 3] [--transports sqs,kinesis,kafka]

One fresh runner per transport (moto for SQS/Kinesis, a real Kafka-protocol broker for Kafka):
  - ingest: `--actions` actions posted to /online/data/add in requests of 100 by 2 concurrent
    clients; accepted/s (until the last 200) and accepted-and-stored/s (until the consumer's totals
    reach them), then every event id is read back from S3: `lost` must be 0;
  - freshness: a continuous trainer follows the stream; each trial posts 500 actions and measures
    from the last accepted response until the current version's manifest covers all of them.
Prints a table per transport and writes bench/results/transports.json.
"""
import argparse
import json
import os
import platform
import random
import sys
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import scratch_dir  # noqa: E402
from bench.freshness import Covered, _post, _samples, _wait_covered, start_continuous  # noqa: E402
from bench.quickstart import percentile, report  # noqa: E402
from tests.e2e.conftest import RunningService  # noqa: E402


def stored_ids(covered):
    """Every event id stored under actions/ (read back from S3)."""
    ids = set()
    paginator = covered.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=covered.bucket, Prefix="actions/"):
        for obj in page.get("Contents", []):
            body = covered.s3.get_object(Bucket=covered.bucket, Key=obj["Key"])["Body"].read().decode()
            ids |= {json.loads(line)["event_id"] for line in body.splitlines()}
    return ids


def ingest(service, samples, batch=100, clients=2):
    """Post `samples` in requests of `batch` from `clients` threads: (accepted event ids, seconds
    until the last was accepted, seconds until the consumer had stored them all)."""
    chunks = [samples[i:i + batch] for i in range(0, len(samples), batch)]
    accepted, errors = [], []
    before = requests.get(service.url + "/online/streaming/status", timeout=10).json()["consumer"]["stored_actions"]

    def client(part):
        session = requests.Session()
        for chunk in part:
            r = session.post(service.url + "/online/data/add", json={"samples": chunk}, timeout=30)
            if r.status_code != 200:
                errors.append(r.text)
            else:
                accepted.extend(r.json()["event_ids"])

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(chunks[i::clients],)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted_s = time.monotonic() - started
    assert not errors, errors[:3]
    while True:
        status = requests.get(service.url + "/online/streaming/status", timeout=10).json()
        if status["consumer"]["stored_actions"] >= before + len(samples):
            break
        assert time.monotonic() - started < 300, status
        time.sleep(0.05)
    return set(accepted), accepted_s, time.monotonic() - started


def run_transport(transport, args):
    tmp = scratch_dir("bench-transport-{}-".format(transport))
    service = RunningService(os.path.join(tmp, "state"), os.path.join(tmp, "runner.log"),
                             ["TRAIN_STEPS=100", "CONTINUOUS_POLL_MS=200", "PROMOTION_AUC_TOLERANCE=1.0",
                              "LOCAL_QUIET_ACCESS_LOG=1"], parameters=["StreamTransport=" + transport])
    out = {}
    service.start()
    try:
        rng = random.Random(11)
        covered = Covered(service)
        ids, accepted_s, stored_s = ingest(service, _samples(args.actions, rng))
        stored = stored_ids(covered)
        out["accepted_per_s"] = args.actions / accepted_s
        out["accepted_and_stored_per_s"] = args.actions / stored_s
        out["lost"] = len(ids - stored)
        start_continuous(service)
        trials = []
        for _ in range(args.trials):
            trial_ids = _post(service, _samples(500, rng))
            accepted = time.monotonic()
            _wait_covered(service, covered, trial_ids)
            trials.append(time.monotonic() - accepted)
            time.sleep(1)
        out["accept_to_current_p50_s"] = percentile(trials, 0.5)
        out["accept_to_current_trials_s"] = [round(t, 2) for t in trials]
    finally:
        service.stop()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--actions", type=int, default=4000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--transports", default="sqs,kinesis,kafka")
    args = parser.parse_args()
    results = {"date": time.strftime("%Y-%m-%d"),
               "machine": "{} cores, {}".format(os.cpu_count(), platform.platform()), "actions": args.actions}
    for transport in args.transports.split(","):
        for key, value in run_transport(transport, args).items():
            results["{}_{}".format(transport, key)] = value
    report("transports", results)


if __name__ == "__main__":
    main()
