"""Publishing a version: the one implementation of the service's most safety-critical sequence.

  upload the model files -> write the version's documents -> register the version -> move the
  current pointer (only if the gate promoted it, and only if the pointer still names the version the
  update started from and is not pinned)

Both the cold training run (job.py) and the continuous trainer's warm updates (continuous.py)
assemble their version record with `version_record` and publish it with `publish`, so the order
is the same everywhere: a run that dies at any step leaves the serving model as it was, and a
rollback made while an update trained is never undone by that update (`StateStore.promote` is a
conditional write).
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from easyrec_online.artifacts.catalog import Catalog
from easyrec_online.core.config import Settings
from easyrec_online.experiments.store import ExperimentDefinitions
from easyrec_online.ingest.actions import isoformat_utc, utc_now
from easyrec_online.state.registry import ModelVersion, NotCurrent, StateStore

logger = logging.getLogger(__name__)


def incremental_steps(settings: Settings, num_rows: int) -> Tuple[int, int]:
    """(optimizer steps, batch size) of an incremental update over `num_rows` training rows (replayed rows
    included): INCREMENTAL_EPOCHS passes, at least INCREMENTAL_MIN_STEPS steps."""
    batch_size = min(settings.train_batch_size, max(1, num_rows))
    steps = max(settings.incremental_min_steps,
                int(math.ceil(settings.incremental_epochs * num_rows / float(batch_size))))
    return steps, batch_size


def version_record(settings: Settings, *, version: str, lineage: str, model_name: str, mode: str, job_id: str,
                   parent: Optional[ModelVersion], parent_version: Optional[str], data: Any, global_step: int,
                   metrics: Dict[str, float], gate: Dict[str, Any], feature_spec: Any, optimizer: str,
                   serving_defaults: Dict[str, str], timings: Dict[str, float],
                   replayed_rows: int = 0) -> ModelVersion:
    """The registry record of a new version (cold or warm): where it lives, what it trained on."""
    return ModelVersion(
        version=version, lineage=lineage, model_name=model_name,
        s3_prefix="{}{}/{}/".format(settings.models_prefix, lineage, version),
        created_at=isoformat_utc(utc_now()), status="ready" if gate["promote"] else "rejected", job_id=job_id,
        parent_version=parent_version, mode=mode, num_new_actions=len(data.train_actions),
        num_held_out=len(data.new_actions) - len(data.train_actions),
        num_actions=(parent.num_actions if parent is not None else 0) + len(data.train_actions),
        num_train_rows=len(data.train_rows), num_replayed_rows=replayed_rows, global_step=global_step, metrics=metrics, gate=gate,
        feature_columns=[f["name"] for f in feature_spec], feature_spec=feature_spec, optimizer=optimizer,
        serving_defaults=serving_defaults, timings=timings)


def write_version_documents(settings: Settings, s3: Any, record: ModelVersion, plan: Any, data: Any,
                            pipeline_text: str, catalog: Catalog) -> None:
    """A version's documents beside its model files: pipeline config, catalog, metrics, manifest."""
    bucket = settings.data_bucket
    s3.put_object(Bucket=bucket, Key=record.pipeline_key, Body=pipeline_text.encode())
    s3.put_object(Bucket=bucket, Key=record.catalog_key, Body=catalog.to_json().encode())
    s3.put_object(Bucket=bucket, Key=record.s3_prefix + "metrics.json",
                  Body=json.dumps({"holdout": record.metrics, "gate": record.gate}, sort_keys=True).encode())
    s3.put_object(Bucket=bucket, Key=record.manifest_key, Body=json.dumps({
        "keys": sorted(set(plan.trained_keys) | set(plan.new_keys)), "held_out": data.held_out_next,
        "items": data.catalog}).encode())


