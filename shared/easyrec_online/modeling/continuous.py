"""The continuous trainer: a long-running training task that follows new actions (model runtime).

  TRAINING_MODE=continuous python task.py

Loop: every CONTINUOUS_POLL_MS, look for stored action objects the trainer's lineage has not
trained on. Immediate versus batch learning (`update_trigger`): an action of an
IMMEDIATE_ACTION_TYPES type (purchase, rating, add_to_cart, book_tickets by default) starts an
update at once; other actions wait until BATCH_MIN_ACTIONS of them are waiting or the oldest was
accepted BATCH_MAX_AGE_S ago (POST /online/training/start asks for an update now). With no current
version of the configured model, run a cold full training (job.run_training_job). Otherwise make a
warm incremental update (modeling/warm.py): the lineage's graph and session stay alive, so an
update costs its training steps, one checkpoint save, the holdout scored twice by the lineage's
one loaded SavedModel (the current weights, then the candidate's restored into it), and the uploads. The same rules as a cold update hold: exactly-once per lineage
(manifest), a holdout evaluated for the candidate and the current version (promotion gate), and
publish.publish's order (files, registry record, pointer moved last and only from the version the
update started from).

  - A rejected update is not retried on the same actions: the trainer waits for new ones, and backs
    off (doubling, up to REJECTED_BACKOFF_MAX_S) after each rejection in a row; the job's `detail`
    says so.
  - A pinned current version (POST /model/rollback): the trainer continues from it, and its
    versions are registered (servable) but never move the pointer until it is unpinned.
  - When the current version changes under it (a rollback, an operator's promotion), it reloads
    from that version.
  - Its replay sample (what updates replay beside their new rows) is stored with the lineage every
    REPLAY_SNAPSHOT_EVERY_S while it changes, and read back when it warms on a version, so updates
    after a full training or a restart do not train on their new rows alone (modeling/replay.py).
  - A new lineage (modeling/growth.py: new features, growth, drift, a schedule, {"mode": "full"}) is
    trained in a process of its own (`start_retraining`: task.py again) while the current lineage's
    updates go on. Judged by the gate against the version current at its start, on rows that
    lineage never trained, it is updated on what arrived while it trained (_catch_up), and that
    update becomes current (publish.adopt_new_lineage): the new lineage never serves knowing less than
    the old one did. It dies with the trainer (a kill -9 of the task included); the next trainer
    starts it again.

Holds the trainer lease while it runs (modeling/lease.py). Stops when the job record says so (POST
/online/training/stop sets status "stopping": it ends "stopped") or on SIGTERM ("interrupted": the
supervisor resumes it), between updates, so a stop never leaves half a version.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Set

from easyrec_online.artifacts.blend import ServedBlend
from easyrec_online.artifacts.catalog import Catalog
from easyrec_online.artifacts.features.spec import spec_of
from easyrec_online.core.config import Settings
from easyrec_online.experiments.store import ExperimentDefinitions
from easyrec_online.ingest.actions import StoredAction, isoformat_utc, parse_timestamp, utc_now
from easyrec_online.ingest.store import ActionStore, CachingActionStore
from easyrec_online.modeling.evaluation import PairedScores, promotion_decision, score_examples, split_for_fitting
from easyrec_online.modeling.growth import FreshAuc, RetrainingState, fields_a_retraining_would_add, retraining_reason
from easyrec_online.modeling.job import (
    TrainingFailed,
    blend_defaults,
    candidate_blend,
    download_checkpoint,
    latest_checkpoint,
    load_profiles,
    load_training_data,
    parent_catalog,
    plan_training,
    read_manifest,
    run_training_job,
    upload_checkpoint,
    version_catalog,
)
from easyrec_online.modeling.lease import LeaseLost, TrainerLease
from easyrec_online.modeling.publish import (
    adopt_new_lineage,
    fail_job,
    incremental_steps,
    publish,
    retire_old_versions,
    version_record,
)
from easyrec_online.modeling.replay import REPLAY_SNAPSHOT_EVERY_S, read_replay, replay_key, write_replay
from easyrec_online.state.profiles import CachedProfiles, ProfileSource, ProfileStore
from easyrec_online.state.registry import ModelVersion, StateStore, new_id

logger = logging.getLogger(__name__)

REJECTED_BACKOFF_MAX_S = 60.0
RETIRE_EVERY_S = 60.0  # old versions expire at most this often (publish.retire_old_versions)
# How often, at most, the trainer asks whether its lineage has outgrown its birth (modeling/growth.py), and
# only when it has trained something since: the question reads every stored action and their profiles.
RETRAIN_CHECK_EVERY_S = 20.0


def _retire(settings: Settings, state: StateStore, s3: Any, protect: Sequence[str] = ()) -> None:
    try:
        retire_old_versions(settings, state, s3, protect)
    except Exception:  # noqa: BLE001 - retention must never stop learning; the next round tries again
        logger.exception("could not expire old versions")


class _Lineage:
    """The warm state of one lineage: trainer session, serving-graph copy, and a scorer of the serving
    graph holding the current version's weights (a candidate's while it is judged)."""

    def __init__(self, settings: Settings, s3: Any, current: ModelVersion, workdir: str) -> None:
        from easyrec_online.artifacts.download import download_saved_model
        from easyrec_online.artifacts.scorer import SavedModelScorer
        from easyrec_online.modeling.warm import WarmTrainer

        self.lineage = current.lineage
        self.version = current
        self.workdir = workdir
        bucket = settings.data_bucket
        pipeline_text = s3.get_object(Bucket=bucket, Key=current.pipeline_key)["Body"].read().decode()
        self.trainer = WarmTrainer(pipeline_text, spec_of(current), os.path.join(workdir, "graph"),
                                   accumulator_cap=settings.adagrad_accumulator_cap,
                                   replay_rows=settings.replay_buffer_rows)
        ckpt_dir = os.path.join(workdir, "ckpt-" + current.version)
        download_checkpoint(s3, bucket, current, ckpt_dir)
        self.checkpoint, _ = latest_checkpoint(ckpt_dir)
        self.trainer.restore(self.checkpoint)
        self.spec = spec_of(current)
        self._replay_writer: Optional[threading.Thread] = None
        self.replay_key = replay_key(settings.models_prefix, current.lineage)
        stored = read_replay(s3, bucket, self.replay_key, self.spec)
        if stored is not None:
            self.trainer.seed_replay(stored)
        logger.info("continuous trainer: replay sample of lineage %s: %d rows", current.lineage,
                    self.trainer.replayable)
        base = download_saved_model(s3, bucket, current, os.path.join(workdir, "saved"))
        # The serving graph's files (saved_model.pb, assets/), as S3-style relative keys.
        every = [os.path.relpath(os.path.join(root, name), base).replace(os.sep, "/")
                 for root, _, names in os.walk(base) for name in names if not name.startswith(".")]
        self.graph_files = [rel for rel in every if not rel.startswith("variables/")]
        self.scorer = SavedModelScorer(base)
        # The current version's catalog, once an update of this trainer made it (None: read it from S3).
        self.catalog: Optional[Catalog] = None
        self.pipeline_text = pipeline_text
        self.fresh = FreshAuc()  # its served scores on the holdouts of its updates (modeling/growth.py)

    def store_replay(self, s3: Any, bucket: str) -> None:
        """The trainer's replay sample, once it changed, as the lineage's stored one (modeling/replay.py).
        Written beside the updates (a MovieLens-sized sample takes a second or two to write), one at a time."""
        if not self.trainer.replay_changes or (self._replay_writer is not None and self._replay_writer.is_alive()):
            return
        sample = self.trainer.replay_sample()  # a copy: updates go on changing the trainer's

        def write() -> None:
            try:
                write_replay(s3, bucket, self.replay_key, self.spec, sample)
            except Exception:  # noqa: BLE001 - a stale stored sample only weakens a restart's first updates
                logger.exception("could not store the replay sample of lineage %s", self.lineage)

        self._replay_writer = threading.Thread(target=write, name="replay-sample-writer", daemon=True)
        self._replay_writer.start()

    def discard(self, version: str) -> None:
        """A version's local checkpoint, once nothing trains from it (S3 has it): a trainer that runs for
        days would otherwise keep every version it made (~40 MB each)."""
        shutil.rmtree(os.path.join(self.workdir, "ckpt-" + version), ignore_errors=True)

    def close(self) -> None:
        self.trainer.close()
        self.scorer.close()
        shutil.rmtree(self.workdir, ignore_errors=True)



def update_trigger(actions: Sequence[StoredAction], settings: Settings, now: dt.datetime,
                   requested: bool = False) -> Optional[str]:
    """Why an update should start now for these waiting actions, or None to keep waiting."""
    if not actions:
        return None
    if requested:
        return "requested: POST /online/training/start"
    immediate = sorted({a.action_type for a in actions if a.action_type in settings.immediate_types})
    if immediate:
        return "immediate: {}".format(", ".join(t for t in immediate if t))
    if len(actions) >= settings.batch_min_actions:
        return "batch: {} actions waiting".format(len(actions))
    oldest = min(parse_timestamp(a.accepted_at) for a in actions)
    age = (now - oldest).total_seconds()
    if age >= settings.batch_max_age_s:
        return "batch: oldest waiting action accepted {:.0f} s ago".format(age)
    return None


class Backoff:
    """After a rejected update: wait for actions it did not see, and for a delay doubling per rejection."""

    def __init__(self, poll_s: float) -> None:
        self._poll_s = poll_s
        self.rejected_keys: Set[str] = set()
        self.in_a_row = 0
        self.until = 0.0  # time.monotonic()
        self.over_reported = False  # the job's detail says the delay is over (only new actions are awaited)

    def blocks(self, new_keys: Sequence[str], now: float) -> bool:
        return bool(self.in_a_row) and (now < self.until or set(new_keys) <= self.rejected_keys)

    def rejected(self, new_keys: Sequence[str], now: float) -> float:
        self.in_a_row += 1
        self.over_reported = False
        self.rejected_keys = set(new_keys)
        delay = min(REJECTED_BACKOFF_MAX_S, self._poll_s * 2 ** self.in_a_row)
        self.until = now + delay
        return delay

    def clear(self) -> None:
        self.in_a_row, self.rejected_keys, self.until, self.over_reported = 0, set(), 0.0, False

    def newly_over(self, now: float) -> bool:
        """The delay after the last rejection has just run out (true once per rejection): from now on
        only actions the rejected update did not see start the next one."""
        if not self.in_a_row or self.over_reported or now < self.until:
            return False
        self.over_reported = True
        return True


def warm_update(settings: Settings, state: StateStore, store: ActionStore, s3: Any, lineage: _Lineage,
                job_id: str, profile_store: Optional[ProfileSource], backoff: Optional[Backoff] = None,
                requested: bool = False, base: Optional[str] = None, why: Optional[str] = None) -> Optional[ModelVersion]:
    """One incremental update on the warm lineage; None when there is nothing new, it is not time yet, or
    the last update was rejected and nothing new has come since (`backoff`). `base`: the current version
    the trainer follows, which the pointer may move from (None: the pointer is pinned, or the lineage is
    not the current one; the version is registered beside it). `why`: the update's trigger, whatever is
    waiting (else update_trigger decides)."""
    started = time.monotonic()
    timings: Dict[str, float] = {}
    current = lineage.version
    manifest = read_manifest(s3, settings.data_bucket, current)
    version = new_id("v")
    plan = plan_training(settings, "incremental", current, store.keys(), manifest, version)
    if not plan.new_keys or (backoff is not None and backoff.blocks(plan.new_keys, time.monotonic())):
        return None
    waiting = [a for key in plan.new_keys for a in store.read(key)]
    trigger = why if waiting and why else update_trigger(waiting, settings, utc_now(), requested)
    if trigger is None:
        return None
    catalog = lineage.catalog if lineage.catalog is not None else parent_catalog(settings, s3, plan)
    data = load_training_data(settings, store, plan, profile_store, catalog)
    if not data.new_actions:
        return None
    timings["load_actions_s"] = round(time.monotonic() - started, 3)

    t0 = time.monotonic()
    fit_rows, holdout = split_for_fitting(data.holdout_rows)  # the candidate's fit apart from what is judged
    served_scores: List[float] = []
    baseline = score_examples(lineage.scorer, holdout, data.spec, data.profiles, ServedBlend.of(current),
                              scores_out=served_scores)
    if data.has_holdout:  # rows the lineage has not trained: how it does on fresh actions (drift)
        lineage.fresh.add([e.label for e in holdout], served_scores)
    replay = min(lineage.trainer.replayable, int(round(settings.incremental_replay * len(data.train_rows))))
    steps, batch_size = incremental_steps(settings, len(data.train_rows) + replay)
    global_step = lineage.trainer.train(data.train_rows, data.profiles, steps, batch_size,
                                        settings.random_seed + lineage.trainer.step, replay=replay)
    timings["train_s"] = round(time.monotonic() - t0, 3)

    t0 = time.monotonic()
    ckpt_dir = os.path.join(lineage.workdir, "ckpt-" + version)
    checkpoint = lineage.trainer.save(ckpt_dir)
    # The candidate is the serving graph with these weights: the same graph (batch norm in inference
    # mode, as served), restored in place of the current weights until the gate has spoken.
    lineage.scorer.load_variables(checkpoint)
    candidate_scores: List[float] = []
    fitted: List[ServedBlend] = []
    metrics = score_examples(lineage.scorer, holdout, data.spec, data.profiles, candidate_blend(settings, current),
                             settings.cf_blend_max, fit=True, fit_on=fit_rows, honest=data.has_holdout,
                             scores_out=candidate_scores, blend_out=fitted)
    gate = promotion_decision(metrics, baseline, settings.promotion_auc_tolerance, current.version,
                              PairedScores([e.label for e in holdout], candidate_scores, served_scores))
    gate["trigger"] = trigger
    timings["evaluate_s"] = round(time.monotonic() - t0, 3)

    t0 = time.monotonic()
    record = version_record(
        settings, version=version, lineage=plan.lineage, model_name=current.model_name, mode="incremental",
        job_id=job_id, parent=current, parent_version=current.version, data=data, global_step=global_step,
        metrics=metrics, gate=gate, feature_spec=current.feature_spec, optimizer=current.optimizer,
        serving_defaults=dict(current.serving_defaults, **blend_defaults(fitted[0])),
        timings=timings, replayed_rows=replay)
    bucket = settings.data_bucket

    def upload_model(record: ModelVersion) -> None:
        upload_checkpoint(s3, bucket, checkpoint, record.checkpoint_prefix)
        name = os.path.basename(checkpoint)
        for suffix in (".index", ".data-00000-of-00001"):
            # The same bytes are the SavedModel's variables: a server-side copy, not a second upload.
            s3.copy_object(Bucket=bucket, Key=record.saved_model_prefix + "variables/variables" + suffix,
                           CopySource={"Bucket": bucket, "Key": record.checkpoint_prefix + name + suffix})
        for rel in lineage.graph_files:
            s3.copy_object(Bucket=bucket, Key=record.saved_model_prefix + rel,
                           CopySource={"Bucket": bucket, "Key": current.saved_model_prefix + rel})
        timings["upload_s"] = round(time.monotonic() - t0, 3)
        timings["total_s"] = round(time.monotonic() - started, 3)
        timings["warm"] = 1.0

    new_catalog = version_catalog(catalog, data.train_actions, settings.item_similarity)
    outcome = publish(settings, state, s3, record, upload_model, plan, data, lineage.pipeline_text, new_catalog, base,
                      promote=base is not None)
    if outcome == "rejected":
        lineage.trainer.restore(lineage.checkpoint)  # back to the current version's weights
        lineage.scorer.load_variables(lineage.checkpoint)
        lineage.discard(version)
        if backoff is not None:
            delay = backoff.rejected(plan.new_keys, time.monotonic())
            state.update_job(job_id, detail={
                "state": "waiting_for_new_actions", "rejected_in_a_row": backoff.in_a_row,
                "reason": "update {} rejected: {}".format(version, gate["reason"]),
                "retry_after": isoformat_utc(utc_now() + dt.timedelta(seconds=delay))})
    else:
        # Promoted, or kept beside a pinned (or moved) pointer: the trainer continues from it either way.
        lineage.trainer.keep_for_replay()
        lineage.discard(current.version)
        lineage.version, lineage.checkpoint, lineage.catalog = record, checkpoint, new_catalog
        if backoff is not None and backoff.in_a_row:
            backoff.clear()
            state.update_job(job_id, detail={"state": "following"})
    logger.info("warm update %s: %s on %d actions (%d rows, %d replayed, %d steps) in %.2f s (%s)", version, outcome,
                len(data.train_actions), len(data.train_rows), replay, steps, timings["total_s"], json.dumps(timings))
    return record


def _lineage_root(state: StateStore, version: ModelVersion) -> Optional[ModelVersion]:
    """The full training that began `version`'s lineage (its lineage is "<model>-<that version>")."""
    prefix = version.model_name + "-"
    if version.mode == "full":
        return version
    return state.get_version(version.lineage[len(prefix):]) if version.lineage.startswith(prefix) else None


