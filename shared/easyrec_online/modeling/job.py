"""One training run, end to end (the training task's whole job; model runtime).

stored actions (S3) -> feature rows -> EasyRec train + export -> holdout metrics -> upload to
models/<lineage>/<version>/ -> registry record -> current pointer -> job succeeded.

The current pointer moves only after everything of the new version is in S3 and registered, so a
run that dies at any point leaves the serving model untouched.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Optional

from ..actions import isoformat_utc, utc_now
from ..config import Settings
from ..features import FEATURE_NAMES, csv_lines, split_holdout, training_rows
from ..ingest import ActionStore
from ..registry import ModelVersion, StateStore, new_id
from .pipeline import build_pipeline_config

logger = logging.getLogger(__name__)


class TrainingFailed(Exception):
    pass


def wait_for_ingest_drain(sqs: Any, queue_url: str, timeout_s: float = 30.0) -> bool:
    """Wait until the actions queue is empty, so a run trains on everything accepted before it.

    Returns False if the queue still had messages after `timeout_s` (the run then trains on what
    is stored; the rest is picked up by the next run).
    """
    if not queue_url:
        return True
    deadline = time.monotonic() + timeout_s
    while True:
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def run_easyrec(pipeline_text: str, workdir: str) -> str:
    """Train and export with EasyRec in this process; returns the SavedModel directory."""
    from easy_rec.python import main as easyrec_main
    from easy_rec.python.utils import config_util

    config_path = os.path.join(workdir, "pipeline.config")
    with open(config_path, "w") as f:
        f.write(pipeline_text)
    pipeline_config = config_util.get_configs_from_pipeline_file(config_path)
    easyrec_main._train_and_evaluate_impl(pipeline_config)
    final = os.path.join(pipeline_config.model_dir, "export", "final")
    exports = sorted(d for d in os.listdir(final) if d.isdigit()) if os.path.isdir(final) else []
    if not exports:
        raise TrainingFailed("EasyRec finished without exporting a SavedModel under {}".format(final))
    return os.path.join(final, exports[-1])


def upload_dir(s3: Any, local_dir: str, bucket: str, prefix: str) -> int:
    count = 0
    for root, _, files in os.walk(local_dir):
        for name in sorted(files):
            path = os.path.join(root, name)
            key = prefix + os.path.relpath(path, local_dir).replace(os.sep, "/")
            with open(path, "rb") as f:
                s3.put_object(Bucket=bucket, Key=key, Body=f.read())
            count += 1
    return count


def run_training_job(
    settings: Settings, state: StateStore, store: ActionStore, s3: Any, sqs: Any, job_id: str
) -> ModelVersion:
    started = time.monotonic()
    timings: Dict[str, float] = {}
    state.update_job(job_id, status="running", started_at=isoformat_utc(utc_now()))
    workdir = tempfile.mkdtemp(prefix="easyrec-train-")
    try:
        drained = wait_for_ingest_drain(sqs, settings.actions_queue_url)
        if not drained:
            logger.warning("actions queue not drained after 30 s; training on what is stored")
        actions = list(store.iter_actions())
        timings["load_actions_s"] = round(time.monotonic() - started, 3)
        if len(actions) < max(1, settings.train_min_actions):
            raise TrainingFailed(
                "not enough stored actions to train: {} (need at least {}); add some with "
                "POST /online/data/add".format(len(actions), max(1, settings.train_min_actions)))
        rows = training_rows(actions, settings.negatives_per_positive, settings.random_seed)
        train_rows, eval_rows = split_holdout(rows, 0.1, settings.random_seed)
        train_path = os.path.join(workdir, "train.csv")
        eval_path = os.path.join(workdir, "eval.csv")
        for path, part in ((train_path, train_rows), (eval_path, eval_rows)):
            with open(path, "w") as f:
                f.writelines(csv_lines(part))

        version = new_id("v")
        lineage = settings.model_name
        pipeline_text = build_pipeline_config(
            settings.model_name, train_path, eval_path, os.path.join(workdir, "model_dir"),
            num_steps=settings.train_steps, batch_size=min(settings.train_batch_size, max(1, len(train_rows))),
        )
        t0 = time.monotonic()
        export_dir = run_easyrec(pipeline_text, workdir)
        timings["train_export_s"] = round(time.monotonic() - t0, 3)

        t0 = time.monotonic()
        from ..serving.scorer import SavedModelScorer, auc_and_logloss

        scorer = SavedModelScorer(export_dir)
        try:
            probs = scorer.score({n: [r.features[n] for r in eval_rows] for n in FEATURE_NAMES})
        finally:
            scorer.close()
        metrics = auc_and_logloss([r.label for r in eval_rows], probs)
        timings["evaluate_s"] = round(time.monotonic() - t0, 3)

        t0 = time.monotonic()
        prefix = "{}{}/{}/".format(settings.models_prefix, lineage, version)
        upload_dir(s3, export_dir, settings.data_bucket, prefix + "saved_model/")
        s3.put_object(Bucket=settings.data_bucket, Key=prefix + "pipeline.config", Body=pipeline_text.encode())
        s3.put_object(Bucket=settings.data_bucket, Key=prefix + "metrics.json",
                      Body=json.dumps(metrics, sort_keys=True).encode())
        timings["upload_s"] = round(time.monotonic() - t0, 3)
        timings["total_s"] = round(time.monotonic() - started, 3)

        current = state.get_current()
        record = ModelVersion(
            version=version, lineage=lineage, model_name=settings.model_name, s3_prefix=prefix,
            created_at=isoformat_utc(utc_now()), status="ready", job_id=job_id,
            parent_version=current.version if current else None, num_actions=len(actions),
            num_train_rows=len(train_rows), metrics=metrics, timings=timings,
            feature_columns=list(FEATURE_NAMES),
        )
        state.put_version(record)
        state.set_current(version)
        state.update_job(job_id, status="succeeded", finished_at=isoformat_utc(utc_now()), version=version,
                         num_actions=len(actions))
        logger.info("training job %s published version %s: %s", job_id, version, json.dumps(metrics))
        return record
    except Exception as exc:
        logger.exception("training job %s failed", job_id)
        state.update_job(job_id, status="failed", finished_at=isoformat_utc(utc_now()),
                         error="{}: {}".format(type(exc).__name__, exc)[:2000])
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def pending_job_id(environ: Optional[Dict[str, str]] = None) -> str:
    env = os.environ if environ is None else environ
    job_id = env.get("JOB_ID", "")
    if not job_id:
        raise SystemExit("JOB_ID is not set: the training task is started by POST /online/training/start")
    return job_id

