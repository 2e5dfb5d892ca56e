"""Serving benchmark: /recommend through the local runner versus raw TensorFlow, and swaps under load.

  .venv/bin/python -m bench.serving [--requests 300] [--swaps 4]

One run, fresh state, the real service (python -m infra.local_runner) with a real EasyRec DeepFM:
  - cold start: the first /recommend after the first version is published (download + load);
  - warm /recommend p50/p99 with 100 and 1000 candidates over HTTP, beside raw TF Session.run on the
    same SavedModel with the same inputs (bench/raw_scoring.py, model runtime), and their ratio;
    target: end-to-end p50 <= 2 x raw + 2 ms. The two are measured in alternating blocks (raw in
    a process of its own, kept loaded), so a machine that slows down mid-run slows both;
  - swaps under load: a steady /recommend loop while the current version changes (one incremental
    update, then rollbacks back and forth); counts failed requests (target 0) and the latency of
    requests during the swaps.
Prints a table and writes bench/results/serving.json.
"""
import argparse
import collections
import json
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import scratch_dir  # noqa: E402
from bench.quickstart import percentile, report  # noqa: E402
from tests.e2e.conftest import RunningService  # noqa: E402

USER = 123
ITEMS = 1000


def _actions(n, rng, offset=0):
    """Every item appears n / ITEMS times, so the candidates are known to the model (an item whose
    every action fell in the 10 % holdout is cold: about 1 in 1000 at 3 actions each); users like
    their parity."""
    samples = []
    for i in range(n):
        user = USER if i % 50 == 0 else rng.randrange(300)
        item = (i + offset) % ITEMS
        samples.append({"user_id": user, "item_id": item, "label": int((user + item) % 2 == 0)})
    return samples


def _post_all(service, samples):
    for i in range(0, len(samples), 100):
        r = requests.post(service.url + "/online/data/add", json={"samples": samples[i:i + 100]}, timeout=30)
        assert r.status_code == 200, r.text


def _train(service, mode):
    r = requests.post(service.url + "/online/training/start", json={"mode": mode}, timeout=30)
    assert r.status_code == 202, r.text
    while True:
        status = requests.get(service.url + "/online/training/status", timeout=10).json()
        if status["status"] in ("succeeded", "failed"):
            assert status["status"] == "succeeded", status
            return status
        time.sleep(0.5)


class RawScorer:
    """bench/raw_scoring.py kept loaded in the model runtime: blocks of raw Session.run timings on demand."""

    def __init__(self, model_dir, candidates, spec_path):
        self._process = subprocess.Popen(
            [os.path.join(ROOT, ".venv-model", "bin", "python"), os.path.join(ROOT, "bench", "raw_scoring.py"),
             model_dir, str(candidates), "0", spec_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))

    def timings(self, n):
        self._process.stdin.write("{}\n".format(n))
        self._process.stdin.flush()
        return json.loads(self._process.stdout.readline())

    def close(self):
        self._process.stdin.close()
        self._process.wait(timeout=30)


def interleaved(call, raw, repeats, blocks=6):
    """(end-to-end timings, raw timings), `repeats` of each, measured in alternating blocks."""
    e2e, direct = [], []
    for block in range(blocks):
        n = repeats // blocks + (1 if block < repeats % blocks else 0)
        for _ in range(n):
            started = time.perf_counter()
            response = call()
            e2e.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
        direct.extend(raw.timings(n))
    return e2e, direct


Reply = collections.namedtuple("Reply", "status_code text")


class KeepAliveClient:
    """A lean HTTP/1.1 keep-alive client on one socket, for the latency figures: it measures the
    service, not the client library. requests adds 1.5-2.5 ms per call on this machine, measured side
    by side, more than the whole gateway hop; http.client's header parsing (the email package) was
    still a third of what the client spent per request under py-spy. The gateway always answers with
    a Content-Length, which is all this reads besides the status."""

    def __init__(self, port):
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pending = b""

    def post_json(self, path, body):
        data = json.dumps(body).encode()
        self._sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: " + str(len(data)).encode()
                           + b"\r\n\r\n" + data)
        while b"\r\n\r\n" not in self._pending:
            self._pending += self._recv()
        head, _, rest = self._pending.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            rest += self._recv()
        self._pending = rest[length:]
        return Reply(status, rest[:length].decode())

    def _recv(self):
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the service closed the connection")
        return chunk

    def close(self):
        self._sock.close()


