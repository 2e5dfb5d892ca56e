"""One training run, end to end (the training task's whole job; model runtime).

  plan (full or incremental, which stored objects are new) -> feature rows -> EasyRec train + export
  -> holdout metrics for the candidate and the current version -> promotion gate
  -> upload models/<lineage>/<version>/{saved_model/, checkpoint/, pipeline.config, metrics.json,
     manifest.json} -> registry record -> current pointer (if promoted) -> job succeeded.

Exactly-once training per lineage: a version's manifest lists every stored action object its
lineage has consumed, and which of their actions were held out for evaluation. An incremental
update continues from the parent's checkpoint on the objects not in the parent's manifest plus the
parent's held-out actions. About 10 % of a run's actions (by a stable hash of the event id) are
held out to evaluate the candidate and the current version on the same rows (the promotion gate);
they are trained by the next update. The current pointer
moves last, so a run that dies at any point leaves the serving model and the registry's current
version untouched, and the next run trains on the same actions again.
"""
from __future__ import annotations

import datetime as dt
import functools
import glob
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from easyrec_online.artifacts.blend import ServedBlend, calibration_text, knots_text
from easyrec_online.artifacts.catalog import Catalog
from easyrec_online.artifacts.cf import refresh_neighbours
from easyrec_online.artifacts.download import download_saved_model
from easyrec_online.artifacts.features.derive import derive_spec
from easyrec_online.artifacts.features.encode import Context, Example, Profiles
from easyrec_online.artifacts.features.live import LiveReplay
from easyrec_online.artifacts.features.rows import csv_lines, serving_action_type
from easyrec_online.artifacts.features.sampling import cold_start_copies, histories_before, training_examples
from easyrec_online.artifacts.features.spec import FeatureSpec, spec_of
from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import StoredAction, id_key, isoformat_utc, parse_timestamp, utc_now
from easyrec_online.ingest.store import ActionStore, dedupe_actions
from easyrec_online.modeling.evaluation import (
    CF_BLEND_PRIOR,
    CF_NEG_BLEND_PRIOR,
    PairedScores,
    degenerate,
    evaluate,
    promotion_decision,
    split_for_fitting,
)
from easyrec_online.modeling.lease import LeaseLost, TrainerLease
from easyrec_online.modeling.pipeline import MODELS_WITH_HISTORY, build_pipeline_config
from easyrec_online.modeling.publish import fail_job, incremental_steps, publish, retire_old_versions, version_record
from easyrec_online.modeling.replay import replay_key, sample_of, write_replay
from easyrec_online.state.profiles import ProfileSource, ProfileStore
from easyrec_online.state.registry import (
    CALIBRATION_KEY,
    CF_BLEND_KEY,
    CF_NEG_BLEND_KEY,
    COLD_START_RATE_KEY,
    FINAL_CALIBRATION_KEY,
    NEW_USER_POPULARITY_KEY,
    RECALIBRATION_KEY,
    SELF_BLEND_KEY,
    TRAINING_MODES,
    ModelVersion,
    StateStore,
    new_id,
)

logger = logging.getLogger(__name__)

MIN_ROWS_FOR_HOLDOUT = 50


class TrainingFailed(Exception):
    pass


@dataclass
class TrainingPlan:
    mode: str  # full | incremental
    lineage: str
    parent: Optional[ModelVersion]
    trained_keys: List[str]  # objects the lineage consumed before this run
    new_keys: List[str]  # objects this run reads whole
    held_out: Dict[str, List[str]] = field(default_factory=dict)  # key -> event ids held out so far
    catalog: List[str] = field(default_factory=list)  # items the lineage has seen
    spec: Optional[FeatureSpec] = None  # the lineage's features; None until a full run derives them


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


