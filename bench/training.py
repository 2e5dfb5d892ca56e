"""Training overhead: our incremental update versus plain EasyRec continue_train, same new data.

  .venv/bin/python -m bench.training [--users 100] [--steps 300] [--new 1000]

Against a moto server (MovieLens-100k, first `--users` users, split by time): a full training task,
then `--new` newer actions and an incremental training task (a new process: TF import, loading the
actions, rows, EasyRec train + export, evaluating candidate and current on the holdout, upload). Its
kept working folder then feeds plain EasyRec (bench/plain_easyrec.py): the parent checkpoint, the
same pipeline.config and CSV rows, `python -m easy_rec.python.train_eval --continue_train` in a new
process. Ratio = ours / plain. (The warm path of the continuous trainer needs no new process; its
update time is in bench.freshness.) Writes bench/results/training.json.
"""
import argparse
import glob
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "shared"))

from moto.server import ThreadedMotoServer  # noqa: E402

from bench import scratch_dir  # noqa: E402
from bench.quickstart import report  # noqa: E402
from easyrec_online import wiring  # noqa: E402
from easyrec_online.datasets.movielens import load_movielens_100k, split_by_time  # noqa: E402
from easyrec_online.ingest.actions import ActionIn, StoredAction  # noqa: E402
from tests.conftest import MODEL_PYTHON  # noqa: E402
from tests.integration.conftest import free_port, make_cloud  # noqa: E402
from tests.integration.runtime import process_env as _process_env, run_trainer as _run_trainer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--new", type=int, default=1000)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    tmp = Path(scratch_dir("bench-training-"))
    results = {"date": time.strftime("%Y-%m-%d"), "users": args.users, "new_actions": args.new}
    try:
        endpoint = "http://127.0.0.1:{}".format(port)
        settings = make_cloud(endpoint, TRAIN_STEPS=str(args.steps), PROMOTION_AUC_TOLERANCE="1.0",
                              AUTO_RETRAIN_AUC_THRESHOLD="0")
        data = load_movielens_100k(max_users=args.users)
        past, future = split_by_time(data.actions, 0.9)
        store = wiring.action_store(settings)
        store.put_batch([StoredAction.accept(ActionIn.model_validate(s)) for s in past])
        _, result = _run_trainer(settings, tmp, TRAINING_MODE="full")
        assert result.returncode == 0, result.stderr[-3000:]
        store.put_batch([StoredAction.accept(ActionIn.model_validate(s)) for s in future[:args.new]])
        workroot = tmp / "work"
        workroot.mkdir()
        started = time.monotonic()
        _, result = _run_trainer(settings, tmp, TRAINING_MODE="incremental", TRAIN_KEEP_WORKDIR="true",
                                 TMPDIR=str(workroot))
        results["ours_incremental_task_s"] = time.monotonic() - started
        assert result.returncode == 0, result.stderr[-3000:]
        version = wiring.state_store(settings).get_current()
        assert version.mode == "incremental", version
        results["ours_train_export_s"] = version.timings["train_export_s"]
        (workdir,) = glob.glob(str(workroot / "easyrec-train-*"))
        plain = subprocess.run([MODEL_PYTHON, os.path.join(ROOT, "bench", "plain_easyrec.py"), workdir, version.version],
                               env=_process_env(settings, tmp), capture_output=True, text=True, timeout=900)
        assert plain.returncode == 0, plain.stderr[-3000:]
        results["plain_easyrec_continue_train_s"] = json.loads(plain.stdout.strip().splitlines()[-1])["wall_s"]
        results["ours_over_plain"] = results["ours_incremental_task_s"] / results["plain_easyrec_continue_train_s"]
    finally:
        server.stop()
    report("training", results)


if __name__ == "__main__":
    main()