class Load:
    """A steady /recommend loop on its own thread, recording every request."""

    def __init__(self, url, body):
        self.url, self.body = url, body
        self.samples = []  # (started, ms, status, version)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        session = requests.Session()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                r = session.post(self.url + "/recommend", json=self.body, timeout=30)
                version = r.json().get("model_version") if r.status_code == 200 else None
                status = r.status_code
            except Exception as exc:  # noqa: BLE001 - a failed request is what we count
                status, version = repr(exc), None
            self.samples.append((started, (time.monotonic() - started) * 1000, status, version))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--swaps", type=int, default=4, help="rollbacks back and forth after the update")
    args = parser.parse_args()
    tmp = scratch_dir("bench-serving-")
    service = RunningService(os.path.join(tmp, "state"), os.path.join(tmp, "runner.log"),
                             # Versions come from the training calls below, one at a time: with the
                             # default continuous trainer, the first actions would start it, and a
                             # training call would then ask it for an update rather than run its own.
                             ["TRAIN_STEPS=200", "CURRENT_CHECK_INTERVAL_MS=500", "PROMOTION_AUC_TOLERANCE=1.0",
                              "CONTINUOUS_TRAINING=false"])
    results = {"date": time.strftime("%Y-%m-%d"),
               "machine": "{} cores, {}".format(os.cpu_count(), platform.platform())}
    service.start()
    try:
        rng = random.Random(7)
        _post_all(service, _actions(3000, rng))
        time.sleep(2)
        first = _train(service, "full")["current_model"]["version"]

        bodies = {n: {"user_id": USER, "candidate_items": list(range(n)), "top_k": 10} for n in (100, 1000)}
        started = time.perf_counter()
        r = requests.post(service.url + "/recommend", json=bodies[100], timeout=120)
        results["cold_start_first_recommend_ms"] = (time.perf_counter() - started) * 1000
        assert r.status_code == 200 and r.json()["model_version"] == first, r.text
        assert r.status_code == 200, r.text

        client = KeepAliveClient(int(service.url.rsplit(":", 1)[1]))
        model_dir = os.path.join(service.state_dir, "model-cache", first)
        spec_path = os.path.join(tmp, "feature_spec.json")  # so that raw TF is fed every input, live ones too
        with open(spec_path, "w") as f:
            spec = requests.get(service.url + "/model/info", timeout=10).json()["current"]["feature_spec"]
            f.write(spec if isinstance(spec, str) else json.dumps(spec))
        for n in (100, 1000):
            ranked = json.loads(client.post_json("/recommend", dict(bodies[n], top_k=n)).text)["recommendations"]
            results["recommend{}_cold_start_candidates".format(n)] = sum(1 for x in ranked if x.get("cold_start"))
            raw_scorer = RawScorer(model_dir, n, spec_path)
            try:
                e2e, direct = interleaved(lambda: client.post_json("/recommend", bodies[n]), raw_scorer, args.requests)
            finally:
                raw_scorer.close()
            p50, p99, raw50, raw99 = (percentile(e2e, 0.5), percentile(e2e, 0.99), percentile(direct, 0.5),
                                      percentile(direct, 0.99))
            results["recommend{}_p50_ms".format(n)], results["recommend{}_p99_ms".format(n)] = p50, p99
            results["raw_tf{}_p50_ms".format(n)], results["raw_tf{}_p99_ms".format(n)] = raw50, raw99
            results["recommend{}_over_raw_p50".format(n)] = p50 / raw50
            results["recommend{}_target_p50_ms".format(n)] = 2 * raw50 + 2
            results["recommend{}_target_met".format(n)] = p50 <= 2 * raw50 + 2

        # Swaps under a steady load: an incremental update, then rollbacks back and forth.
        with Load(service.url, bodies[100]) as load:
            time.sleep(1)
            _post_all(service, _actions(500, rng, offset=500))
            time.sleep(2)
            second = _train(service, "incremental")["current_model"]["version"]
            versions = [second]
            deadline = time.monotonic() + 60
            while not any(s[3] == second for s in load.samples) and time.monotonic() < deadline:
                time.sleep(0.1)
            for i in range(args.swaps):
                target = first if i % 2 == 0 else second
                r = requests.post(service.url + "/model/rollback", json={"version": target}, timeout=10)
                assert r.status_code == 200, r.text
                versions.append(target)
                mark = len(load.samples)
                deadline = time.monotonic() + 30
                while not any(s[3] == target for s in load.samples[mark:]) and time.monotonic() < deadline:
                    time.sleep(0.05)
            time.sleep(1)
        samples = load.samples
        failed = [s for s in samples if s[2] != 200]
        observed = []
        for s in samples:
            if s[3] and (not observed or observed[-1] != s[3]):
                observed.append(s[3])
        latencies = [s[1] for s in samples if s[2] == 200]
        results["swap_requests"] = len(samples)
        results["swap_failed_requests"] = len(failed)
        results["swap_versions_served_in_order"] = len(observed)
        results["swap_latency_p50_ms"] = percentile(latencies, 0.5)
        results["swap_latency_p99_ms"] = percentile(latencies, 0.99)
        results["swap_latency_max_ms"] = max(latencies)
        results["swaps"] = len(observed) - 1
        assert observed[0] == first and len(observed) == 2 + args.swaps, observed
    finally:
        service.stop()

    report("serving", results)


if __name__ == "__main__":
    main()