def read_manifest(s3: Any, bucket: str, version: ModelVersion) -> Dict[str, List[str]]:
    try:
        body = s3.get_object(Bucket=bucket, Key=version.manifest_key)["Body"].read()
    except Exception as exc:  # noqa: BLE001 - a missing manifest means no incremental from here
        raise TrainingFailed("version {} has no readable manifest: {}".format(version.version, exc))
    return json.loads(body)


def plan_training(settings: Settings, requested: str, current: Optional[ModelVersion], all_keys: List[str],
                  manifest: Optional[Dict[str, List[str]]], version: str) -> TrainingPlan:
    if requested not in TRAINING_MODES or requested == "continuous":
        raise TrainingFailed("unknown training mode {!r}; use one of {}".format(requested, ", ".join(TRAINING_MODES)))
    compatible = (
        current is not None and manifest is not None and current.model_name == settings.model_name
        and current.optimizer == settings.effective_optimizer and current.global_step > 0
    )
    if requested == "incremental" and not compatible:
        raise TrainingFailed(
            "no current version of model {} with optimizer {} to continue from (train with mode=full "
            "first)".format(settings.model_name, settings.effective_optimizer))
    if requested == "full" or not compatible:
        return TrainingPlan("full", "{}-{}".format(settings.model_name, version), None, [], list(all_keys))
    assert current is not None and manifest is not None
    trained = set(manifest.get("keys", []))
    # An update keeps its lineage's features: parameter keys first seen since are stored with their
    # actions and wait for the next full retrain.
    return TrainingPlan("incremental", current.lineage, current, sorted(trained),
                        [k for k in all_keys if k not in trained], dict(manifest.get("held_out", {})),
                        list(manifest.get("items", [])), spec_of(current))


def is_holdout(event_id: str) -> bool:
    """About 10 % of actions, chosen by a stable hash of the event id (the same choice on every run)."""
    return int(hashlib.sha1(event_id.encode()).hexdigest()[:8], 16) % 10 == 0


def split_holdout(actions: List[StoredAction]) -> Tuple[List[StoredAction], List[StoredAction]]:
    """(train, holdout). Runs under MIN_ROWS_FOR_HOLDOUT actions hold nothing out and are evaluated
    on their training rows: a holdout of a handful of actions says nothing."""
    if len(actions) < MIN_ROWS_FOR_HOLDOUT:
        return actions, []
    held = [a for a in actions if is_holdout(a.event_id)]
    if not held or len(held) == len(actions):
        return actions, []
    return [a for a in actions if not is_holdout(a.event_id)], held


def run_easyrec(pipeline_text: str, workdir: str, continue_train: bool, seed: int) -> str:
    """Train and export with EasyRec in this process; returns the SavedModel directory."""
    from easyrec_online.modeling.easyrec import train_evaluate_export

    model_dir = train_evaluate_export(pipeline_text, workdir, continue_train, seed)
    final = os.path.join(model_dir, "export", "final")
    exports = sorted(d for d in os.listdir(final) if d.isdigit()) if os.path.isdir(final) else []
    if not exports:
        raise TrainingFailed("EasyRec finished without exporting a SavedModel under {}".format(final))
    return os.path.join(final, exports[-1])


def latest_checkpoint(model_dir: str) -> Tuple[str, int]:
    """(checkpoint prefix path, global step) of the newest checkpoint in model_dir."""
    steps = []
    for index in glob.glob(os.path.join(model_dir, "model.ckpt-*.index")):
        found = re.search(r"model\.ckpt-(\d+)\.index$", index)
        if found:
            steps.append(int(found.group(1)))
    if not steps:
        raise TrainingFailed("no checkpoint in {}".format(model_dir))
    step = max(steps)
    return os.path.join(model_dir, "model.ckpt-{}".format(step)), step


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


def upload_checkpoint(s3: Any, bucket: str, checkpoint: str, prefix: str) -> None:
    for path in glob.glob(checkpoint + ".*"):
        with open(path, "rb") as f:
            s3.put_object(Bucket=bucket, Key=prefix + os.path.basename(path), Body=f.read())
    name = os.path.basename(checkpoint)
    s3.put_object(Bucket=bucket, Key=prefix + "checkpoint", Body='model_checkpoint_path: "{}"\n'.format(name).encode())


