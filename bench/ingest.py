"""Ingest benchmark: actions per second accepted and durably stored, requests of 1 and of 100.

  .venv/bin/python -m bench.ingest [--actions 3000] [--single 400]

One fresh local service (SQS transport). For each batch size, 2 concurrent clients post the actions
to /online/data/add; accepted/s runs until the last 200, stored/s until the consumer has stored them
all; then every accepted event id is read back from S3: `lost` must be 0. Writes bench/results/ingest.json.
"""
import argparse
import os
import platform
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import scratch_dir  # noqa: E402
from bench.freshness import Covered, _samples  # noqa: E402
from bench.quickstart import report  # noqa: E402
from bench.transports import ingest, stored_ids  # noqa: E402
from tests.e2e.conftest import RunningService  # noqa: E402


def measure(service, covered, rng, sizes):
    results = {}
    for batch, count in sizes:
        ids, accepted_s, stored_s = ingest(service, _samples(count, rng), batch=batch)
        results["batch{}_actions".format(batch)] = count
        results["batch{}_accepted_per_s".format(batch)] = count / accepted_s
        results["batch{}_stored_per_s".format(batch)] = count / stored_s
        results["batch{}_lost".format(batch)] = len(ids - stored_ids(covered))
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--actions", type=int, default=3000, help="actions posted in requests of 100")
    parser.add_argument("--single", type=int, default=400, help="actions posted one per request")
    args = parser.parse_args()
    tmp = scratch_dir("bench-ingest-")
    service = RunningService(os.path.join(tmp, "state"), os.path.join(tmp, "runner.log"), ["LOCAL_QUIET_ACCESS_LOG=1"])
    results = {"date": time.strftime("%Y-%m-%d"), "machine": "{} cores, {}".format(os.cpu_count(), platform.platform())}
    service.start()
    try:
        results.update(measure(service, Covered(service), random.Random(3), [(1, args.single), (100, args.actions)]))
    finally:
        service.stop()
    report("ingest", results)


if __name__ == "__main__":
    main()
