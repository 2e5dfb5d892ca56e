"""The continuous trainer: a long-running training task that follows new actions (model runtime).

  TRAINING_MODE=continuous python task.py

Loop: every CONTINUOUS_POLL_MS, look for stored action objects the current version's lineage has
not trained on. Immediate versus batch learning (`update_trigger`): an action of an
IMMEDIATE_ACTION_TYPES type (purchase, rating, add_to_cart, book_tickets by default) starts an update
at once; other actions wait until BATCH_MIN_ACTIONS of them are waiting or the oldest was accepted
BATCH_MAX_AGE_S ago. With none and no current version of the configured model, run a cold full
training (job.run_training_job). Otherwise make a warm incremental update (modeling/warm.py):
the lineage's graph and session stay alive, so an update costs its training steps, one checkpoint
save, one SavedModel load for the holdout evaluation, and the uploads. The same rules as a cold
update hold: exactly-once per lineage (manifest), a holdout evaluated for the candidate and the
current version (promotion gate), registry record, current pointer moved last. When the current
version changes under it (a rollback, another trainer), it reloads from that version.

Stops when the job record says so (POST /online/training/stop sets status "stopping") or on
SIGTERM, between updates, so a stop never leaves half a version.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Dict, Optional, Sequence

from easyrec_online.artifacts.features.spec import spec_of
from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import StoredAction, isoformat_utc, parse_timestamp, utc_now
from easyrec_online.ingest.store import ActionStore, CachingActionStore
from easyrec_online.modeling.job import (
    TrainingFailed,
    download_checkpoint,
    latest_checkpoint,
    load_training_data,
    parent_catalog,
    plan_training,
    promotion_decision,
    read_manifest,
    run_training_job,
    score_examples,
    upload_checkpoint,
    write_version_documents,
)
from easyrec_online.state.profiles import CachedProfiles, ProfileSource, ProfileStore
from easyrec_online.state.registry import ModelVersion, StateStore, new_id

logger = logging.getLogger(__name__)


class _Lineage:
    """The warm state of one lineage: trainer session, serving-graph copy, current version's scorer."""

    def __init__(self, settings: Settings, s3: Any, current: ModelVersion, workdir: str) -> None:
        from easyrec_online.artifacts.download import download_saved_model
        from easyrec_online.artifacts.scorer import SavedModelScorer
        from easyrec_online.modeling.warm import WarmTrainer

        self.lineage = current.lineage
        self.version = current
        self.workdir = workdir
        bucket = settings.data_bucket
        pipeline_text = s3.get_object(Bucket=bucket, Key=current.pipeline_key)["Body"].read().decode()
        self.trainer = WarmTrainer(pipeline_text, spec_of(current), os.path.join(workdir, "graph"))
        ckpt_dir = os.path.join(workdir, "ckpt-" + current.version)
        download_checkpoint(s3, bucket, current, ckpt_dir)
        self.checkpoint, _ = latest_checkpoint(ckpt_dir)
        self.trainer.restore(self.checkpoint)
        base = download_saved_model(s3, bucket, current, os.path.join(workdir, "saved"))
        # The serving graph's files (saved_model.pb, assets/), as S3-style relative keys.
        every = [os.path.relpath(os.path.join(root, name), base).replace(os.sep, "/")
                 for root, _, names in os.walk(base) for name in names if not name.startswith(".")]
        self.graph_files = [rel for rel in every if not rel.startswith("variables/")]
        self.base_dir = base
        self.scorer = SavedModelScorer(base)
        self.pipeline_text = pipeline_text

    def saved_model_from(self, checkpoint: str, target: str) -> str:
        """A local SavedModel: the lineage's serving graph + this checkpoint as its variables."""
        os.makedirs(os.path.join(target, "variables"), exist_ok=True)
        for rel in self.graph_files:
            os.makedirs(os.path.dirname(os.path.join(target, rel)), exist_ok=True)
            shutil.copyfile(os.path.join(self.base_dir, rel), os.path.join(target, rel))
        for suffix in (".index", ".data-00000-of-00001"):
            shutil.copyfile(checkpoint + suffix, os.path.join(target, "variables", "variables" + suffix))
        return target

    def discard(self, version: str) -> None:
        """A version's local checkpoint and SavedModel, once nothing trains or serves from them (S3 has them):
        a trainer that runs for days would otherwise keep every version it made (~40 MB each)."""
        for prefix in ("ckpt-", "saved-"):
            shutil.rmtree(os.path.join(self.workdir, prefix + version), ignore_errors=True)

    def close(self) -> None:
        self.trainer.close()
        self.scorer.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def update_trigger(actions: Sequence[StoredAction], settings: Settings, now: dt.datetime) -> Optional[str]:
    """Why an update should start now for these waiting actions, or None to keep waiting."""
    immediate = sorted({a.action_type for a in actions if a.action_type in settings.immediate_types})
    if immediate:
        return "immediate: {}".format(", ".join(t for t in immediate if t))
    if len(actions) >= settings.batch_min_actions:
        return "batch: {} actions waiting".format(len(actions))
    if actions:
        oldest = min(parse_timestamp(a.accepted_at) for a in actions)
        age = (now - oldest).total_seconds()
        if age >= settings.batch_max_age_s:
            return "batch: oldest waiting action accepted {:.0f} s ago".format(age)
    return None


