"""Training jobs: start (one-shot or continuous), stop, status, reconciled with the task's fate.

One trainer at a time: starting a job first takes the trainer lease in the state table (a
conditional write), so two API containers asked at once start one task, and the other answers 409.
The task renews the lease while it runs (modeling/lease.py) and gives it up when it ends.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Dict, Optional

from pydantic import BaseModel, ConfigDict, Field

from easyrec_online.control.launcher import TrainingLauncher
from easyrec_online.control.models import version_summary
from easyrec_online.core.http import ApiError
from easyrec_online.ingest.actions import isoformat_utc, utc_now
from easyrec_online.state.registry import TRAINING_MODES, LeaseHeld, StateStore, TrainingJob, new_id

logger = logging.getLogger(__name__)

# How long a started task has to take its lease over (ECS placement, image pull, imports) before
# the lease can go to another job.
LAUNCH_LEASE_S = 600.0


class TrainingService:
    def __init__(self, state: StateStore, launcher: TrainingLauncher) -> None:
        self._state = state
        self._launcher = launcher

    def _reconciled(self, job: Optional[TrainingJob]) -> Optional[TrainingJob]:
        """A job the registry calls active whose task is gone ended without saying so: record that."""
        if job is None or not job.active or not job.task_ref:
            return job
        task = self._launcher.describe(job.task_ref)
        if task is not None and task.running:
            return job
        now = isoformat_utc(utc_now())
        # Applied to the job's latest document, only if it is still active (it may have ended meanwhile).
        if job.status == "stopping":  # asked to stop, and it has
            return self._state.update_job(job.job_id, only_from=("stopping",), status="stopped", finished_at=now)
        reason = task.detail if task is not None else "task no longer exists (was the service restarted?)"
        return self._state.update_job(job.job_id, only_from=("pending", "running", "stopping"), status="failed",
                                      finished_at=now, error="training task ended without finishing: {}".format(reason))

    def current_job(self) -> Optional[TrainingJob]:
        """The job that holds the trainer lease (the one running), else the latest job; a vanished task's
        fate recorded."""
        holder = self._state.lease_holder()
        job = self._state.get_job(holder) if holder else None
        if job is None or not job.active:
            job = self._state.latest_job()
        return self._reconciled(job)

    def start(self, mode: str = "auto") -> Dict[str, Any]:
        if mode not in TRAINING_MODES:
            raise ApiError(400, "invalid_request", "mode: one of {}".format(", ".join(TRAINING_MODES)), ["mode"])
        running = self.current_job()
        if running is not None and running.active:
            if running.mode == "continuous" and running.status in ("pending", "running") and mode == "full":
                # A new lineage on everything stored, beside the current one, which it serves meanwhile.
                job = self._state.update_job(running.job_id, only_from=("pending", "running"),
                                             retrain_requested_at=isoformat_utc(utc_now()))
                return {"status": "started", "job": asdict(job),
                        "detail": "the continuous trainer {} starts a full retraining (a new lineage, judged by the "
                                  "promotion gate); the current version serves meanwhile (GET /online/training/status "
                                  "shows it under detail)".format(job.job_id)}
            if running.mode == "continuous" and running.status in ("pending", "running") and mode != "continuous":
                # The continuous trainer learns new actions by itself; this asks it for an update now,
                # whatever its batching thresholds say.
                job = self._state.update_job(running.job_id, only_from=("pending", "running"),
                                             update_requested_at=isoformat_utc(utc_now()))
                return {"status": "started", "job": asdict(job),
                        "detail": "the continuous trainer {} learns new actions as they arrive; it makes an update "
                                  "now".format(job.job_id)}
            raise ApiError(409, "training_in_progress",
                           "training job {} is {}; wait for it (GET /online/training/status)".format(
                               running.job_id, running.status))
        job = TrainingJob(job_id=new_id("job-"), status="pending", requested_at=isoformat_utc(utc_now()), mode=mode)
        if mode == "continuous" and running is not None and running.mode == "continuous" and \
                running.retrain_requested_at and running.retrain_requested_at != running.retrain_handled_at:
            # The trainer before ended (a kill, a deploy) with a {"mode": "full"} request unanswered: this one
            # answers it.
            job.retrain_requested_at = running.retrain_requested_at
        try:
            self._state.acquire_lease(job.job_id, LAUNCH_LEASE_S)
        except LeaseHeld as held:
            raise ApiError(409, "training_in_progress",
                           "training job {} is running; wait for it (GET /online/training/status)".format(held.holder))
        self._state.put_job(job)
        try:
            task_ref = self._launcher.launch(job.job_id, mode)
        except Exception:
            logger.exception("could not start the training task of job %s", job.job_id)
            self._state.update_job(job.job_id, status="failed", finished_at=isoformat_utc(utc_now()),
                                   error="could not start the training task")
            self._state.release_lease(job.job_id)
            raise ApiError(503, "training_unavailable", "could not start the training task; try again later",
                           headers={"Retry-After": "30"})
        job = self._state.update_job(job.job_id, task_ref=task_ref)
        return {"status": "started", "job": asdict(job)}

    def stop(self) -> Dict[str, Any]:
        """Stop the running training. A running continuous trainer finishes the update in progress and
        stops (status "stopping", then "stopped"); anything else is stopped at once, which is safe at any
        point: nothing a run did becomes visible before its last step, and its actions train next time.
        The request is recorded on the job's latest document, so no concurrent write can lose it."""
        job = self.current_job()
        if job is None or not job.active:
            raise ApiError(409, "not_training", "no training job is running (GET /online/training/status)")
        if job.mode == "continuous" and job.status in ("running", "stopping"):
            job = self._state.update_job(job.job_id, only_from=("running", "stopping"), status="stopping")
            if job.status == "stopping":
                return {"status": job.status, "job": asdict(job)}
        if job.task_ref:
            try:
                self._launcher.stop(job.task_ref, "stopped by POST /online/training/stop")
            except Exception:
                logger.exception("could not stop task %s", job.task_ref)
                raise ApiError(503, "training_unavailable", "could not stop the training task; try again",
                               headers={"Retry-After": "5"})
        job = self._state.update_job(job.job_id, only_from=("pending", "running", "stopping"), status="stopped",
                                     finished_at=isoformat_utc(utc_now()), outcome="stopped")
        return {"status": job.status, "job": asdict(job)}

    def status(self) -> Dict[str, Any]:
        job = self.current_job()
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
