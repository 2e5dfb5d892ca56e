"""Keeps the continuous trainer running (CONTINUOUS_TRAINING=true), under a restart policy.

The API calls `ensure()` when actions arrive (at most every ENSURE_INTERVAL_S per container) and
on GET /online/training/status. With no training job active it starts a continuous trainer,
unless the last one was stopped on request (POST /online/training/stop: it stays stopped until
started again). A failed trainer is restarted as the policy says:

  policy        never | on-failure (default) | always (also after a clean exit it did not ask for)
  max_restarts  consecutive restarts allowed (default 5); a PATCH resets the count
  backoff_s     wait before restart n: backoff_s * 2**(n-1) after the failure (default 10)

The policy lives in the state table (PATCH /online/training/restart-policy), so every API
container enforces the same one.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable, Dict, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from typing_extensions import Literal

from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import isoformat_utc, parse_timestamp, utc_now
from easyrec_online.state.registry import StateStore

ENSURE_INTERVAL_S = 5.0
POLICY = "restart_policy"
DEFAULT_POLICY: Dict[str, Any] = {"policy": "on-failure", "max_restarts": 5, "backoff_s": 10.0, "restarts": 0}


class RestartPolicyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Optional[Literal["never", "on-failure", "always"]] = None
    max_restarts: Optional[StrictInt] = Field(None, ge=0, le=1000)
    backoff_s: Optional[float] = Field(None, ge=0, le=86400)


def get_policy(state: StateStore) -> Dict[str, Any]:
    return dict(DEFAULT_POLICY, **(state.get_config(POLICY) or {}))


def patch_policy(state: StateStore, patch: RestartPolicyPatch) -> Dict[str, Any]:
    policy = get_policy(state)
    policy.update({k: v for k, v in patch.model_dump().items() if v is not None})
    policy["restarts"] = 0  # a changed policy starts counting afresh
    policy["updated_at"] = isoformat_utc(utc_now())
    state.put_config(POLICY, policy)
    return {"restart_policy": policy}


class TrainingSupervisor:
    def __init__(self, settings: Settings, state: StateStore, training: Any,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._state = state
        self._training = training  # control.TrainingService
        self._clock = clock
        self._last = float("-inf")

    def maybe_ensure(self) -> Optional[str]:
        """ensure(), at most every ENSURE_INTERVAL_S (called on every /online/data/add)."""
        if not self._settings.continuous_training or self._clock() - self._last < ENSURE_INTERVAL_S:
            return None
        self._last = self._clock()
        return self.ensure()

    def ensure(self, now: Optional[dt.datetime] = None) -> Optional[str]:
        """Start or restart the continuous trainer when it should run; returns what it did."""
        if not self._settings.continuous_training:
            return None
        job = self._training.current_job()
        if job is not None and job.active:
            return None
        if job is not None and job.mode == "continuous" and job.status == "stopped":
            return None  # stopped on request: stays stopped until started again
        policy = get_policy(self._state)
        failed_trainer = job is not None and job.mode == "continuous" and job.status == "failed"
        if failed_trainer:
            if policy["policy"] == "never" or policy["restarts"] >= policy["max_restarts"]:
                return None
            wait = float(policy["backoff_s"]) * (2 ** int(policy["restarts"]))
            failed_at = parse_timestamp(job.finished_at) if job.finished_at else None
            if failed_at is not None and ((now or utc_now()) - failed_at).total_seconds() < wait:
                return None
            policy["restarts"] = int(policy["restarts"]) + 1
            policy["last_restart_at"] = isoformat_utc(now or utc_now())
            self._state.put_config(POLICY, policy)
        try:
            started = self._training.start("continuous")
        except Exception:  # noqa: BLE001 - someone else started one meanwhile; the next call looks again
            return None
        return "restarted" if failed_trainer else "started {}".format(started["job"]["job_id"])
