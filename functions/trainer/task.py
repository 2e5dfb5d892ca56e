"""Training task entrypoint (model runtime, Python 3.7): `python task.py` in the trainer container.

Started by POST /online/training/start through ECS RunTask with JOB_ID in its environment.
"""
import logging
import sys

from easyrec_online import aws, wiring
from easyrec_online.config import Settings
from easyrec_online.modeling.job import job_from_environment, run_training_job


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    job_id, mode = job_from_environment()
    try:
        run_training_job(settings, wiring.state_store(settings), wiring.action_store(settings),
                         aws.client("s3", settings), aws.client("sqs", settings), job_id, mode)
    except Exception:
        return 1  # the job record carries the error; the log has the traceback
    return 0


if __name__ == "__main__":
    sys.exit(main())
