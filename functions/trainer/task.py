"""Training task entrypoint (model runtime, Python 3.7): `python task.py` in the trainer container.

Started by POST /online/training/start through ECS RunTask with JOB_ID in its environment. A continuous
trainer starts `python task.py` again, in the same task, with TRAINING_MODE=retraining, to train a new
lineage beside its updates (modeling/continuous.py).
"""
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading

from easyrec_online import wiring
from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import isoformat_utc, utc_now
from easyrec_online.modeling.job import job_from_environment, run_one_shot, run_training_job

# Enough to reach the job record when the rest of the configuration does not parse.
_LOCATION_VARIABLES = ("AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "STATE_TABLE")


_PR_SET_PDEATHSIG = 1


def _end_with_parent(trainer_pid: int) -> None:
    """In the retraining's process, first thing: SIGKILL when the trainer that started it dies, however it
    dies (a kill -9 leaves no retraining behind to publish a lineage nobody follows); and end now if it
    died before this was set."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != trainer_pid:
        os._exit(3)


def start_retraining(reason: str, version_id: str, overrides=None) -> subprocess.Popen:
    """`overrides`: settings of an experiment's new_lineage arm (its model), with RETRAINING_FOR_ARM."""
    env = dict(os.environ, TRAINING_MODE="retraining", RETRAINING_REASON=reason, RETRAINING_VERSION=version_id,
               TRAINER_PID=str(os.getpid()), **(overrides or {}))
    return subprocess.Popen([sys.executable, os.path.abspath(__file__)], env=env)


def main() -> int:
    job_id, mode = job_from_environment()
    if mode == "retraining":
        _end_with_parent(int(os.environ["TRAINER_PID"]))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        logging.error("training job %s: bad configuration: %s", job_id, exc)
        located = Settings.from_env({k: os.environ[k] for k in _LOCATION_VARIABLES if k in os.environ})
        wiring.state_store(located).update_job(job_id, status="failed", finished_at=isoformat_utc(utc_now()),
                                               error="bad configuration: {}".format(exc))
        return 2
    try:
        if mode == "continuous":
            from easyrec_online.modeling.continuous import run_continuous

            # ECS StopTask (a stop, a task retirement, a deploy) sends SIGTERM: finish the update in
            # progress, then end; without a stop request the job ends "interrupted" and is resumed.
            stopping = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stopping.set())
            run_continuous(settings, wiring.state_store(settings), wiring.trainer_store(settings),
                           aws.client("s3", settings), aws.client("sqs", settings), job_id,
                           wiring.profile_store(settings), should_stop=stopping.is_set,
                           start_retraining=start_retraining)
        elif mode == "retraining":  # started by the continuous trainer of this job, which holds the lease
            run_training_job(settings, wiring.state_store(settings), wiring.trainer_store(settings),
                             aws.client("s3", settings), aws.client("sqs", settings), job_id, "full",
                             wiring.profile_store(settings), keep_running=True,
                             retraining=os.environ.get("RETRAINING_REASON") or "requested",
                             version_id=os.environ.get("RETRAINING_VERSION") or None,
                             for_arm=os.environ.get("RETRAINING_FOR_ARM") == "1")
        else:
            run_one_shot(settings, wiring.state_store(settings), wiring.trainer_store(settings),
                         aws.client("s3", settings), aws.client("sqs", settings), job_id, mode,
                         profile_store=wiring.profile_store(settings))
    except Exception:
        if mode == "retraining":  # the job goes on: its trainer records how the retraining ended
            logging.exception("training job %s: the retraining failed", job_id)
        return 1  # the job record carries the error; the log has the traceback
    return 0


if __name__ == "__main__":
    sys.exit(main())
