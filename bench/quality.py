"""Learning quality on real data: MovieLens-100k split by time, replayed through the service.

  .venv/bin/python -m bench.quality [--models deepfm] [--steps 1000] [--rankings 500] [--per-day 10]

Per model, one fresh local service (python -m infra.local_runner, the service's defaults except
where said below):
  0. every user's and item's profile goes in through POST /users and /items (age, gender,
     occupation; genres, release year), as a client would at sign-up and listing;
  1. the first 80 % of the ratings (by time) go in through POST /online/data/add; once the consumer has
     stored all of them a continuous trainer starts, and its first version (a full training on them) is
     the *frozen* model;
  2. the remaining 20 % are replayed in timestamp order through POST /online/data/add while the
     continuous trainer follows them, one update per --update-every ratings: the bench waits, after
     each such chunk, until the chunk is stored, judged by an update and served.

Reproducible: the data, the samples scored and the training are seeded, and what each version learns
is fixed by the chunks (ratings are batch actions here, BATCH_MIN_ACTIONS = --update-every; left to
the defaults, each rating starts an update on whatever is stored at that moment, so which ratings an
update takes depends on wall-clock timing). What the chunks do not fix: thread scheduling inside
TensorFlow's float sums.

Two variants are scored from that one replay, each on every scorer, with every scorer seeing the
same past (bench/baselines.py: popularity, trending, item-kNN, EASE, counted and fitted on the same
actions):
  streaming   what a live user experiences. A sample of the replayed ratings is scored at its own
              moment, with every earlier action accepted: the service's current version answers
              (`online`), through /predict (AUC) and /recommend (ranking: the liked item among all the
              items the user had not rated before that moment); the user's earlier actions, of the same
              day too, reach the live features. The baselines score the same candidates at that moment
              (item-kNN and EASE fitted on the data before the day).
  day-level   the strict variant: each day is scored before any of its actions is learnt or seen: the
              version current at the day's start (`online`) and the `frozen` one, with the users'
              activity as of the day's start (bench/quality_eval.py, in the model runtime, beside the
              replay), up to --per-day liked ratings ranked.
Metrics: AUC over the scored ratings (liked = 4 stars or more) against the not-liked ones; HR@10 and
NDCG@10 of the liked item in full ranking (and, for comparison with sampled protocols, among 99
random items the user had not rated); for all users, known users (with actions before that day) and
new users (first seen that day). Targets (issue 12) are on the streaming variant.

The gate always promotes and drift retraining is off during the replay (PROMOTION_AUC_TOLERANCE=1.0,
AUTO_RETRAIN_AUC_THRESHOLD=0); MAX_CANDIDATES is raised for full ranking (1,682 items); the first
training runs --steps steps in batches of 512 (80,000 ratings make ~250,000 rows); the id embeddings
are sized to the data (ID_HASH_BUCKETS=20000). Prints the tables, writes bench/results/quality.json.
"""
import argparse
import collections
import datetime as dt
import json
import math
import os
import platform
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "shared"))

from bench import scratch_dir  # noqa: E402
from bench.baselines import NAMES as BASELINES, PastScorers, auc, hit_and_gain, rank_of  # noqa: E402
from bench.freshness import _current  # noqa: E402
from easyrec_online.artifacts.blend import expected_calibration_error  # noqa: E402
from easyrec_online.datasets.movielens import load_movielens_100k, split_by_time  # noqa: E402
from tests.e2e.conftest import RunningService  # noqa: E402

SAMPLED = 99  # the sampled protocol's negatives, from the same full-ranking scores


def _day(action):
    return dt.datetime.fromtimestamp(action["timestamp"], tz=dt.timezone.utc).date()


def _post(session, service, samples):
    ids = set()
    for i in range(0, len(samples), 500):
        r = session.post(service.url + "/online/data/add", json={"samples": samples[i:i + 500]}, timeout=60)
        assert r.status_code == 200, r.text
        ids.update(r.json()["event_ids"])
    return ids


