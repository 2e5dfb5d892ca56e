"""Quick-start benchmark: one run, fresh state, the real service through the local runner.

  .venv/bin/python -m bench.quickstart [--actions 2000] [--requests 300]

Measures, in one run: runner start-up; ingest (actions accepted per second through the API in
requests of 100, and accepted-and-stored per second: until every one is in S3); first training (start -> new current version); /recommend latency with 100 candidates
through HTTP versus raw TensorFlow Session.run on the same SavedModel (ratio); and /health as the
gateway's floor. Prints a table and writes bench/results/quickstart.json.
"""
import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import scratch_dir  # noqa: E402
from tests.e2e.conftest import RunningService  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def timed(call, repeats):
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return percentile(samples, 0.5), percentile(samples, 0.99)


def peak_rss_mb(root_pid):
    """Peak resident memory (VmHWM, MB) of each function worker and task under a runner process,
    by what it runs: the function's code folder (api, inference, ingest_consumer) or the trainer."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/{}/stat".format(entry)) as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:
                continue
    peaks, stack = {}, [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open("/proc/{}/cmdline".format(pid)) as f:
                argv = f.read().split("\0")
            with open("/proc/{}/status".format(pid)) as f:
                hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            continue
        if pid == root_pid:
            name = "local runner (gateway + moto)"
        elif any(a.endswith("worker_main.py") for a in argv):
            name = os.path.basename(argv[argv.index(next(a for a in argv if a.endswith("worker_main.py"))) + 1].rstrip("/"))
        elif "task.py" in argv:
            name = "trainer task"
        else:
            continue
        peaks[name] = max(peaks.get(name, 0.0), hwm / 1024.0)
    return peaks


def report(name, results):
    """Write bench/results/<name>.json and print the figures as a table."""
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", name + ".json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print("{:<{}}  {}".format(key, width, "{:.2f}".format(value) if isinstance(value, float) else value))


def _stored(service):
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=service.cloud_url, region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x", config=Config(s3={"addressing_style": "path"}))
    bucket = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].endswith("databucket")][0]
    ids = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="actions/"):
        for obj in page.get("Contents", []):
            for line in s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode().splitlines():
                ids.add(json.loads(line)["event_id"])
    return ids


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--actions", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    tmp = scratch_dir("bench-quickstart-")
    service = RunningService(os.path.join(tmp, "state"), os.path.join(tmp, "runner.log"),
                             ["TRAIN_STEPS=200", "CURRENT_CHECK_INTERVAL_MS=1000"])
    results = {"date": time.strftime("%Y-%m-%d"), "machine": "{} cores, {}".format(os.cpu_count(), platform.platform())}
    started = time.monotonic()
    service.start()
    results["runner_start_s"] = time.monotonic() - started
    try:
        rng = random.Random(1)
        samples = []
        for _ in range(args.actions):  # users prefer items of their own parity: learnable, not trivial
            user, item = rng.randrange(200), rng.randrange(100)
            samples.append({"user_id": user, "item_id": item, "label": int((user + item) % 2 == 0)})
        started = time.monotonic()
        for i in range(0, len(samples), 100):
            r = requests.post(service.url + "/online/data/add", json={"samples": samples[i:i + 100]}, timeout=30)
            assert r.status_code == 200, r.text
        accept_s = time.monotonic() - started
        results["ingest_accepted_per_s"] = args.actions / accept_s
        while requests.get(service.url + "/health", timeout=10).status_code == 200:  # wait until stored
            if len(_stored(service)) >= args.actions:
                break
            time.sleep(0.2)
        results["ingest_stored_per_s"] = args.actions / (time.monotonic() - started)

        started = time.monotonic()
        r = requests.post(service.url + "/online/training/start", timeout=30)
        assert r.status_code == 202, r.text
        while True:
            status = requests.get(service.url + "/online/training/status", timeout=10).json()
            if status["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        assert status["status"] == "succeeded", status
        results["first_training_s"] = time.monotonic() - started
        results["trained_actions"] = status["current_model"]["num_actions"]
        results["holdout_auc"] = status["current_model"]["metrics"].get("auc")

        body = {"user_id": 123, "candidate_items": list(range(1, 101)), "top_k": 10}
        first = time.perf_counter()
        r = requests.post(service.url + "/recommend", json=body, timeout=60)
        results["first_recommend_ms"] = (time.perf_counter() - first) * 1000
        assert r.status_code == 200, r.text
        version = r.json()["model_version"]
        session = requests.Session()
        results["health_p50_ms"], results["health_p99_ms"] = timed(
            lambda: session.get(service.url + "/health", timeout=10), args.requests)
        results["recommend100_p50_ms"], results["recommend100_p99_ms"] = timed(
            lambda: session.post(service.url + "/recommend", json=body, timeout=10), args.requests)
        model_dir = os.path.join(service.state_dir, "model-cache", version)
        raw = json.loads(subprocess.run(
            [os.path.join(ROOT, ".venv-model", "bin", "python"), os.path.join(ROOT, "bench", "raw_scoring.py"),
             model_dir, "100", str(args.requests)], capture_output=True, text=True, check=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout.strip().splitlines()[-1])
        results["raw_tf100_p50_ms"], results["raw_tf100_p99_ms"] = raw["p50_ms"], raw["p99_ms"]
        results["recommend_over_raw_p50"] = results["recommend100_p50_ms"] / raw["p50_ms"]
    finally:
        service.stop()

    report("quickstart", results)


if __name__ == "__main__":
    main()