def publish(settings: Settings, state: StateStore, s3: Any, record: ModelVersion,
            upload_model: Callable[[ModelVersion], None], plan: Any, data: Any, pipeline_text: str,
            catalog: Catalog, base: Optional[str], promote: bool = True, beside: Optional[str] = None) -> str:
    """Upload, register, move the pointer. `base`: the current version the run started from (None: there
    was none); `promote=False`: register only (the pointer is pinned, or `beside` says why not).
    Returns the outcome: "promoted",
    "rejected" (the gate said no), or "kept" (servable, but the pointer moved during the run or is
    pinned, so it stays beside the current version)."""
    upload_model(record)
    write_version_documents(settings, s3, record, plan, data, pipeline_text, catalog)
    state.put_version(record)  # registered only once every file is in place
    if record.status != "ready":
        return "rejected"
    try:
        if not promote:
            raise NotCurrent(beside or "the current version is pinned (POST /model/rollback)")
        state.promote(record.version, base)
    except NotCurrent as exc:
        record.gate["not_current"] = str(exc)
        state.put_version(record)
        logger.warning("version %s is servable but not current: %s", record.version, exc)
        return "kept"
    return "promoted"


def adopt_new_lineage(state: StateStore, record: ModelVersion, replaces_lineage: str) -> str:
    """A retraining's first version, published while the trainer's updates went on (so "kept": the pointer
    had moved on from the version it was judged against), becomes current, provided the gate passed it,
    the pointer still serves the lineage it was to replace and is not pinned. Its own lineage's next
    update then catches up on what arrived since its snapshot. Returns the outcome, as publish."""
    if record.status != "ready":
        return "rejected"
    current = state.get_current()
    if not record.gate.get("promote") or current is None or current.lineage != replaces_lineage:
        return "kept"  # refused by the gate, or an operator chose another version meanwhile
    try:
        state.promote(record.version, current.version, reason="a new lineage (retraining) replaces {}".format(
            replaces_lineage))
    except (NotCurrent, ValueError) as exc:  # the pointer moved, or the version is no longer servable
        logger.warning("retraining %s stays beside the current version: %s", record.version, exc)
        return "kept"
    record.gate.pop("not_current", None)
    record.gate["adopted_over"] = current.version  # the update of the old lineage it replaced
    state.put_version(record)
    return "promoted"


def fail_job(state: StateStore, job_id: str, exc: BaseException) -> None:
    """Record why a training job failed (the log has the traceback)."""
    logger.exception("training job %s failed", job_id)
    state.update_job(job_id, only_from=("pending", "running", "stopping"), status="failed",
                     finished_at=isoformat_utc(utc_now()), error="{}: {}".format(type(exc).__name__, exc)[:2000])


# Objects of expired versions carry this tag; the bucket's lifecycle rule deletes them a day later.
EXPIRED_TAG = {"Key": "easyrec-online-expired", "Value": "true"}


def retire_old_versions(settings: Settings, state: StateStore, s3: Any, protect: Sequence[str] = ()) -> List[str]:
    """Versions beyond the newest KEEP_VERSIONS expire, except the current one (pinned or not), those a
    running experiment's arm serves, and `protect` (a retraining's version: its id was taken when it
    began, so the updates made meanwhile sort after it): their records say "expired" (no rollback to them) and their objects are tagged for
    the bucket's lifecycle rule. A continuous trainer publishes a version every few seconds; without
    this, S3 keeps them all. Returns the versions it expired."""
    keep = max(1, settings.keep_versions)
    versions = state.list_versions(limit=keep + 100)  # newest first
    pointer = state.pointer() or {}
    arm_versions, arm_lineages = ExperimentDefinitions(state).arm_versions()
    protect = set(protect) | set(arm_versions)
    for lineage in arm_lineages:  # its newest promoted version (`versions` is newest first)
        protect |= {v.version for v in [v for v in versions if v.lineage == lineage and v.status == "ready"][:1]}
    expired = []
    for version in versions[keep:]:
        if version.version == pointer.get("version") or version.status == "expired" or version.version in protect:
            continue
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.data_bucket,
                                                                 Prefix=version.s3_prefix):
            for obj in page.get("Contents", []):
                s3.put_object_tagging(Bucket=settings.data_bucket, Key=obj["Key"], Tagging={"TagSet": [EXPIRED_TAG]})
        version.status = "expired"
        version.gate["expired_at"] = isoformat_utc(utc_now())
        state.put_version(version)
        expired.append(version.version)
    if expired:
        logger.info("expired %d old versions (KEEP_VERSIONS=%d)", len(expired), keep)
    return expired
