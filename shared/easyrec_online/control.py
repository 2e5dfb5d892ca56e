"""Control-plane services behind the API function: accepting actions, training jobs, model info.

The Chalice app only routes; these classes hold the logic and take their collaborators
(publisher, state store, launcher) as arguments so tests can run them in memory or on moto.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field

from . import __version__
from .actions import MAX_ID_LENGTH, AddDataRequest, EntityId, StoredAction, id_key, isoformat_utc, utc_now
from .config import Settings
from .consumer import untrained_actions
from .http import ApiError, query_int, validate
from .ingest import ActionPublisher, PublishError
from .labels import LabelRuleError
from .launcher import TrainingLauncher
from .profiles import MAX_PROFILE_JSON_BYTES, ProfileStore
from .registry import TRAINING_MODES, ModelVersion, StateStore, TrainingJob, new_id


class IngestService:
    def __init__(self, settings: Settings, publisher: ActionPublisher) -> None:
        self._settings = settings
        self._publisher = publisher

    def add(self, request: AddDataRequest) -> Dict[str, Any]:
        limit = self._settings.max_samples_per_request
        if len(request.samples) > limit:
            raise ApiError(413, "too_many_samples",
                           "samples: at most {} per request (got {}); split the batch".format(
                               limit, len(request.samples)), ["samples"])
        now = utc_now()
        actions = []
        for index, sample in enumerate(request.samples):
            try:
                actions.append(StoredAction.accept(sample, now, self._settings.label_rules))
            except LabelRuleError as exc:
                field = "samples[{}].label".format(index)
                raise ApiError(400, "invalid_request", "{}: {}".format(field, exc), [field])
        seen: Dict[str, int] = {}
        for index, action in enumerate(actions):
            if action.event_id in seen:
                raise ApiError(400, "invalid_request", "samples[{}].event_id: duplicates samples[{}].event_id".format(
                    index, seen[action.event_id]), ["samples[{}].event_id".format(index)])
            seen[action.event_id] = index
        try:
            self._publisher.publish(actions)
        except PublishError as exc:
            failed = set(exc.event_ids)
            raise ApiError(
                503, "stream_unavailable",
                "{} of {} samples could not be queued ({}); the others were accepted. Retry the ones "
                "listed in `fields` with the same event_id: duplicates are stored once.".format(
                    len(failed), len(actions), exc.reason),
                ["samples[{}]".format(i) for i, a in enumerate(actions) if a.event_id in failed],
                headers={"Retry-After": "1"},
            )
        return {
            "status": "accepted",
            "accepted": len(actions),
            "event_ids": [a.event_id for a in actions],
            "accepted_at": isoformat_utc(now),
        }


def version_summary(version: Optional[ModelVersion]) -> Optional[Dict[str, Any]]:
    if version is None:
        return None
    return {
        "version": version.version, "lineage": version.lineage, "model_name": version.model_name,
        "created_at": version.created_at, "status": version.status, "mode": version.mode,
        "parent_version": version.parent_version, "num_actions": version.num_actions,
        "num_new_actions": version.num_new_actions, "metrics": version.metrics, "gate": version.gate,
    }


class TrainingService:
    def __init__(self, state: StateStore, launcher: TrainingLauncher) -> None:
        self._state = state
        self._launcher = launcher

    def _reconciled(self, job: Optional[TrainingJob]) -> Optional[TrainingJob]:
        """A job the registry calls active whose task is gone failed without saying so: record that."""
        if job is None or not job.active or not job.task_ref:
            return job
        task = self._launcher.describe(job.task_ref)
        if task is not None and task.running:
            return job
        fresh = self._state.get_job(job.job_id)  # it may have finished while we looked
        if fresh is None or not fresh.active:
            return fresh
        if fresh.status == "stopping":  # asked to stop, and it has
            return self._state.update_job(job.job_id, status="stopped", finished_at=isoformat_utc(utc_now()))
        reason = task.detail if task is not None else "task no longer exists (was the service restarted?)"
        return self._state.update_job(job.job_id, status="failed", finished_at=isoformat_utc(utc_now()),
                                      error="training task stopped without finishing: {}".format(reason))

    def current_job(self) -> Optional[TrainingJob]:
        """The latest job, with a vanished task's fate recorded."""
        return self._reconciled(self._state.latest_job())

    def start(self, mode: str = "auto") -> Dict[str, Any]:
        if mode not in TRAINING_MODES:
            raise ApiError(400, "invalid_request", "mode: one of {}".format(", ".join(TRAINING_MODES)), ["mode"])
        latest = self._reconciled(self._state.latest_job())
        if latest is not None and latest.active:
            raise ApiError(409, "training_in_progress",
                           "training job {} is {}; wait for it (GET /online/training/status)".format(
                               latest.job_id, latest.status))
        job = TrainingJob(job_id=new_id("job-"), status="pending", requested_at=isoformat_utc(utc_now()), mode=mode)
        self._state.put_job(job)
        try:
            task_ref = self._launcher.launch(job.job_id, mode)
        except Exception as exc:
            self._state.update_job(job.job_id, status="failed", error="could not start the training task: {}".format(exc))
            raise ApiError(503, "training_unavailable", "could not start the training task: {}".format(exc))
        job = self._state.update_job(job.job_id, task_ref=task_ref)
        return {"status": "started", "job": asdict(job)}

    def stop(self) -> Dict[str, Any]:
        """Stop the running training. A continuous trainer finishes the update in progress and stops
        (status "stopping", then "stopped"); a one-shot run is stopped at once, which is safe at any
        point: nothing it did becomes visible before its last step, and its actions train next time."""
        job = self._reconciled(self._state.latest_job())
        if job is None or not job.active:
            raise ApiError(409, "not_training", "no training job is running (GET /online/training/status)")
        if job.mode == "continuous" and job.status == "running":
            job = self._state.update_job(job.job_id, status="stopping")
        else:
            if job.task_ref:
                try:
                    self._launcher.stop(job.task_ref, "stopped by POST /online/training/stop")
                except Exception as exc:
                    raise ApiError(503, "training_unavailable", "could not stop the training task: {}".format(exc))
            job = self._state.update_job(job.job_id, status="stopped", finished_at=isoformat_utc(utc_now()),
                                         outcome="stopped")
        return {"status": job.status, "job": asdict(job)}

    def status(self) -> Dict[str, Any]:
        job = self._reconciled(self._state.latest_job())
        return {
            "status": job.status if job else "idle",
            "is_training": bool(job and job.active),
            "job": asdict(job) if job else None,
            "current_model": version_summary(self._state.get_current()),
        }