def retraining_due(settings: Settings, state: StateStore, store: ActionStore, profile_store: Optional[ProfileSource],
                   lineage: _Lineage, history: RetrainingState, requested: bool) -> Optional[Dict[str, Any]]:
    """{"reason", "new_fields"} when the lineage should give way to a new one (modeling/growth.py), else None."""
    current = lineage.version
    new_fields: List[str] = []
    if not requested:
        actions = [a for key in store.keys() for a in store.read(key)]
        new_fields = fields_a_retraining_would_add(settings, lineage.spec, actions, load_profiles(profile_store, actions))
    root = _lineage_root(state, current)
    reason = retraining_reason(
        settings, requested=requested, trained_actions=current.num_actions,
        born_with=root.num_actions if root is not None else current.num_actions,
        born_at=root.created_at if root is not None else None, new_fields=new_fields,
        fresh_auc=lineage.fresh.auc(), history=history, now=utc_now())
    return None if reason is None else {"reason": reason, "new_fields": new_fields}


class ArmTraining(NamedTuple):
    """An experiment's new_lineage arm still to be trained (experiments/definition.py)."""

    experiment_id: str
    arm: str
    version: str
    environment: Dict[str, str]  # the settings its training reads (MODEL_NAME among them)


# How often, at most, the trainer looks for experiments' new_lineage arms to train.
ARM_CHECK_EVERY_S = 5.0


