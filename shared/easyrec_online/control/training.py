"""Training jobs: start (one-shot or continuous), stop, status, reconciled with the task's fate."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Dict, Optional

from pydantic import BaseModel, ConfigDict, Field

from easyrec_online.control.launcher import TrainingLauncher
from easyrec_online.control.models import version_summary
from easyrec_online.core.http import ApiError
from easyrec_online.ingest.actions import isoformat_utc, utc_now
from easyrec_online.state.registry import TRAINING_MODES, StateStore, TrainingJob, new_id


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