class TrainingStartRequest(BaseModel):
    """Optional body of POST /online/training/start (the seed's call sends none)."""

    model_config = ConfigDict(extra="forbid")

    mode: str = Field("auto", description="auto (incremental when possible), full (new lineage), incremental, or "
                                          "continuous (a long-running trainer that follows new actions)")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(..., min_length=1)


def rollback(state: StateStore, request: RollbackRequest) -> Dict[str, Any]:
    """Make an earlier (servable) version current; inference follows the pointer within seconds."""
    try:
        state.set_current(request.version)
    except KeyError:
        raise ApiError(404, "unknown_version", "no model version {}".format(request.version), ["version"])
    except ValueError as exc:
        raise ApiError(409, "version_not_servable", str(exc), ["version"])
    return {"status": "rolled_back", "current": version_summary(state.get_current())}


def put_profile(profiles: ProfileStore, kind: str, entity_id: str, body: Any) -> Dict[str, Any]:
    if not isinstance(body, dict) or not body:
        raise ApiError(400, "invalid_request", "body must be a non-empty JSON object of {} attributes".format(kind),
                       ["body"])
    if len(json.dumps(body)) > MAX_PROFILE_JSON_BYTES:
        raise ApiError(413, "profile_too_large", "a profile is at most {} bytes of JSON".format(
            MAX_PROFILE_JSON_BYTES), ["body"])
    if not entity_id.strip() or len(entity_id) > MAX_ID_LENGTH:
        raise ApiError(400, "invalid_request", "{}_id: 1 to {} characters".format(kind, MAX_ID_LENGTH),
                       ["{}_id".format(kind)])
    return profiles.put(kind, entity_id, body)


MAX_PROFILES_PER_REQUEST = 1000


class _ProfileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: Dict[str, Any] = Field(min_length=1)


class UserProfileIn(_ProfileEntry):
    user_id: EntityId


class ItemProfileIn(_ProfileEntry):
    item_id: EntityId