def warm_update(settings: Settings, state: StateStore, store: ActionStore, s3: Any, lineage: _Lineage,
                job_id: str, profile_store: Optional[ProfileSource]) -> Optional[ModelVersion]:
    """One incremental update on the warm lineage; None when there is nothing new or it is not time yet."""
    from easyrec_online.artifacts.scorer import SavedModelScorer

    started = time.monotonic()
    timings: Dict[str, float] = {}
    current = lineage.version
    manifest = read_manifest(s3, settings.data_bucket, current)
    version = new_id("v")
    plan = plan_training(settings, "incremental", current, store.keys(), manifest, version)
    if not plan.new_keys:
        return None
    waiting = [a for key in plan.new_keys for a in store.read(key)]
    trigger = update_trigger(waiting, settings, utc_now())
    if trigger is None:
        return None
    data = load_training_data(settings, store, plan, profile_store, parent_catalog(settings, s3, plan))
    if not data.new_actions:
        return None
    timings["load_actions_s"] = round(time.monotonic() - started, 3)

    t0 = time.monotonic()
    holdout = data.holdout_rows
    baseline = score_examples(lineage.scorer, holdout, data.spec, data.profiles)
    batch_size = min(settings.train_batch_size, max(1, len(data.train_rows)))
    steps = max(settings.incremental_min_steps,
                int(math.ceil(settings.incremental_epochs * len(data.train_rows) / float(batch_size))))
    global_step = lineage.trainer.train(data.train_rows, data.profiles, steps, batch_size,
                                        settings.random_seed + lineage.trainer.step)
    timings["train_s"] = round(time.monotonic() - t0, 3)

    t0 = time.monotonic()
    ckpt_dir = os.path.join(lineage.workdir, "ckpt-" + version)
    checkpoint = lineage.trainer.save(ckpt_dir)
    local_model = lineage.saved_model_from(checkpoint, os.path.join(lineage.workdir, "saved-" + version))
    candidate = SavedModelScorer(local_model)
    metrics = score_examples(candidate, holdout, data.spec, data.profiles)
    gate = promotion_decision(metrics, baseline, settings.promotion_auc_tolerance, current.version)
    gate["trigger"] = trigger
    timings["evaluate_s"] = round(time.monotonic() - t0, 3)

    t0 = time.monotonic()
    bucket = settings.data_bucket
    prefix = "{}{}/{}/".format(settings.models_prefix, plan.lineage, version)
    record = ModelVersion(
        version=version, lineage=plan.lineage, model_name=current.model_name, s3_prefix=prefix,
        created_at=isoformat_utc(utc_now()), status="ready" if gate["promote"] else "rejected", job_id=job_id,
        parent_version=current.version, mode="incremental", num_new_actions=len(data.train_actions),
        num_actions=current.num_actions + len(data.train_actions), num_train_rows=len(data.train_rows),
        global_step=global_step, metrics=metrics, gate=gate, feature_columns=current.feature_columns,
        feature_spec=current.feature_spec, optimizer=current.optimizer, serving_defaults=current.serving_defaults,
    )
    upload_checkpoint(s3, bucket, checkpoint, record.checkpoint_prefix)
    name = os.path.basename(checkpoint)
    for suffix in (".index", ".data-00000-of-00001"):
        # The same bytes are the SavedModel's variables: a server-side copy, not a second upload.
        s3.copy_object(Bucket=bucket, Key=record.saved_model_prefix + "variables/variables" + suffix,
                       CopySource={"Bucket": bucket, "Key": record.checkpoint_prefix + name + suffix})
    for rel in lineage.graph_files:
        s3.copy_object(Bucket=bucket, Key=record.saved_model_prefix + rel,
                       CopySource={"Bucket": bucket, "Key": current.saved_model_prefix + rel})
    write_version_documents(settings, s3, record, plan, data, lineage.pipeline_text, metrics, gate)
    timings["upload_s"] = round(time.monotonic() - t0, 3)
    timings["total_s"] = round(time.monotonic() - started, 3)
    timings["warm"] = 1.0
    record.timings = timings
    state.put_version(record)
    if gate["promote"]:
        state.set_current(version)
        lineage.scorer.close()
        lineage.discard(current.version)
        lineage.scorer, lineage.version, lineage.checkpoint = candidate, record, checkpoint
    else:
        candidate.close()
        lineage.trainer.restore(lineage.checkpoint)  # back to the current version's weights
        lineage.discard(version)
    logger.info("warm update %s: %s on %d actions in %.2f s (%s)", version,
                "promoted" if gate["promote"] else "rejected", len(data.train_actions), timings["total_s"],
                json.dumps(timings))
    return record


