"""Every benchmark in one run: `.venv/bin/python -m bench` (see the README's figures for how long it takes).

Runs, one after another, each on a fresh local service it starts and stops itself:
  bench.serving    /recommend at 100 and 1000 candidates vs raw TF Session.run; swaps under load
  bench.freshness  accept -> new current version (warm, cold); accept -> changed /predict score;
                   peak RSS of each function's process and of the trainer
  bench.ingest     actions/s accepted and stored, requests of 1 and of 100, with a loss count
  bench.training   our incremental training task vs plain EasyRec train_eval --continue_train,
                   same new data (ratio)
  bench.shift      a preference shift: seconds until every shifted user's top 10 follows it
  bench.faults     kill -9 of each process under load: accepted vs trained, lost, twice, failed requests
                   (here once per process: PART_ARGS)
  bench.experiments  synthetic users with a known preference: A/B, interleaving and A/A experiments
                   through the API; false positives under peeking, users to significance, SRM
  bench.quality    MovieLens-100k split by time, replayed: online vs frozen vs popularity, trending,
                   item-kNN and EASE, AUC/HR@10/NDCG@10, streaming and day-level
then prints one table and writes bench/results/all.json (each part also writes its own file).
`--skip quality` (repeatable) leaves a part out.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ["serving", "freshness", "ingest", "training", "shift", "faults", "experiments", "quality"]
# The whole bench is to stay within 25 minutes on a 2-core machine: in it, the fault part kills each
# of its 5 targets once (5 kills; `python -m bench.faults` alone: twice each, 10 kills), which took
# the run from 28.8 minutes (faults 383 s) to under the limit.
PART_ARGS = {"faults": ["--kills", "1"]}


def _rows(name, results):
    if name == "quality":
        for m in results["models"]:
            for variant in ("streaming", "day_level"):
                for scorer, r in m[variant].items():
                    yield "quality {} {} {}: AUC / HR@10 / NDCG@10 (HR@10 known / new users)".format(
                        m["model"], variant, scorer), "{} / {:.3f} / {:.3f} ({:.3f} / {:.3f})".format(
                            "-" if r.get("auc") is None else "{:.3f}".format(r["auc"]), r["hr@10"], r["ndcg@10"],
                            r.get("hr@10_known", float("nan")), r.get("hr@10_new", float("nan")))
            yield "quality {} s: profiles / first training / replay / scoring after".format(
                m["model"]), "{:.0f} / {:.0f} / {:.0f} / {:.0f}".format(
                    m.get("profiles_s", 0), m["first_training_s"], m["replay_s"], m["evaluation_after_replay_s"])
        return
    for key, value in results.items():
        if key in ("date", "machine") or isinstance(value, (dict, list)):
            continue
        if isinstance(value, float):
            value = "{:.2f}".format(value)
        yield "{} {}".format(name, key), value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", action="append", default=[], choices=PARTS)
    args = parser.parse_args()
    started = time.monotonic()
    combined = {"date": time.strftime("%Y-%m-%d"), "parts": {}, "seconds": {}, "part_args": PART_ARGS}
    failed = []
    for name in PARTS:
        if name in args.skip:
            continue
        part_started = time.monotonic()
        print("bench: {} ...".format(name), flush=True)
        done = subprocess.run([sys.executable, "-m", "bench." + name] + PART_ARGS.get(name, []), cwd=ROOT, stdout=subprocess.DEVNULL,
                              env=dict(os.environ, LOCAL_QUIET_ACCESS_LOG="1"))
        combined["seconds"][name] = round(time.monotonic() - part_started, 1)
        if done.returncode != 0:  # the other parts still run; the run fails at the end
            print("bench: {} failed (exit {})".format(name, done.returncode), flush=True)
            failed.append(name)
            continue
        with open(os.path.join(ROOT, "bench", "results", name + ".json")) as f:
            combined["parts"][name] = json.load(f)
    combined["failed"] = failed
    combined["total_seconds"] = round(time.monotonic() - started, 1)
    with open(os.path.join(ROOT, "bench", "results", "all.json"), "w") as f:
        json.dump(combined, f, indent=2)
    print("| measure | value |")
    print("| --- | --- |")
    for name, results in combined["parts"].items():
        for key, value in _rows(name, results):
            print("| {} | {} |".format(key, value))
    print("| total run | {:.0f} s ({}) |".format(combined["total_seconds"], ", ".join(
        "{} {:.0f} s".format(k, v) for k, v in combined["seconds"].items())))
    if failed:
        raise SystemExit("bench: failed: {}".format(", ".join(failed)))


if __name__ == "__main__":
    main()
