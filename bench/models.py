"""Model benchmark: every ranking model, and the incremental path, on a MovieLens-100k subset.

  .venv/bin/python -m bench.models [--users 100] [--steps 300]

In one run, against a moto server and the real training task (Python 3.7, EasyRec, TF 1.15):
  - each model (full training, time-split holdout = the newest ~10 % by stable hash) -> wall time of
    the task process, EasyRec train+export time, holdout AUC and logloss;
  - DeepFM incremental updates: 1k new actions -> new current version, cold process wall time,
    as a ratio of the full training's.
Prints a table; writes bench/results/models.json.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "shared"))

from moto.server import ThreadedMotoServer  # noqa: E402

from bench import scratch_dir  # noqa: E402
from easyrec_online import wiring  # noqa: E402
from easyrec_online.datasets.movielens import load_movielens_100k, split_by_time  # noqa: E402
from easyrec_online.ingest.actions import ActionIn, StoredAction  # noqa: E402
from tests.integration.conftest import free_port, make_cloud  # noqa: E402
from tests.integration.runtime import run_trainer as _run_trainer  # noqa: E402

# (label, MODEL_NAME, extra settings): every model with the default optimizer, and DeepFM with Adam
# beside it (what the default optimizer costs or gains in quality).
MODELS = [("deepfm", "deepfm", {}), ("deepfm (adam)", "deepfm", {"OPTIMIZER": "adam"}),
          ("wide_and_deep", "wide_and_deep", {}), ("dcn", "dcn", {}), ("autoint", "autoint", {}),
          ("dssm", "dssm", {}), ("mind", "mind", {}), ("mmoe", "mmoe", {})]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = "http://127.0.0.1:{}".format(port)
    tmp = scratch_dir("bench-models-")
    data = load_movielens_100k(max_users=args.users)
    past, future = split_by_time(data.actions, 0.9)
    results = {"date": time.strftime("%Y-%m-%d"), "users": args.users, "actions": len(data.actions),
               "steps": args.steps, "models": {}, "incremental": []}
    from pathlib import Path
    try:
        for label, model, extra in MODELS:
            settings = make_cloud(endpoint, TRAIN_STEPS=str(args.steps), MODEL_NAME=model, **extra)
            store = wiring.action_store(settings)
            actions = [StoredAction.accept(ActionIn.model_validate(s)) for s in past]
            for start in range(0, len(actions), 1000):
                store.put_batch(actions[start:start + 1000])
            started = time.monotonic()
            job_id, result = _run_trainer(settings, Path(tmp), TRAINING_MODE="full")
            wall = time.monotonic() - started
            assert result.returncode == 0, result.stderr[-3000:]
            version = wiring.state_store(settings).get_current()
            results["models"][label] = {"task_wall_s": wall, "train_export_s": version.timings["train_export_s"],
                                        "auc": version.metrics.get("auc"), "logloss": version.metrics["logloss"],
                                        "eval_rows": version.metrics["num_eval_rows"]}
            if label == "deepfm":
                full_wall = wall
                for start in range(0, min(len(future), 3000), 1000):  # 1k new actions per update
                    chunk = [StoredAction.accept(ActionIn.model_validate(s)) for s in future[start:start + 1000]]
                    store.put_batch(chunk)
                    started = time.monotonic()
                    job_id, result = _run_trainer(settings, Path(tmp), PROMOTION_AUC_TOLERANCE="1.0")
                    wall = time.monotonic() - started
                    assert result.returncode == 0, result.stderr[-3000:]
                    child = wiring.state_store(settings).get_current()
                    results["incremental"].append({"new_actions": len(chunk), "task_wall_s": wall,
                                                   "train_export_s": child.timings["train_export_s"],
                                                   "over_full": wall / full_wall, "mode": child.mode,
                                                   "auc": child.metrics.get("auc")})
    finally:
        server.stop()
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "models.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("MovieLens-100k, first {} users: {} actions ({} for full training), {} steps".format(
        args.users, len(data.actions), len(past), args.steps))
    print("{:<14} {:>10} {:>14} {:>7} {:>8}".format("model", "task s", "train+export s", "AUC", "logloss"))
    for label, r in results["models"].items():
        print("{:<14} {:>10.1f} {:>14.1f} {:>7.3f} {:>8.3f}".format(label, r["task_wall_s"], r["train_export_s"],
                                                                      r["auc"], r["logloss"]))
    for r in results["incremental"]:
        print("incremental ({} new, {}): task {:.1f} s = {:.2f} x full, train+export {:.1f} s, AUC {:.3f}".format(
            r["new_actions"], r["mode"], r["task_wall_s"], r["over_full"], r["train_export_s"], r["auc"] or 0))


if __name__ == "__main__":
    main()