def download_checkpoint(s3: Any, bucket: str, version: ModelVersion, model_dir: str) -> None:
    """Seed a fresh model_dir with the parent's checkpoint, so EasyRec continues from it."""
    os.makedirs(model_dir, exist_ok=True)
    paginator = s3.get_paginator("list_objects_v2")
    found = 0
    for page in paginator.paginate(Bucket=bucket, Prefix=version.checkpoint_prefix):
        for obj in page.get("Contents", []):
            s3.download_file(bucket, obj["Key"], os.path.join(model_dir, obj["Key"][len(version.checkpoint_prefix):]))
            found += 1
    if not found:
        raise TrainingFailed("version {} has no checkpoint to continue from".format(version.version))


def parent_catalog(settings: Settings, s3: Any, plan: TrainingPlan) -> Catalog:
    """The parent's catalog (an update) or a new one (full)."""
    if plan.parent is not None:
        try:
            body = s3.get_object(Bucket=settings.data_bucket, Key=plan.parent.catalog_key)["Body"].read()
            catalog = Catalog.from_json(body.decode("utf-8"))
            catalog.repeats_max = settings.repeat_actions_max  # the setting as it is now
            return catalog
        except Exception:  # noqa: BLE001 - versions from before catalogs: start one now
            logger.warning("version %s has no catalog; starting one from this update", plan.parent.version)
    return Catalog(settings.trending_half_life_hours, settings.repeat_actions_max)


@dataclass
class TrainingData:
    new_actions: List[StoredAction]
    train_actions: List[StoredAction]
    train_rows: List[Example]
    holdout_rows: List[Example]  # the training examples themselves when nothing was held out
    has_holdout: bool
    held_out_next: Dict[str, List[str]]  # key -> event ids held out by this run
    catalog: List[str]
    spec: FeatureSpec  # the lineage's features (derived here for a full run)
    profiles: Profiles  # of the users and items in the examples


def load_profiles(profile_store: Optional[ProfileSource],
                  examples: Sequence[Union[Example, StoredAction]]) -> Profiles:
    """The profiles of the users and items of these examples (or actions)."""
    if profile_store is None:
        return Profiles()
    users = profile_store.attributes_of("user", {id_key(e.user_id) for e in examples})
    items = profile_store.attributes_of("item", {id_key(e.item_id) for e in examples})
    return Profiles(users, items)


def cold_start_default(rate: float) -> Dict[str, str]:
    return {COLD_START_RATE_KEY: str(rate)} if rate > 0 else {}


def lineage_cold_start_rate(settings: Settings, plan: TrainingPlan) -> float:
    """A lineage learns new users and items (COLD_START_RATE) from its full training on, or never: fixed
    like its spec, and kept in its versions' serving_defaults."""
    if plan.parent is not None:
        return plan.parent.cold_start_rate
    return settings.cold_start_rate


