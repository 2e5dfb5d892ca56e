"""The model registry as the API shows it: health, model info, the updates list, rollback."""
from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Dict, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from easyrec_online import __version__
from easyrec_online.control.streaming import untrained_actions
from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError, query_int
from easyrec_online.ingest.actions import isoformat_utc, utc_now
from easyrec_online.ingest.counters import INGEST_COUNTERS
from easyrec_online.state.registry import ModelVersion, StateStore

logger = logging.getLogger(__name__)

def version_summary(version: Optional[ModelVersion]) -> Optional[Dict[str, Any]]:
    if version is None:
        return None
    return {
        "version": version.version, "lineage": version.lineage, "model_name": version.model_name,
        "created_at": version.created_at, "status": version.status, "mode": version.mode,
        "parent_version": version.parent_version, "num_actions": version.num_actions,
        "num_new_actions": version.num_new_actions, "metrics": version.metrics, "gate": version.gate,
    }


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: StrictStr = Field(..., min_length=1, max_length=128)
    # Pinned (the default): the version stays current until POST /model/unpin or another deliberate
    # rollback/promotion; the trainer goes on from it, publishing beside it. False: the next good update
    # of the trainer may replace it.
    pin: StrictBool = True


def rollback(state: StateStore, request: RollbackRequest) -> Dict[str, Any]:
    """POST /model/rollback: make a servable version current, deliberately (back to an earlier version, or
    forward to one published beside a pinned one); inference follows the pointer within seconds."""
    try:
        pointer = state.set_current(request.version, pinned=request.pin,
                                    reason="POST /model/rollback" + (" (pinned)" if request.pin else ""))
    except KeyError:
        raise ApiError(404, "unknown_version", "no model version {}".format(request.version), ["version"])
    except ValueError as exc:
        raise ApiError(409, "version_not_servable", str(exc), ["version"])
    return {"status": "rolled_back", "pinned": bool(pointer.get("pinned")), "current": version_summary(
        state.get_current())}


def unpin(state: StateStore) -> Dict[str, Any]:
    """POST /model/unpin: the trainer's next good update may become current again."""
    pointer = state.set_pinned(False, reason="POST /model/unpin")
    if pointer is None:
        raise ApiError(409, "no_model", "there is no current version to unpin")
    return {"status": "unpinned", "pinned": False, "current": version_summary(state.get_current())}


def health(settings: Settings, state: StateStore) -> Dict[str, Any]:
    try:
        current = state.get_current()
    except Exception:  # the reason goes to the log, not to the client
        logger.exception("health: the state store is unreachable")
        raise ApiError(503, "unhealthy", "the state store is unreachable", headers={"Retry-After": "5"})
    return {
        "status": "healthy",
        "version": __version__,
        "api_version": settings.api_version,
        "model_version": current.version if current else None,
        "timestamp": isoformat_utc(utc_now()),
    }


def model_info(state: StateStore) -> Dict[str, Any]:
    current = state.get_current()
    versions = state.list_versions(limit=20)
    latest_job = state.latest_job()
    info: Dict[str, Any] = {
        "current": asdict(current) if current else None,
        # The current version's model inputs by name (its lineage's: fixed until a retraining).
        "features": [f.get("name") for f in current.feature_spec] if current else [],
        "versions": [version_summary(v) for v in versions],
        "latest_job": asdict(latest_job) if latest_job else None,
    }
    if latest_job is not None and latest_job.mode == "continuous" and latest_job.active:
        # The online trainer's view: what it has done and how far behind the stream it is.
        warm = [v for v in versions if v.job_id == latest_job.job_id and v.mode == "incremental"]
        info["online"] = {
            "trainer_job": latest_job.job_id, "status": latest_job.status, "started_at": latest_job.started_at,
            "updates": len(warm), "promoted": sum(v.status == "ready" for v in warm),
            "last_update": version_summary(warm[0]) if warm else None,
            "last_update_s": warm[0].timings.get("total_s") if warm else None,
            "last_trigger": warm[0].gate.get("trigger") if warm else None,
            "trained_actions": current.num_actions if current else 0,
            "untrained_actions": untrained_actions(state),
            # Of those, the ones no update has taken up yet: a refused update's actions are untrained but
            # judged, and wait for newer ones to go into the next update with them.
            "awaiting_update": awaiting_update(state, current, versions),
            "state": latest_job.detail.get("state"),
            # A new lineage being trained beside the current one (modeling/growth.py), and the last one.
            "retraining": latest_job.retraining,
            "last_retraining": latest_job.last_retraining,
        }
    return info


def awaiting_update(state: StateStore, current: Optional[ModelVersion], versions: Sequence[ModelVersion]) -> int:
    """Stored actions that no version of the current lineage since the current one (promoted or refused)
    has trained on, held out or been judged on. A version's holdout is untrained (the next version
    trains it) but not awaiting anything: the version read it."""
    if current is None:
        return untrained_actions(state)
    since = [v for v in versions if v.lineage == current.lineage and v.created_at >= current.created_at]
    covered = max(v.num_actions + v.num_held_out for v in since + [current])
    stored = int(state.counts(INGEST_COUNTERS).get("stored_actions", 0))
    return max(0, stored - covered)


def list_updates(state: StateStore, limit: int = 20, lineage: Optional[str] = None) -> Dict[str, Any]:
    """GET /online/updates/list: model versions (full trainings and incremental updates), newest first."""
    current = state.get_current()
    versions = [v for v in state.list_versions(limit=500) if lineage is None or v.lineage == lineage][:limit]
    return {
        "current_version": current.version if current else None,
        "updates": [{
            "version": v.version, "lineage": v.lineage, "model_name": v.model_name, "mode": v.mode,
            "parent_version": v.parent_version, "status": v.status, "created_at": v.created_at,
            "current": current is not None and v.version == current.version,
            "num_new_actions": v.num_new_actions, "num_actions": v.num_actions, "global_step": v.global_step,
            "num_train_rows": v.num_train_rows, "num_replayed_rows": v.num_replayed_rows,
            "auc": v.metrics.get("auc"), "logloss": v.metrics.get("logloss"),
            "gate": v.gate.get("reason"), "warm": bool(v.timings.get("warm")),
            "duration_s": v.timings.get("total_s"), "artifacts": v.s3_prefix,
        } for v in versions],
    }


def parse_limit(raw: Optional[str], default: int = 20, maximum: int = 100) -> int:
    return query_int(raw, "limit", default, maximum)