def _put_profiles(service, ml):
    users = [{"user_id": u, "profile": {"age": p["age"], "gender": p["gender"], "occupation": p["occupation"]}}
             for u, p in ml.users.items()]
    items = [{"item_id": i, "profile": {"genres": p["genres"], "release_year": p["release_year"]}}
             for i, p in ml.items.items()]
    for path, kind, entries in (("/users", "users", users), ("/items", "items", items)):
        for start in range(0, len(entries), 1000):
            r = requests.post(service.url + path, json={kind: entries[start:start + 1000]}, timeout=60)
            assert r.status_code == 200, r.text
    return len(users) + len(items)


def _service_settings(service, env=()):
    """The env the service's functions use, for the evaluator (runner's physical names on moto, and the
    run's --env settings: the evaluator scores as the service does)."""
    return dict((entry.split("=", 1) for entry in env), **{"AWS_ENDPOINT_URL": service.cloud_url, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x", "DATA_BUCKET": "easyrec-online-databucket",
            "STATE_TABLE": "easyrec-online-statetable", "PROFILES_TABLE": "easyrec-online-profilestable"})


class Evaluator:
    """bench/quality_eval.py in the model runtime, fed tasks as soon as they are known, so that it scores
    while the replay goes on (the trainer mostly waits on I/O; there are 2 cores)."""

    def __init__(self, service, env=()):
        self._errors = tempfile.TemporaryFile(mode="w+")
        self._process = subprocess.Popen(
            [os.path.join(ROOT, ".venv-model", "bin", "python"), os.path.join(ROOT, "bench", "quality_eval.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors, text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        self._scores = []
        self._outbox = queue.Queue()
        self._writer = threading.Thread(target=self._write, daemon=True)
        self._reader = threading.Thread(target=lambda: self._scores.extend(
            json.loads(line) for line in self._process.stdout), daemon=True)
        self._writer.start()
        self._reader.start()
        self.tasks = 0
        self._outbox.put({"settings": _service_settings(service, env)})

    def _write(self):
        try:
            for message in iter(self._outbox.get, None):
                self._process.stdin.write(json.dumps(message) + "\n")
                self._process.stdin.flush()
            self._process.stdin.close()
        except BrokenPipeError:  # the evaluator failed: results() reports its error
            pass

    def add(self, actions):
        self._outbox.put({"add": actions})

    def submit(self, task):
        self._outbox.put(task)
        self.tasks += 1

    def results(self, timeout_s=1800):
        self._outbox.put(None)
        code = self._process.wait(timeout=timeout_s)
        self._reader.join(timeout=60)
        self._errors.seek(0)
        assert code == 0 and len(self._scores) == self.tasks, self._errors.read()[-3000:]
        return self._scores

    def close(self):
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._errors.close()


class Tally:
    """AUC pairs and rankings of one scorer, split by known / new users."""

    def __init__(self):
        self.labels, self.scores = [], []
        self.rankings = []  # (hit, gain, sampled hit, sampled gain, known)

    def rank(self, scores, target, known, sampled):
        hit, gain = hit_and_gain(rank_of(scores, target))
        picks = np.concatenate([[target], sampled])
        s_hit, s_gain = hit_and_gain(rank_of(scores[picks], 0))
        self.rankings.append((hit, gain, s_hit, s_gain, known))

    def summary(self):
        out = {"auc": auc(self.labels, self.scores), "rated_pairs": len(self.labels), "rankings": len(self.rankings)}
        for name, chosen in (("", self.rankings), ("_known", [r for r in self.rankings if r[4]]),
                             ("_new", [r for r in self.rankings if not r[4]])):
            if chosen:
                values = np.array([r[:4] for r in chosen])
                out.update({"hr@10" + name: float(values[:, 0].mean()), "ndcg@10" + name: float(values[:, 1].mean()),
                            "sampled_hr@10" + name: float(values[:, 2].mean()),
                            "sampled_ndcg@10" + name: float(values[:, 3].mean()), "rankings" + name: len(chosen)})
        return out


def paired_ratio(ours, theirs, known=None, draws=2000, seed=5):
    """NDCG@10 of `ours` over `theirs` (two Tallies of the same rankings, in the same order), with a 95 %
    paired bootstrap interval over the rankings: how far a sample of this size can be trusted. `known`:
    True / False for known / new users only."""
    chosen = [k for k, r in enumerate(ours.rankings) if known is None or r[4] == known]
    a = np.array([ours.rankings[k][1] for k in chosen])
    b = np.array([theirs.rankings[k][1] for k in chosen])
    if not len(a) or not b.sum():
        return None
    draws_at = np.random.RandomState(seed).randint(0, len(a), size=(draws, len(a)))
    sums = b[draws_at].sum(axis=1)
    ratios = a[draws_at].sum(axis=1)[sums > 0] / sums[sums > 0]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {"ratio": float(a.sum() / b.sum()), "low": float(low), "high": float(high), "rankings": len(a)}


def _plan(rest, rankings, rng):
    """Which replayed ratings the streaming variant scores: `rankings` liked ones ranked, and for AUC those
    and as many ratings again (liked or not), spread over the replay."""
    liked = [k for k, a in enumerate(rest) if a["label"]]
    ranked = set(rng.sample(liked, min(rankings, len(liked))))
    rated = set(rng.sample(range(len(rest)), min(rankings, len(rest)))) | ranked
    return ranked, rated


def _stored(service):
    return requests.get(service.url + "/online/streaming/status", timeout=30).json()["consumer"]["stored_actions"]


def _wait_stored(service, posted, timeout_s=600):
    deadline = time.monotonic() + timeout_s
    while _stored(service) < posted:
        assert time.monotonic() < deadline, "the consumer stored fewer than {} actions in {} s".format(posted, timeout_s)
        time.sleep(0.1)


def _caught_up(service, posted, timeout_s=300):
    """The current version, once every posted action is stored, an update has trained on or judged each
    of them (a refused one's wait for the next chunk), and inference serves that version."""
    _wait_stored(service, posted, timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        info = requests.get(service.url + "/model/info", timeout=30).json()
        current = (info.get("current") or {}).get("version")
        if current and info["online"]["awaiting_update"] == 0:
            served = requests.post(service.url + "/predict", json={"user_id": "-", "item_id": "-"}, timeout=30)
            if served.json().get("model_version") == current:
                return current
        assert time.monotonic() < deadline, "no update judged the {} posted actions in {} s: {}".format(
            posted, timeout_s, info.get("online"))
        time.sleep(0.05)


def _version_facts(service):
    """What the current version fitted when it was trained: its holdout metrics (AUC, the CF blend
    weight) and the serving defaults it carries (the new-user popularity weight among them)."""
    current = requests.get(service.url + "/model/info", timeout=30).json()["current"] or {}
    return {"version": current.get("version"), "mode": current.get("mode"), "metrics": current.get("metrics"),
            "serving_defaults": current.get("serving_defaults")}


def run_model(model, args, ml, first, rest):
    tmp = scratch_dir("bench-quality-{}-".format(model))
    service = RunningService(os.path.join(tmp, "state"), os.path.join(tmp, "runner.log"), [
        "MODEL_NAME=" + model, "TRAIN_STEPS={}".format(args.steps), "CONTINUOUS_POLL_MS=200",
        # The trainer starts after the first 80 % is in (its first version is the frozen model).
        "CONTINUOUS_TRAINING=false",
        "PROMOTION_AUC_TOLERANCE=1.0", "AUTO_RETRAIN_AUC_THRESHOLD=0", "LOCAL_QUIET_ACCESS_LOG=1",
        "ID_HASH_BUCKETS=20000", "TRAIN_BATCH_SIZE=512", "MAX_CANDIDATES=2000", "MAX_TOP_K=2000",
        # One update per chunk of the replay, whatever the timing (see the docstring), and every request
        # reads the user's activity as it is (no cache a timing decides on).
        "IMMEDIATE_ACTION_TYPES=none", "BATCH_MIN_ACTIONS={}".format(args.update_every), "BATCH_MAX_AGE_S=86400",
        "ACTIVITY_CACHE_TTL_MS=0"] + args.env)
    out = {"model": model}
    items = sorted(ml.items)
    began = time.monotonic()
    service.start()
    out["service_start_s"] = time.monotonic() - began
    session = requests.Session()
    try:
        t0 = time.monotonic()
        out["profiles"] = _put_profiles(service, ml)
        out["profiles_s"] = time.monotonic() - t0
        started = time.monotonic()
        _post(session, service, first)
        posted = len(first)
        _wait_stored(service, posted)
        r = requests.post(service.url + "/online/training/start", json={"mode": "continuous"}, timeout=30)
        assert r.status_code == 202, r.text
        frozen = _caught_up(service, posted, timeout_s=900)
        out["first_training_s"] = time.monotonic() - started
        out["first_version"] = _version_facts(service)

        past = PastScorers(items)
        rated = collections.defaultdict(set)
        first_seen = {}
        for a in first:
            past.add(a)
            rated[a["user_id"]].add(a["item_id"])
            first_seen.setdefault(a["user_id"], _day(a))
        rng = random.Random(17)
        ranked_points, rated_points = _plan(rest, args.rankings, rng)
        streaming = {name: Tally() for name in BASELINES + ("online",)}
        daily = {name: Tally() for name in BASELINES + ("frozen", "online")}
        evaluator = Evaluator(service, args.env)
        evaluator.add(first)
        day_tasks = []  # (version name, labels, rankings [(user, target index, candidates, sampled, known)])
        try:
            replay_started = time.monotonic()
            pending, day, versions = [], None, set()
            by_day = collections.defaultdict(list)
            for a in rest:
                by_day[_day(a)].append(a)
            for k, a in enumerate(rest):
                if k and k % args.update_every == 0:  # one chunk: stored, judged by an update, served
                    _post(session, service, pending)
                    posted += len(pending)
                    pending = []
                    _caught_up(service, posted)
                if _day(a) != day:
                    if pending:
                        _post(session, service, pending)
                        posted += len(pending)
                        pending = []
                    day = _day(a)
                    past.refit()  # item-kNN and EASE on the data before the day
                    online = _current(service)["version"]
                    versions.add(online)
                    _day_level(day, by_day[day], online, frozen, past, rated, first_seen, items, rng, args,
                               evaluator, daily, day_tasks)
                user = a["user_id"]
                known = first_seen.get(user, day) < day
                if k in rated_points:
                    if pending:  # every earlier action accepted
                        _post(session, service, pending)
                        posted += len(pending)
                        pending = []
                    r = session.post(service.url + "/predict", timeout=30, json={
                        "user_id": user, "item_id": a["item_id"], "context": {"timestamp": a["timestamp"]}})
                    assert r.status_code == 200, r.text
                    streaming["online"].labels.append(a["label"])
                    streaming["online"].scores.append(r.json()["score"])
                    base = past.scores(user, [a["item_id"]], a["timestamp"])
                    for name in BASELINES:
                        streaming[name].labels.append(a["label"])
                        streaming[name].scores.append(float(base[name][0]))
                    versions.add(r.json()["model_version"])
                if k in ranked_points:
                    candidates = [i for i in items if i not in rated[user] or i == a["item_id"]]
                    target = candidates.index(a["item_id"])
                    r = session.post(service.url + "/recommend", timeout=60, json={
                        "user_id": user, "candidate_items": candidates, "top_k": len(candidates),
                        "context": {"timestamp": a["timestamp"]}})
                    assert r.status_code == 200, r.text
                    by_item = {rec["item_id"]: rec["score"] for rec in r.json()["recommendations"]}
                    sampled = _sampled(candidates, target, rng)
                    streaming["online"].rank(np.array([by_item[i] for i in candidates]), target, known, sampled)
                    base = past.scores(user, candidates, a["timestamp"])
                    for name in BASELINES:
                        streaming[name].rank(base[name], target, known, sampled)
                pending.append(a)
                past.add(a)
                rated[user].add(a["item_id"])
                first_seen.setdefault(user, day)
            if pending:
                _post(session, service, pending)
            out["replay_s"] = time.monotonic() - replay_started
            out["online_versions"] = len(versions)
            waited = time.monotonic()
            scores = evaluator.results()
            out["evaluation_after_replay_s"] = time.monotonic() - waited
            out["last_version"] = _version_facts(service)
        finally:
            evaluator.close()
    finally:
        service.stop()
        if os.environ.get("BENCH_KEEP_TMP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)

    out["service_s"] = time.monotonic() - began
    _score_days(day_tasks, scores, daily)
    out["streaming"] = {name: tally.summary() for name, tally in streaming.items()}
    # Calibration of what serving answers: /predict's scores of the rated pairs against liked or not
    # (hundreds of rows, where a version's own judged half has tens).
    out["streaming_online_ece"] = expected_calibration_error(streaming["online"].labels, streaming["online"].scores)
    out["streaming_ndcg_over_popularity"] = {
        group: paired_ratio(streaming["online"], streaming["popularity"], known)
        for group, known in (("all", None), ("known", True), ("new", False))}
    out["day_level"] = {name: tally.summary() for name, tally in daily.items()}
    return out


def _sampled(candidates, target, rng):
    others = [k for k in range(len(candidates)) if k != target]
    return np.array(rng.sample(others, min(SAMPLED, len(others))))


def _day_level(day, actions, online, frozen, past, rated, first_seen, items, rng, args, evaluator, daily, day_tasks):
    """The strict variant for one day: its ratings and up to --per-day liked ones ranked, scored as of the
    day's start (models by the evaluator, baselines here and now)."""
    labels = [a["label"] for a in actions]
    pairs = [[a["user_id"], a["item_id"]] for a in actions]
    moments = [a["timestamp"] // 3600 * 3600 for a in actions]  # a request per hour: hour and weekday features
    liked = [a for a in actions if a["label"]]
    rng.shuffle(liked)
    rankings = []
    for a in sorted(liked[:args.per_day], key=lambda a: a["timestamp"]):
        user = a["user_id"]
        candidates = [i for i in items if i not in rated[user] or i == a["item_id"]]
        target = candidates.index(a["item_id"])
        known = first_seen.get(user, day) < day
        sampled = _sampled(candidates, target, rng)
        rankings.append((user, target, candidates, sampled, known, a["timestamp"]))
        pairs += [[user, i] for i in candidates]
        moments += [a["timestamp"] // 3600 * 3600] * len(candidates)
        base = past.scores(user, candidates, a["timestamp"])
        for name in BASELINES:
            daily[name].rank(base[name], target, known, sampled)
    for a in actions:
        base = past.scores(a["user_id"], [a["item_id"]], a["timestamp"])
        for name in BASELINES:
            daily[name].labels.append(a["label"])
            daily[name].scores.append(float(base[name][0]))
    for version in (frozen, online):
        evaluator.submit({"version": version, "pairs": pairs, "timestamps": moments})
    evaluator.add(actions)  # after the day's tasks: they score as of the day's start
    day_tasks.append((labels, rankings))


def _score_days(day_tasks, scores, daily):
    for index, (labels, rankings) in enumerate(day_tasks):
        for name, values in (("frozen", scores[2 * index]), ("online", scores[2 * index + 1])):
            values = np.asarray(values)
            daily[name].labels += labels
            daily[name].scores += list(values[:len(labels)])
            at = len(labels)
            for user, target, candidates, sampled, known, _ in rankings:
                daily[name].rank(values[at:at + len(candidates)], target, known, sampled)
                at += len(candidates)


def table(results, variant):
    rows = ["| model | scorer | AUC (rated pairs) | HR@10 | NDCG@10 | HR@10 known / new | NDCG@10 known / new | "
            "sampled-99 HR@10 | rankings (known / new) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in results["models"]:
        for name, r in m[variant].items():
            rows.append("| {} | {} | {} ({}) | {:.3f} | {:.3f} | {:.3f} / {:.3f} | {:.3f} / {:.3f} | {:.3f} | "
                        "{} ({} / {}) |".format(
                            m["model"], name, "{:.3f}".format(r["auc"]) if r["auc"] is not None else "-",
                            r["rated_pairs"], r["hr@10"], r["ndcg@10"], r.get("hr@10_known", math.nan),
                            r.get("hr@10_new", math.nan), r.get("ndcg@10_known", math.nan),
                            r.get("ndcg@10_new", math.nan), r["sampled_hr@10"], r["rankings"],
                            r.get("rankings_known", 0), r.get("rankings_new", 0)))
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="deepfm")
    parser.add_argument("--steps", type=int, default=1000)
    # Each streaming point is scored after every earlier action is accepted, so each costs requests of
    # its own while the trainer updates beside it. 150 rankings held only 44 known users' (the known-user
    # NDCG ratio's interval spanned 0.3-5x, its figure +10 % to +59 % between runs); 400 hold about 108
    # (interval 1.02-5.28x in one run) for a replay 80 s longer (301 s against 221 s on 2 cores), and
    # the whole `python -m bench` stays within 25 minutes. The sample sizes are printed with the tables.
    parser.add_argument("--rankings", type=int, default=500, help="streaming variant: liked ratings ranked")
    parser.add_argument("--per-day", type=int, default=10, help="day-level variant: liked ratings ranked a day")
    parser.add_argument("--update-every", type=int, default=400,
                        help="replayed ratings per update (the bench waits for each: reproducible runs)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="service setting")
    parser.add_argument("--out", default="quality", help="results file name under bench/results/")
    args = parser.parse_args()
    began = time.monotonic()
    ml = load_movielens_100k()
    first, rest = split_by_time(ml.actions, 0.8)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": "{} cores, {}".format(os.cpu_count(), platform.platform()),
               "dataset": "MovieLens-100k: {} ratings before the split, {} replayed over {} days".format(
                   len(first), len(rest), len({_day(a) for a in rest})), "models": []}
    for model in args.models.split(","):
        results["models"].append(run_model(model, args, ml, first, rest))
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", args.out + ".json"), "w") as f:
        json.dump(results, f, indent=2)
    print(results["date"], results["machine"])
    print(results["dataset"])
    print("streaming (each liked rating ranked at its moment, full ranking):")
    print(table(results, "streaming"))
    print("day-level (each day scored before any of its actions):")
    print(table(results, "day_level"))
    print("whole bench: {:.0f} s".format(time.monotonic() - began))
    for m in results["models"]:
        print("{}: service {:.0f} s (start {:.0f} s; first training {:.0f} s, from the first rating posted; replay {:.0f} s, "
              "{} online versions)".format(m["model"], m["service_s"], m["service_start_s"], m["first_training_s"],
                                           m["replay_s"], m["online_versions"]))
        for which in ("first_version", "last_version"):
            facts = m.get(which) or {}
            print("  {} {} ({}): metrics {}, serving defaults {}".format(
                which.replace("_", " "), facts.get("version"), facts.get("mode"), facts.get("metrics"),
                facts.get("serving_defaults")))
        if m.get("streaming_online_ece") is not None:
            print("  served calibration: ECE {:.3f} over the {} rated pairs /predict scored".format(
                m["streaming_online_ece"], m["streaming"]["online"]["rated_pairs"]))
        for group, r in m["streaming_ndcg_over_popularity"].items():
            if r is not None:
                print("  streaming NDCG@10 online / popularity, {} users: {:.2f} (95 % paired bootstrap {:.2f}-{:.2f}, "
                      "{} rankings)".format(group, r["ratio"], r["low"], r["high"], r["rankings"]))


if __name__ == "__main__":
    main()