def load_training_data(settings: Settings, store: ActionStore, plan: TrainingPlan,
                       profile_store: Optional[ProfileSource] = None,
                       catalog: Optional[Catalog] = None) -> TrainingData:
    """The plan's untrained actions, split into training rows and a holdout."""
    key_of: Dict[str, str] = {}
    fresh: List[StoredAction] = []
    for key in plan.new_keys:
        for action in store.read(key):
            key_of.setdefault(action.event_id, key)
            fresh.append(action)
    # What the parent held out for its evaluation is trained now, never held out again.
    pending: List[StoredAction] = []
    for key, event_ids in sorted(plan.held_out.items()):
        wanted = set(event_ids)
        pending.extend(a for a in store.read(key) if a.event_id in wanted)
    fresh = list(dedupe_actions(fresh))
    fresh_train, holdout_actions = split_holdout(fresh)
    seen = {a.event_id for a in fresh}
    pending = [a for a in dedupe_actions(pending) if a.event_id not in seen]
    new_actions = pending + fresh
    train_actions = pending + fresh_train
    prior = catalog
    items = sorted(set(plan.catalog) | {id_key(a.item_id) for a in new_actions})
    with_history = settings.model_name in MODELS_WITH_HISTORY if plan.spec is None else plan.spec.uses("history")
    with_live = settings.live_features if plan.spec is None else plan.spec.uses("live")
    # One pass over the run's actions in time order: each example's history and live features are
    # those of the moment of its action (holdout actions included, as serving would have seen them).
    ordered = sorted(train_actions + holdout_actions, key=lambda a: (parse_timestamp(a.timestamp), a.event_id))
    # Sequence models: each action sees the user's positives before it (the lineage's, then this run's).
    histories = histories_before(ordered, prior.histories() if prior else None) if with_history else None
    live = live_replay(prior or Catalog(settings.trending_half_life_hours, settings.repeat_actions_max), full=plan.parent is None,
                       actions=len(ordered), similarity=settings.item_similarity) if with_live else None
    cold_start_rate = lineage_cold_start_rate(settings, plan)
    # Sampled negatives skip what each user acted on before this run too (the lineage's catalog).
    acted_on = ({user: prior.acted_on(user) for user in {id_key(a.user_id) for a in new_actions}}
                if prior is not None else None)
    # Negatives by popularity: how often the lineage (and this run) saw each item.
    counts: Dict[str, float] = {item: stats[0] for item, stats in prior.items.items()} if prior is not None else {}
    for action in ordered:
        counts[id_key(action.item_id)] = counts.get(id_key(action.item_id), 0.0) + 1.0
    held = {a.event_id for a in holdout_actions}
    every = training_examples(ordered, settings.negatives_per_positive, settings.random_seed, catalog=items,
                              histories=histories, sampling=settings.negative_sampling, acted_on=acted_on, live=live,
                              item_counts=counts, negative_power=settings.negative_sampling_power,
                              repeats_max=settings.repeat_actions_max, held_out=held)
    train_rows = [e for e in every if e.event_id not in held]
    train_rows += cold_start_copies(train_rows, cold_start_rate, settings.random_seed)
    holdout_rows = [e for e in every if e.event_id in held] if holdout_actions else train_rows
    held_out_next: Dict[str, List[str]] = {}
    for action in holdout_actions:
        held_out_next.setdefault(key_of[action.event_id], []).append(action.event_id)
    profiles = load_profiles(profile_store, train_rows + (holdout_rows if holdout_actions else []))
    spec = plan.spec or derive_spec(
        train_actions, profiles, min_support=settings.feature_min_support,
        max_parameter_features=settings.max_parameter_features, max_profile_features=settings.max_profile_features,
        exclude_parameters=settings.excluded_parameters, label_rules=settings.label_rules, with_history=with_history,
        id_hash_buckets=settings.id_hash_buckets, live_examples=train_rows if with_live else None)
    return TrainingData(new_actions, train_actions, train_rows, holdout_rows, bool(holdout_actions), held_out_next,
                        items, spec, profiles)


# A full training's replay recomputes item similarities this many times over its actions (at least
# every FULL_REFRESH_MIN actions): its rows see similarities as a continuous trainer's versions would
# have had them, never ones computed from the row's own future.
FULL_REFRESHES = 20
FULL_REFRESH_MIN = 500


def live_replay(prior: Catalog, full: bool, actions: int, similarity: str) -> LiveReplay:
    if not full:
        return LiveReplay(prior)  # the similarities of the version this update continues from
    every = max(FULL_REFRESH_MIN, int(math.ceil(actions / float(FULL_REFRESHES))))
    return LiveReplay(prior, refresh_every=every,
                      refresh=functools.partial(refresh_neighbours, similarity=similarity))