class PutUsersRequest(BaseModel):
    """POST /users: many profiles at once (a catalog import), each as GET /users/{id} returns it."""
    model_config = ConfigDict(extra="forbid")
    users: List[UserProfileIn] = Field(min_length=1, max_length=MAX_PROFILES_PER_REQUEST)


class PutItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: List[ItemProfileIn] = Field(min_length=1, max_length=MAX_PROFILES_PER_REQUEST)


def put_profiles(profiles: ProfileStore, kind: str, body: Any) -> Dict[str, Any]:
    """Store (replace) up to MAX_PROFILES_PER_REQUEST profiles, all or none: the whole batch is validated
    before anything is written. An id twice in one batch: the later entry wins, as two PUTs would."""
    plural = kind + "s"
    if isinstance(body, dict) and isinstance(body.get(plural), list) and len(body[plural]) > MAX_PROFILES_PER_REQUEST:
        raise ApiError(413, "too_many_profiles", "{}: at most {} per request (got {}); split the batch".format(
            plural, MAX_PROFILES_PER_REQUEST, len(body[plural])), [plural])
    request = validate(PutUsersRequest if kind == "user" else PutItemsRequest, body)
    batch: Dict[str, Dict[str, Any]] = {}
    for index, entry in enumerate(getattr(request, plural)):
        if len(json.dumps(entry.profile)) > MAX_PROFILE_JSON_BYTES:
            field = "{}[{}].profile".format(plural, index)
            raise ApiError(413, "profile_too_large", "{}: a profile is at most {} bytes of JSON".format(
                field, MAX_PROFILE_JSON_BYTES), [field])
        entity_id = id_key(getattr(entry, kind + "_id"))
        batch.pop(entity_id, None)  # keeps the order of the last occurrence
        batch[entity_id] = entry.profile
    stored = profiles.put_many(kind, batch)
    return {"stored": len(stored), "{}_ids".format(kind): [r["{}_id".format(kind)] for r in stored]}


def get_profile(profiles: ProfileStore, kind: str, entity_id: str) -> Dict[str, Any]:
    found = profiles.get(kind, entity_id)
    if found is None:
        raise ApiError(404, "not_found", "no profile for {} {}".format(kind, entity_id), ["{}_id".format(kind)])
    return found


def health(settings: Settings, state: StateStore) -> Dict[str, Any]:
    try:
        current = state.get_current()
    except Exception as exc:
        raise ApiError(503, "unhealthy", "state store unreachable: {}".format(exc))
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
        }
    return info


MAX_LOG_LINES = 1000


class TrainingLogs:
    """GET /online/training/logs?lines=N: the tail of a training task's output.

    The trainer's container logs through the awslogs driver to TRAINER_LOG_GROUP, one stream per
    task (<prefix>/<container>/<task id>); the local runner's ECS agent ships them the same way.
    """

    def __init__(self, settings: Settings, state: StateStore, logs_client: Any) -> None:
        self._settings = settings
        self._state = state
        self._logs = logs_client

    def tail(self, lines_param: Optional[str], job_id: Optional[str]) -> Dict[str, Any]:
        lines = query_int(lines_param, "lines", 100, MAX_LOG_LINES)
        job = self._state.get_job(job_id) if job_id else self._state.latest_job()
        if job is None:
            raise ApiError(404, "not_found", "no training job {}".format(job_id) if job_id else "no training job yet")
        if not job.task_ref or not self._settings.trainer_log_group:
            return {"job_id": job.job_id, "status": job.status, "lines": [], "count": 0}
        stream = "{}/{}/{}".format(self._settings.trainer_log_stream_prefix, self._settings.training_container,
                                   job.task_ref.rsplit("/", 1)[-1])
        try:
            events = self._logs.get_log_events(logGroupName=self._settings.trainer_log_group, logStreamName=stream,
                                               limit=lines, startFromHead=False).get("events", [])
        except Exception as exc:  # noqa: BLE001
            if "ResourceNotFound" in str(exc):
                events = []  # the task has not written anything yet
            else:
                raise ApiError(503, "logs_unavailable", "could not read the training logs: {}".format(exc))
        return {"job_id": job.job_id, "status": job.status, "log_stream": stream, "count": len(events),
                "lines": [e["message"] for e in events[-lines:]]}