def run_continuous(settings: Settings, state: StateStore, store: ActionStore, s3: Any, sqs: Any, job_id: str,
                   profile_store: Optional[ProfileStore] = None,
                   should_stop: Callable[[], bool] = lambda: False) -> None:
    state.update_job(job_id, status="running", started_at=isoformat_utc(utc_now()))
    poll_s = settings.continuous_poll_ms / 1000.0
    lineage: Optional[_Lineage] = None
    cached_store = CachingActionStore(store)  # each stored object is read once, however often we poll
    # Every update reads the profiles of its users and of every item its sampled negatives may draw
    # (the whole catalog: 0.7 s of BatchGetItems for MovieLens' 1,682 items on moto), so warm updates
    # cache them as inference does: a profile PUT reaches training within the same TTL.
    update_profiles = (CachedProfiles(profile_store, settings.profile_cache_ttl_s)
                       if profile_store is not None else None)
    updates = 0
    try:
        while not should_stop() and not _stop_requested(state, job_id):
            current = state.get_current()
            usable = (current is not None and current.model_name == settings.model_name
                      and current.optimizer == settings.optimizer and current.global_step > 0)
            if not usable:
                if lineage is not None:
                    lineage.close()
                    lineage = None
                if store.keys():
                    # The first version of a lineage is a cold full training, recorded on this job.
                    record = run_training_job(settings, state, store, s3, sqs, job_id, "full", profile_store,
                                              keep_running=True)
                    if record is not None and record.status != "ready":
                        time.sleep(poll_s)  # rejected: wait for more data rather than retrain at once
                else:
                    time.sleep(poll_s)
                continue
            assert current is not None
            if lineage is None or lineage.version.version != current.version:
                if lineage is not None:
                    lineage.close()
                lineage = _Lineage(settings, s3, current, tempfile.mkdtemp(prefix="easyrec-warm-"))
                logger.info("continuous trainer: warm on version %s (lineage %s)", current.version, current.lineage)
            record = warm_update(settings, state, cached_store, s3, lineage, job_id, update_profiles)
            if record is None:
                time.sleep(poll_s)
                continue
            updates += 1
            state.update_job(job_id, version=record.version, num_actions=record.num_actions,
                             outcome="promoted" if record.status == "ready" else "rejected")
        state.update_job(job_id, status="stopped", finished_at=isoformat_utc(utc_now()))
    except Exception as exc:
        logger.exception("continuous trainer %s failed", job_id)
        state.update_job(job_id, status="failed", finished_at=isoformat_utc(utc_now()),
                         error="{}: {}".format(type(exc).__name__, exc)[:2000])
        raise
    finally:
        if lineage is not None:
            lineage.close()


def _stop_requested(state: StateStore, job_id: str) -> bool:
    job = state.get_job(job_id)
    return job is not None and job.status in ("stopping", "stopped")


__all__ = ["run_continuous", "warm_update", "TrainingFailed"]