def version_catalog(prior: Catalog, train_actions: Sequence[StoredAction], similarity: str) -> Catalog:
    """The new version's catalog: the parent's (or a new one) with this run's training actions, and its
    item similarities (ITEM_SIMILARITY) recomputed."""
    catalog = prior.copy().add(train_actions)
    refresh_neighbours(catalog, similarity=similarity)
    return catalog


def candidate_blend(settings: Settings, parent: Optional[ModelVersion]) -> ServedBlend:
    """How a new version will be served before its own fits: its parent's weights (a new lineage: the CF
    prior, up to CF_BLEND_MAX), the SELF_BLEND setting as it is now. Its calibration is fitted anyway."""
    if parent is not None:
        return replace(ServedBlend.of(parent), self_weight=settings.self_blend)
    return ServedBlend(cf=min(CF_BLEND_PRIOR, settings.cf_blend_max), cf_neg=min(CF_NEG_BLEND_PRIOR, settings.cf_blend_max),
                       self_weight=settings.self_blend)


def blend_defaults(blend: ServedBlend) -> Dict[str, str]:
    """The serving defaults a version's holdout evaluation decided (evaluation.score_examples' blend_out):
    the calibrations, the recalibration and the CF weights it scored with, and the SELF_BLEND weight."""
    return {CF_BLEND_KEY: str(blend.cf), CF_NEG_BLEND_KEY: str(blend.cf_neg), SELF_BLEND_KEY: str(blend.self_weight),
            CALIBRATION_KEY: calibration_text(blend.calibration), FINAL_CALIBRATION_KEY: calibration_text(blend.final),
            RECALIBRATION_KEY: knots_text(blend.recalibration)}


def serving_defaults_of(settings: Settings, plan: TrainingPlan, data: TrainingData, metrics: Dict[str, float],
                        blend: ServedBlend) -> Dict[str, str]:
    """A version's serving defaults: the action type it predicts, its lineage's cold-start rate, how its
    holdout evaluation served it (`blend`: fitted, or its parent's), and the new-user popularity weight
    (fitted by the lineage's full training, in `metrics`)."""
    if plan.parent is not None:
        defaults = dict(plan.parent.serving_defaults)
    else:
        defaults = dict({"action_type": serving_action_type(data.train_actions)},
                        **cold_start_default(lineage_cold_start_rate(settings, plan)))
    defaults.update(blend_defaults(blend))
    if NEW_USER_POPULARITY_KEY in metrics:  # fitted by a full training; its updates keep it
        defaults[NEW_USER_POPULARITY_KEY] = str(metrics[NEW_USER_POPULARITY_KEY])
    return defaults


# A new lineage is judged against the current one on the holdout rows the current lineage never trained,
# when there are this many with both labels; else on its whole holdout (the gate says which).
FRESH_JUDGEMENT_MIN_ROWS = 30


def rows_the_lineage_never_trained(data: TrainingData, manifest: Dict[str, Any],
                                   rows: Optional[Sequence[Example]] = None) -> List[Example]:
    """A full run's holdout rows (of `rows`, default all) whose actions the current lineage (`manifest`)
    has not trained: in objects it never read, or held out by its last version and not trained since."""
    trained_keys = set(manifest.get("keys", []))
    pending = {eid for ids in manifest.get("held_out", {}).values() for eid in ids}
    fresh = {eid for key, ids in data.held_out_next.items() for eid in ids if key not in trained_keys or eid in pending}
    return [e for e in (data.holdout_rows if rows is None else rows) if e.event_id in fresh]


FOR_ARM = "a new lineage for an experiment's arm: served by its experiment, never current by itself"