def arm_training_due(state: StateStore, attempted: Set[str]) -> Optional[ArmTraining]:
    """The first running experiment's new_lineage arm whose version is not published yet and that this
    trainer has not tried (one that failed is not tried again by it; the next trainer tries once more)."""
    for experiment in sorted(ExperimentDefinitions(state).list(), key=lambda e: e.created_at):
        if not experiment.running:
            continue
        for arm in experiment.arms:
            version = arm.strategy.get("version")
            if (arm.type == "new_lineage" and version and version not in attempted
                    and state.get_version(version) is None):
                return ArmTraining(experiment.experiment_id, arm.name, version, dict(arm.strategy["environment"]))
    return None


class RetrainingRun:
    """A retraining under way: a full training of a new lineage on every stored action, in its own process
    beside the trainer's updates (`process`: what StartRetraining returned; None once it ran in this one)."""

    def __init__(self, reason: str, lineage: _Lineage, requested_at: Optional[str],
                 arm: Optional[ArmTraining] = None) -> None:
        self.reason = reason
        self.started_at = utc_now()
        # Chosen here, so that the trainer finds the version and keeps it from expiry while the updates
        # made meanwhile (newer ids) push it down the registry's newest-first list. An arm's was chosen
        # when its experiment was created.
        self.version_id = arm.version if arm is not None else new_id("v")
        self.from_version = lineage.version.version
        self.replaces_lineage = lineage.lineage
        self.requested_at = requested_at  # the {"mode": "full"} request it answers, if any
        self.arm = arm  # an experiment's new_lineage arm: registered beside, never adopted
        self.process: Any = None

    def describe(self, settings: Settings) -> Dict[str, Any]:
        found = {"reason": self.reason, "started_at": isoformat_utc(self.started_at), "from_version": self.from_version,
                 "lineage": self.replaces_lineage,
                 "stage": "training a new lineage on every stored action ({} steps) while the current one goes on "
                          "learning".format(settings.train_steps)}
        if self.arm is not None:
            found.update(experiment=self.arm.experiment_id, arm=self.arm.arm, version=self.arm.version,
                         stage="training model {} for the experiment's arm on every stored action, while the current "
                               "lineage goes on learning".format(self.arm.environment.get("MODEL_NAME")))
        return found

    def finished(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def stop(self) -> None:
        if not self.finished():
            self.process.kill()
            self.process.wait(30)


# Starts `python task.py` as a retraining of this job, for a reason, publishing a version of this id, with
# these settings over the trainer's own (an experiment's arm: its model; else none): a Popen
# (functions/trainer/task.py).
StartRetraining = Callable[[str, str, Optional[Dict[str, str]]], Any]


def _start_retraining(settings: Settings, state: StateStore, store: ActionStore, s3: Any, sqs: Any, job_id: str,
                      profile_store: Optional[ProfileStore], lineage: _Lineage, due: Dict[str, Any],
                      history: RetrainingState, requested_at: Optional[str],
                      start_process: Optional[StartRetraining]) -> Optional[RetrainingRun]:
    """Start a retraining (job.run_training_job in "full" mode, judged by the gate against the current
    lineage on rows it never trained): in its own process when `start_process` is given, so that the
    lineage's updates go on meanwhile; else here, and done on return. None when its process could not
    be started (recorded as a failed retraining; not tried again on the same grounds)."""
    run = RetrainingRun(due["reason"], lineage, requested_at)
    state.update_job(job_id, retraining=run.describe(settings))
    logger.info("continuous trainer: retraining (%s) beside lineage %s", run.reason, run.replaces_lineage)
    history.attempted_at_actions, history.attempted_at = lineage.version.num_actions, run.started_at
    history.tried_fields.update(due["new_fields"])
    lineage.fresh.reset()
    if start_process is not None:
        try:
            run.process = start_process(run.reason, run.version_id, None)
        except OSError as exc:  # e.g. no memory left to fork: the lineage goes on learning
            logger.exception("continuous trainer: could not start the retraining")
            state.update_job(job_id, retraining=None, last_retraining=dict(
                run.describe(settings), outcome="failed", error="could not start: {}".format(exc)),
                **({"retrain_handled_at": requested_at} if requested_at else {}))
            return None
    else:
        run_training_job(settings, state, store, s3, sqs, job_id, "full", profile_store, keep_running=True,
                         retraining=run.reason, version_id=run.version_id)
    return run


def _start_arm_training(settings: Settings, state: StateStore, store: ActionStore, s3: Any, sqs: Any, job_id: str,
                        profile_store: Optional[ProfileStore], lineage: _Lineage, arm: ArmTraining,
                        start_process: Optional[StartRetraining]) -> Optional[RetrainingRun]:
    """Train an experiment's new_lineage arm as a retraining is trained (its own process, beside the
    updates), with the arm's settings, publishing the arm's version beside the current one."""
    run = RetrainingRun("experiment {}: arm {!r}".format(arm.experiment_id, arm.arm), lineage, None, arm)
    state.update_job(job_id, retraining=run.describe(settings))
    logger.info("continuous trainer: training %s for experiment %s, arm %s", arm.environment.get("MODEL_NAME"),
                arm.experiment_id, arm.arm)
    overrides = dict(arm.environment, RETRAINING_FOR_ARM="1")
    if start_process is not None:
        try:
            run.process = start_process(run.reason, run.version_id, overrides)
        except OSError as exc:
            logger.exception("continuous trainer: could not start the arm's training")
            state.update_job(job_id, retraining=None, last_retraining=dict(
                run.describe(settings), outcome="failed", error="could not start: {}".format(exc)))
            return None
    else:
        arm_settings = Settings.from_env(dict(settings.as_env(), **arm.environment))
        try:
            run_training_job(arm_settings, state, store, s3, sqs, job_id, "full", profile_store, keep_running=True,
                             retraining=run.reason, version_id=run.version_id, for_arm=True)
        except (LeaseLost, TrainingFailed):
            raise
        except Exception:  # noqa: BLE001 - recorded as a failed arm training; the lineage goes on
            logger.exception("continuous trainer: the arm's training failed")
    return run


CATCH_UP = "catch-up: the retraining's new lineage, on what arrived since its snapshot, before it becomes current"


def _catch_up(settings: Settings, state: StateStore, store: ActionStore, s3: Any, job_id: str,
              profiles: Optional[ProfileSource], run: RetrainingRun) -> Optional[ModelVersion]:
    """A finished retraining's version, updated on the actions that arrived while it trained (registered
    beside the current version, which the old lineage's updates kept fresh meanwhile), so that the new
    lineage does not become current knowing less than the old one did. None when there is nothing to catch up
    on, when the retraining is not to be adopted (refused by the gate, the pointer pinned or moved to
    another lineage), or when the update's own gate refused it: then the retraining's version is adopted
    as it is and its first update catches up."""
    record = state.get_version(run.version_id)
    current = state.get_current()
    if (record is None or record.status != "ready" or not record.gate.get("promote") or current is None
            or current.lineage != run.replaces_lineage or (state.pointer() or {}).get("pinned")):
        return None
    try:
        if not plan_training(settings, "incremental", record, store.keys(),
                             read_manifest(s3, settings.data_bucket, record), run.version_id).new_keys:
            return None  # nothing arrived meanwhile: no lineage to load
        state.update_job(job_id, retraining=dict(run.describe(settings), stage="catching up on what arrived since "
                                                  "its snapshot (version {})".format(record.version)))
        lineage = _Lineage(settings, s3, record, tempfile.mkdtemp(prefix="easyrec-catch-up-"))
        try:
            caught = warm_update(settings, state, store, s3, lineage, job_id, profiles, base=None, why=CATCH_UP)
        finally:
            lineage.close()
    except LeaseLost:
        raise
    except Exception:  # noqa: BLE001 - the retraining's own version is adopted instead; its update catches up
        logger.exception("continuous trainer: the catch-up of retraining %s failed", record.version)
        return None
    if caught is None or caught.status != "ready" or not caught.gate.get("promote"):
        return None
    return caught


def _finish_retraining(state: StateStore, job_id: str, run: RetrainingRun, stopping: bool = False,
                       caught_up: Optional[ModelVersion] = None) -> Dict[str, Any]:
    """Record how a retraining ended. A new lineage the gate passed while the old one's updates moved the
    pointer on (kept) becomes current now (publish.adopt_new_lineage), as `caught_up` (its update on what
    arrived meanwhile: _catch_up) where there is one; the trainer then follows it.
    `stopping`: the trainer itself is ending (SIGTERM, a stop): a retraining that published nothing was
    interrupted with it, and its request stays for the next trainer; otherwise it failed (killed alone:
    out of memory, say), and is not started again on the same grounds."""
    record = state.get_version(run.version_id)
    summary: Dict[str, Any] = {"reason": run.reason, "started_at": isoformat_utc(run.started_at),
                               "finished_at": isoformat_utc(utc_now()), "from_version": run.from_version}
    if run.arm is not None:
        summary.update(experiment=run.arm.experiment_id, arm=run.arm.arm)
    if record is None and stopping:
        # Killed before it published: the request (if any) stays unanswered, for this or the next trainer.
        summary.update(outcome="interrupted", error="the trainer ended before its retraining published (exit "
                       "code {})".format(run.process.returncode if run.process is not None else None))
        state.update_job(job_id, retraining=None, last_retraining=summary)
        logger.info("continuous trainer: retraining interrupted: %s", json.dumps(summary))
        return summary
    if record is None:
        code = run.process.returncode if run.process is not None else None
        summary.update(outcome="failed", error="the retraining ended without a version (exit code {}); the "
                       "current lineage goes on".format(code))
    elif run.arm is not None:  # served by its experiment, never current by itself
        summary.update(version=record.version, lineage=record.lineage,
                       outcome="trained" if record.status == "ready" else "rejected", gate=record.gate.get("reason"))
    else:
        promoted = (state.pointer() or {}).get("version") == record.version
        adopted = caught_up if caught_up is not None and not promoted else record
        summary.update(version=record.version, lineage=record.lineage,
                       outcome="promoted" if promoted else adopt_new_lineage(state, adopted, run.replaces_lineage))
        if adopted is not record:
            summary.update(caught_up_version=adopted.version, caught_up_actions=adopted.num_new_actions)
        summary["gate"] = record.gate.get("reason")
    state.update_job(job_id, retraining=None, last_retraining=summary,
                     **({"retrain_handled_at": run.requested_at} if run.requested_at else {}))
    logger.info("continuous trainer: retraining ended: %s", json.dumps(summary))
    return summary


def run_continuous(settings: Settings, state: StateStore, store: ActionStore, s3: Any, sqs: Any, job_id: str,
                   profile_store: Optional[ProfileStore] = None,
                   should_stop: Callable[[], bool] = lambda: False,
                   start_retraining: Optional[StartRetraining] = None) -> str:
    """Run until a stop request ("stopped") or `should_stop` (SIGTERM: "interrupted"); returns the status
    the job ended with. Raises (after recording "failed") on an error. `start_retraining`: runs a
    retraining in its own process, beside the updates (without it, a retraining pauses them)."""
    job = state.update_job(job_id, only_from=("pending",), status="running", started_at=isoformat_utc(utc_now()),
                           detail={"state": "starting"})
    if job.status != "running":  # stopped before it started
        logger.info("continuous trainer %s is %s before it started", job_id, job.status)
        return _end(state, job_id, interrupted=False)
    try:
        with TrainerLease(state, job_id) as lease:
            _follow(settings, state, store, s3, sqs, job_id, profile_store, should_stop, lease, start_retraining)
    except Exception as exc:  # LeaseLost included: another trainer runs; this one ends
        fail_job(state, job_id, exc)
        raise
    return _end(state, job_id, interrupted=should_stop())


def _end(state: StateStore, job_id: str, interrupted: bool) -> str:
    now = isoformat_utc(utc_now())
    job = state.update_job(job_id, only_from=("stopping",), status="stopped", finished_at=now)
    if job.status == "stopped":
        return "stopped"
    # Ended without a stop request (SIGTERM: a task retirement, a deploy, the service shutting down).
    job = state.update_job(job_id, only_from=("pending", "running"), status="interrupted", finished_at=now,
                           error="the trainer was told to end (SIGTERM) without a stop request" if interrupted else
                           "the trainer ended without a stop request")
    return job.status


def _follow(settings: Settings, state: StateStore, store: ActionStore, s3: Any, sqs: Any, job_id: str,
            profile_store: Optional[ProfileStore], should_stop: Callable[[], bool], lease: TrainerLease,
            start_retraining: Optional[StartRetraining]) -> None:
    poll_s = settings.continuous_poll_ms / 1000.0
    lineage: Optional[_Lineage] = None
    backoff = Backoff(poll_s)
    cached_store = CachingActionStore(store)  # each stored object is read once, however often we poll
    # Every update reads the profiles of its users and of every item its sampled negatives may draw
    # (the whole catalog: 0.7 s of BatchGetItems for MovieLens' 1,682 items on moto), so warm updates
    # cache them as inference does: a profile PUT reaches training within the same TTL.
    update_profiles = (CachedProfiles(profile_store, settings.profile_cache_ttl_s)
                       if profile_store is not None else None)
    served: Optional[str] = None  # the pointer's version the lineage was loaded from
    retired_at = float("-inf")
    replay_stored_at = time.monotonic()
    handled_request: Optional[str] = None
    growth = RetrainingState()
    retraining: Optional[RetrainingRun] = None
    checked_at, checked_actions = float("-inf"), -1
    arms_checked_at, arms_attempted = float("-inf"), set()  # type: float, Set[str]
    try:
        while not should_stop():
            lease.check()
            job = state.get_job(job_id)
            if job is None or job.status in ("stopping", "stopped"):
                return
            if retraining is not None and retraining.finished():
                caught_up = (_catch_up(settings, state, cached_store, s3, job_id, update_profiles, retraining)
                             if retraining.arm is None else None)
                _finish_retraining(state, job_id, retraining, caught_up=caught_up)
                retraining = None
                continue  # with the job as it is now (the request it answered)
            pointer = state.pointer() or {}
            current = state.get_current()
            usable = (current is not None and current.model_name == settings.model_name
                      and current.optimizer == settings.effective_optimizer and current.global_step > 0)
            if not usable:
                if lineage is not None:
                    lineage.close()
                    lineage = None
                if store.keys() and not backoff.blocks(store.keys(), time.monotonic()):
                    # The first version of a lineage is a cold full training, recorded on this job.
                    state.update_job(job_id, detail={"state": "training the first version of a lineage"})
                    record = run_training_job(settings, state, store, s3, sqs, job_id, "full", profile_store,
                                              keep_running=True)
                    if record is not None and (state.pointer() or {}).get("version") != record.version:
                        # Rejected, or kept beside a pinned version of another model: not again on the same
                        # actions.
                        backoff.rejected(store.keys(), time.monotonic())
                        state.update_job(job_id, detail={"state": "waiting_for_new_actions", "reason": (
                            record.gate.get("not_current") or record.gate.get("reason"))})
                else:
                    time.sleep(poll_s)
                continue
            assert current is not None
            if lineage is None or served != current.version:
                # First start, a rollback, or an operator's promotion: continue from the current version.
                if lineage is not None:
                    lineage.close()
                lineage = _Lineage(settings, s3, current, tempfile.mkdtemp(prefix="easyrec-warm-"))
                served = current.version
                backoff.clear()
                state.update_job(job_id, detail={"state": "following", "from_version": current.version})
                logger.info("continuous trainer: warm on version %s (lineage %s)", current.version, current.lineage)
            requested = bool(job.update_requested_at and job.update_requested_at != handled_request)
            record = warm_update(settings, state, cached_store, s3, lineage, job_id, update_profiles, backoff,
                                 requested=requested, base=None if pointer.get("pinned") else served)
            if requested and record is not None:
                handled_request = job.update_requested_at
            retrain_requested = bool(job.retrain_requested_at and job.retrain_requested_at != job.retrain_handled_at)
            due = None
            if retraining is not None:
                pass  # one at a time; a request made meanwhile is answered by the next
            elif retrain_requested:
                due = retraining_due(settings, state, cached_store, update_profiles, lineage, growth, True)
            elif (not pointer.get("pinned") and lineage.version.num_actions != checked_actions
                  and time.monotonic() - checked_at >= RETRAIN_CHECK_EVERY_S):
                checked_at, checked_actions = time.monotonic(), lineage.version.num_actions
                due = retraining_due(settings, state, cached_store, update_profiles, lineage, growth, False)
            if due is not None:
                retraining = _start_retraining(settings, state, cached_store, s3, sqs, job_id, profile_store, lineage,
                                               due, growth, job.retrain_requested_at if retrain_requested else None,
                                               start_retraining)
                continue
            if retraining is None and time.monotonic() - arms_checked_at >= ARM_CHECK_EVERY_S:
                arms_checked_at = time.monotonic()
                arm = arm_training_due(state, arms_attempted)
                if arm is not None:
                    arms_attempted.add(arm.version)
                    retraining = _start_arm_training(settings, state, cached_store, s3, sqs, job_id, profile_store,
                                                     lineage, arm, start_retraining)
                    continue
            if time.monotonic() - replay_stored_at >= REPLAY_SNAPSHOT_EVERY_S:
                replay_stored_at = time.monotonic()
                lineage.store_replay(s3, settings.data_bucket)
            if record is None:
                if backoff.newly_over(time.monotonic()):
                    # Said once, so that an operator (and a test) sees the trainer looked again after its
                    # delay and still found nothing new: no retry on the actions it was rejected on.
                    state.update_job(job_id, detail=dict(job.detail, backoff_over_at=isoformat_utc(utc_now())))
                time.sleep(poll_s)
                continue
            if record.status == "ready" and state.pointer() and state.pointer().get("version") == record.version:
                served = record.version  # promoted: the lineage is already on it
            state.update_job(job_id, version=record.version, num_actions=record.num_actions,
                             outcome="promoted" if served == record.version else
                             ("rejected" if record.status != "ready" else "kept"))
            if time.monotonic() - retired_at >= RETIRE_EVERY_S:
                retired_at = time.monotonic()
                _retire(settings, state, s3, [retraining.version_id] if retraining is not None else [])
    finally:
        if retraining is not None:
            # A retraining is part of this trainer and ends with it; one that published already is
            # recorded (and adopted) as if the trainer went on, one that did not is left to the next trainer.
            finished = retraining.finished()
            retraining.stop()
            try:
                _finish_retraining(state, job_id, retraining, stopping=not finished or should_stop())
            except Exception:  # noqa: BLE001 - ending the trainer must not fail on the record
                logger.exception("continuous trainer: could not record the retraining's end")
        if lineage is not None:
            lineage.close()


__all__ = ["run_continuous", "warm_update", "TrainingFailed", "LeaseLost"]