def run_training_job(settings: Settings, state: StateStore, store: ActionStore, s3: Any, sqs: Any, job_id: str,
                     requested_mode: str = "auto",
                     profile_store: Optional[ProfileStore] = None, keep_running: bool = False,
                     retraining: Optional[str] = None, version_id: Optional[str] = None,
                     for_arm: bool = False) -> Optional[ModelVersion]:
    """Returns the new version (promoted, kept or rejected), or None when there was nothing new to train.

    `keep_running`: the job goes on after this training (the continuous trainer's first version, or a
    retraining it started), so its record stays "running" instead of passing through "succeeded" while
    the trainer carries on; the caller holds the trainer lease and records failures. `retraining`: why
    the continuous trainer started this full training (modeling/growth.py), recorded in the gate;
    `version_id`: the id it chose for the version (default: a new one). `for_arm`: a new lineage for an
    experiment's arm, which its experiment serves to compare it with the current one live: the gate's
    floors judge it, not the current version's holdout AUC, and it is registered beside the current
    version, never current by itself."""
    started = time.monotonic()
    timings: Dict[str, float] = {}
    if not keep_running:
        state.update_job(job_id, only_from=("pending",), status="running", started_at=isoformat_utc(utc_now()))
    workdir = tempfile.mkdtemp(prefix="easyrec-train-")
    try:
        if not wait_for_ingest_drain(sqs, settings.actions_queue_url):
            logger.warning("actions queue not drained after 30 s; training on what is stored")
        version = version_id or new_id("v")
        current = state.get_current()
        manifest = read_manifest(s3, settings.data_bucket, current) if current and current.global_step else None
        all_keys = store.keys()
        plan = plan_training(settings, requested_mode, current, all_keys, manifest, version)
        catalog = parent_catalog(settings, s3, plan)
        data = load_training_data(settings, store, plan, profile_store, catalog)
        timings["load_actions_s"] = round(time.monotonic() - started, 3)
        if plan.mode == "incremental" and not data.new_actions:
            if not keep_running:
                state.update_job(job_id, status="succeeded", finished_at=isoformat_utc(utc_now()),
                                 outcome="nothing_new", num_actions=0)
            logger.info("job %s: no actions since version %s; nothing to train", job_id, current.version)
            return None

        # The current version, scored on the same holdout as the candidate: the gate's baseline, and
        # the drift check (its AUC on fresh actions) that turns an automatic update into a full retrain.
        current_dir = None
        if current is not None:
            current_dir = download_saved_model(s3, settings.data_bucket, current, os.path.join(workdir, "current"))
        drift: Dict[str, Any] = {}
        baseline: Optional[Dict[str, float]] = None  # the current version's metrics on data.holdout_rows
        baseline_scores: List[float] = []  # and its served score of each of those rows
        if plan.mode == "incremental" and requested_mode == "auto" and data.has_holdout and current_dir:
            fresh = baseline = evaluate(current_dir, data.holdout_rows, spec_of(current), data.profiles,
                                        ServedBlend.of(current), scores_out=baseline_scores)
            if fresh.get("auc") is not None and fresh["auc"] < settings.auto_retrain_auc_threshold:
                drift = {"current_auc_on_fresh_actions": fresh["auc"], "threshold": settings.auto_retrain_auc_threshold}
                logger.warning("job %s: version %s has AUC %.4f on fresh actions (< %s): full retrain", job_id,
                               current.version, fresh["auc"], settings.auto_retrain_auc_threshold)
                plan = plan_training(settings, "full", current, all_keys, manifest, version)
                catalog = parent_catalog(settings, s3, plan)
                data = load_training_data(settings, store, plan, profile_store, catalog)
                baseline, baseline_scores = None, []  # a new holdout
        logger.info("job %s: %s training of lineage %s on %d actions (%d held out)", job_id, plan.mode,
                    plan.lineage, len(data.train_actions), len(data.new_actions) - len(data.train_actions))
        if len(data.new_actions) < max(1, settings.train_min_actions):
            raise TrainingFailed(
                "not enough stored actions to train: {} (need at least {}); add some with "
                "POST /online/data/add".format(len(data.new_actions), max(1, settings.train_min_actions)))

        model_dir = os.path.join(workdir, "model_dir")
        if plan.mode == "incremental":
            assert plan.parent is not None
            download_checkpoint(s3, settings.data_bucket, plan.parent, model_dir)
            steps, batch_size = incremental_steps(settings, len(data.train_rows))
            total_steps = plan.parent.global_step + steps
        else:
            batch_size = min(settings.train_batch_size, max(1, len(data.train_rows)))
            total_steps = settings.train_steps
        train_path, eval_path = os.path.join(workdir, "train.csv"), os.path.join(workdir, "eval.csv")
        # EasyRec's CSVInput shuffles within a small buffer only (32 rows): rows in stored order (by time,
        # sampled negatives and new-user copies after the actions) would end an epoch on negatives alone.
        train_rows = list(data.train_rows)
        random.Random(settings.random_seed).shuffle(train_rows)
        for path, part in ((train_path, train_rows), (eval_path, data.holdout_rows)):
            with open(path, "w") as f:
                f.writelines(csv_lines(part, data.spec, data.profiles))
        pipeline_text = build_pipeline_config(settings.model_name, data.spec, train_path, eval_path, model_dir,
                                              num_steps=total_steps, batch_size=batch_size,
                                              learning_rate=settings.effective_learning_rate,
                                              optimizer=settings.effective_optimizer)
        t0 = time.monotonic()
        export_dir = run_easyrec(pipeline_text, workdir, continue_train=plan.mode == "incremental",
                                 seed=settings.random_seed)
        checkpoint, global_step = latest_checkpoint(model_dir)
        timings["train_export_s"] = round(time.monotonic() - t0, 3)

        t0 = time.monotonic()
        new_catalog = version_catalog(catalog, data.train_actions, settings.item_similarity)
        # A new lineage fits its CF weight and how much a user without any history gets of popularity
        # in full ranking, on what the version will serve: its catalog, in its default context.
        serving = ((new_catalog, Context(serving_action_type(data.train_actions),
                                         dt.datetime.fromtimestamp(new_catalog.newest, dt.timezone.utc)))
                   if plan.mode == "full" and data.spec.uses("live") else None)
        fit_rows, judged_rows = split_for_fitting(data.holdout_rows)
        candidate_scores: List[float] = []
        fitted: List[ServedBlend] = []
        metrics = evaluate(export_dir, judged_rows, data.spec, data.profiles, candidate_blend(settings, plan.parent),
                           settings.cf_blend_max, serving, fit=True, fit_on=fit_rows, honest=data.has_holdout,
                           scores_out=candidate_scores, blend_out=fitted)
        if (baseline is None or fit_rows) and current_dir:
            assert current is not None
            baseline_scores = []
            baseline = evaluate(current_dir, judged_rows, spec_of(current), data.profiles, ServedBlend.of(current),
                                scores_out=baseline_scores)
        judged, judged_baseline, judged_on = metrics, baseline, None
        paired = PairedScores([e.label for e in judged_rows], candidate_scores, baseline_scores)
        if plan.mode == "full" and current_dir and manifest is not None and data.has_holdout:
            # The current lineage trained most of this holdout: compared on it, the new lineage would
            # face a model that has seen the answers. Judge both on the rows it never trained.
            assert current is not None
            fresh_rows = rows_the_lineage_never_trained(data, manifest, judged_rows)
            positives = sum(1 for e in fresh_rows if e.label)
            if len(fresh_rows) >= FRESH_JUDGEMENT_MIN_ROWS and 0 < positives < len(fresh_rows):
                paired = PairedScores([e.label for e in fresh_rows], [], [])
                judged = evaluate(export_dir, fresh_rows, data.spec, data.profiles, fitted[0],
                                  scores_out=paired.candidate)
                judged_baseline = evaluate(current_dir, fresh_rows, spec_of(current), data.profiles,
                                           ServedBlend.of(current), scores_out=paired.baseline)
                judged_on = "{} holdout rows the current lineage never trained".format(len(fresh_rows))
            else:
                judged_on = "the judged holdout ({} rows, {} of them never trained by the current lineage)".format(
                    len(judged_rows), len(fresh_rows))
        gate = promotion_decision(judged, None if for_arm else judged_baseline, settings.promotion_auc_tolerance,
                                  current.version if current else None, paired)
        if judged is not metrics:
            floor = degenerate(metrics)  # the floors hold on the whole holdout too
            if floor is not None and gate.get("promote"):
                gate.update(promote=False, reason=floor, floor=True)
        if judged_on:
            gate["judged_on"] = judged_on
        if drift:
            gate["retrain"] = drift
        if retraining:
            gate["retrain"] = {"reason": retraining}
        timings["evaluate_s"] = round(time.monotonic() - t0, 3)

        t0 = time.monotonic()
        record = version_record(
            settings, version=version, lineage=plan.lineage, model_name=settings.model_name, mode=plan.mode,
            job_id=job_id, parent=plan.parent,
            parent_version=plan.parent.version if plan.parent else (current.version if current else None),
            data=data, global_step=global_step, metrics=metrics, gate=gate, feature_spec=data.spec.to_json(),
            optimizer=settings.effective_optimizer, serving_defaults=serving_defaults_of(settings, plan, data, metrics, fitted[0]), timings=timings)

        def upload_model(record: ModelVersion) -> None:
            upload_dir(s3, export_dir, settings.data_bucket, record.saved_model_prefix)
            upload_checkpoint(s3, settings.data_bucket, checkpoint, record.checkpoint_prefix)
            if plan.mode == "full":  # the new lineage's replay sample, before a trainer can warm on it
                write_replay(s3, settings.data_bucket, replay_key(settings.models_prefix, plan.lineage), data.spec,
                             sample_of(data.train_rows, data.spec, data.profiles, settings.replay_buffer_rows,
                                       settings.random_seed))
            timings["upload_s"] = round(time.monotonic() - t0, 3)
            timings["total_s"] = round(time.monotonic() - started, 3)

        outcome = publish(settings, state, s3, record, upload_model, plan, data, pipeline_text, new_catalog,
                          current.version if current else None, promote=not for_arm,
                          beside=FOR_ARM if for_arm else None)
        ended = {} if keep_running else {"status": "succeeded", "finished_at": isoformat_utc(utc_now())}
        state.update_job(job_id, version=version, num_actions=len(data.train_actions), outcome=outcome, **ended)
        logger.info("job %s: version %s %s (%s): %s", job_id, version, outcome, gate["reason"], json.dumps(metrics))
        return record
    except Exception as exc:
        if not keep_running:
            fail_job(state, job_id, exc)
        raise
    finally:
        if settings.train_keep_workdir:
            logger.info("job %s: working folder kept at %s", job_id, workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_one_shot(settings: Settings, state: StateStore, store: ActionStore, s3: Any, sqs: Any, job_id: str,
                 mode: str, profile_store: Optional[ProfileStore] = None) -> Optional[ModelVersion]:
    """A one-shot training task: holds the trainer lease while it trains."""
    try:
        with TrainerLease(state, job_id):
            record = run_training_job(settings, state, store, s3, sqs, job_id, mode, profile_store)
            try:
                retire_old_versions(settings, state, s3)
            except Exception:  # noqa: BLE001 - retention never fails a training
                logger.exception("could not expire old versions")
            return record
    except LeaseLost as exc:
        fail_job(state, job_id, exc)
        raise


def job_from_environment(environ: Optional[Dict[str, str]] = None) -> Tuple[str, str]:
    """(job id, requested mode) that RunTask put in the task's environment."""
    env = os.environ if environ is None else environ
    job_id = env.get("JOB_ID", "")
    if not job_id:
        raise SystemExit("JOB_ID is not set: the training task is started by POST /online/training/start")
    return job_id, env.get("TRAINING_MODE", "auto") or "auto"

