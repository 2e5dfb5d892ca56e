"""Keeps the continuous trainer running (CONTINUOUS_TRAINING, on by default), under a restart policy.

`ensure()` runs on a schedule (the SupervisorFunction: every minute, and at once when a trainer task
stops), when actions arrive (at most every ENSURE_INTERVAL_S per API container) and on GET
/online/training/status. With no training job active it starts a continuous trainer, unless the
last one was stopped on request (POST /online/training/stop: it stays stopped until started
again). A trainer that ended any other way resumes:

  interrupted   it was told to end without a stop request (SIGTERM: a task retirement, a deploy,
                the service shutting down): resumed at once, not counted as a failure
  failed        it crashed, was killed (kill -9, out of memory) or its task vanished: restarted as
                the policy says

  policy        never | on-failure (default) | always
                on-failure gives up after max_restarts failures in a row; always never gives up
  max_restarts  failures in a row that on-failure restarts (default 5)
  backoff_s     wait before restart n: backoff_s * 2**(n-1) after the failure (default 10, at most
                MAX_BACKOFF_S)
  healthy_after_s  a trainer that has run this long without failing resets the count (default 600)

The policy lives in the state table (PATCH /online/training/restart-policy), so every API
container and the scheduled supervisor enforce the same one; the restart count is incremented with
a conditional write, so two supervisors deciding at once restart once.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from typing_extensions import Literal

from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError
from easyrec_online.ingest.actions import isoformat_utc, parse_timestamp, utc_now
from easyrec_online.state.registry import StateStore, TrainingJob

ENSURE_INTERVAL_S = 5.0
MAX_BACKOFF_S = 3600.0
POLICY = "restart_policy"
DEFAULT_POLICY: Dict[str, Any] = {"policy": "on-failure", "max_restarts": 5, "backoff_s": 10.0,
                                  "healthy_after_s": 600.0, "restarts": 0}


class RestartPolicyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Optional[Literal["never", "on-failure", "always"]] = None
    max_restarts: Optional[StrictInt] = Field(None, ge=0, le=1000)
    backoff_s: Optional[float] = Field(None, ge=0, le=86400)
    healthy_after_s: Optional[float] = Field(None, ge=0, le=7 * 86400)


def get_policy(state: StateStore) -> Dict[str, Any]:
    return dict(DEFAULT_POLICY, **(state.get_config(POLICY) or {}))


def patch_policy(state: StateStore, patch: RestartPolicyPatch) -> Dict[str, Any]:
    changes = {k: v for k, v in patch.model_dump().items() if v is not None}

    def change(doc: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        policy = dict(DEFAULT_POLICY, **(doc or {}))
        policy.update(changes)
        policy["restarts"] = 0  # a changed policy starts counting afresh
        policy["updated_at"] = isoformat_utc(utc_now())
        return policy

    return {"restart_policy": state.mutate_config(POLICY, change)}


@dataclass(frozen=True)
class Decision:
    action: str  # none | start | resume | restart | wait | give_up
    reason: str
    at: Optional[str] = None  # wait: when the restart is due

    def as_dict(self) -> Dict[str, Any]:
        out = {"action": self.action, "reason": self.reason}
        if self.at:
            out["at"] = self.at
        return out


class TrainingSupervisor:
    def __init__(self, settings: Settings, state: StateStore, training: Any,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._state = state
        self._training = training  # control.training.TrainingService
        self._clock = clock
        self._last = float("-inf")

    def maybe_ensure(self) -> Optional[str]:
        """ensure(), at most every ENSURE_INTERVAL_S (called on every /online/data/add)."""
        if not self._settings.continuous_training or self._clock() - self._last < ENSURE_INTERVAL_S:
            return None
        self._last = self._clock()
        return self.ensure()

    def status(self) -> Dict[str, Any]:
        """GET /online/training/status: the training job, the current model, the restart policy and what
        the supervisor will do next."""
        status = self._training.status()
        job = TrainingJob(**status["job"]) if status["job"] else None
        return dict(status, restart_policy=get_policy(self._state),
                    continuous_training=self._settings.continuous_training,
                    supervisor=self.decide(job=job).as_dict())

    def decide(self, now: Optional[dt.datetime] = None, job: Optional[TrainingJob] = None) -> Decision:
        """What the supervisor would do now, and why (GET /online/training/status shows it)."""
        now = now or utc_now()
        if not self._settings.continuous_training:
            return Decision("none", "CONTINUOUS_TRAINING is off: training runs when started")
        job = job if job is not None else self._training.current_job()
        if job is not None and job.active:
            return Decision("none", "training job {} is {}".format(job.job_id, job.status))
        if job is None or job.mode != "continuous":
            return Decision("start", "no continuous trainer has run yet" if job is None else
                            "the last job was a one-shot training")
        if job.status == "stopped":
            return Decision("none", "stopped on request (POST /online/training/stop): start it again with "
                                    "POST /online/training/start {\"mode\": \"continuous\"}")
        if job.status in ("interrupted", "succeeded"):
            return Decision("resume", "the trainer was {} ({}): resuming".format(job.status, job.error or "no error"))
        policy = get_policy(self._state)
        restarts = int(policy["restarts"])
        if policy["policy"] == "never":
            return Decision("give_up", "the trainer failed and the restart policy is never")
        if policy["policy"] == "on-failure" and restarts >= int(policy["max_restarts"]):
            return Decision("give_up", "the trainer failed {} times in a row (max_restarts {})".format(
                restarts, policy["max_restarts"]))
        wait = min(MAX_BACKOFF_S, float(policy["backoff_s"]) * (2 ** min(restarts, 20)))
        failed_at = parse_timestamp(job.finished_at) if job.finished_at else now
        due = failed_at + dt.timedelta(seconds=wait)
        if now < due:
            return Decision("wait", "the trainer failed; restart {} after a {:.0f} s backoff".format(restarts + 1, wait),
                            isoformat_utc(due))
        return Decision("restart", "the trainer failed ({}); restart {}".format(job.error or "no error", restarts + 1))

    def ensure(self, now: Optional[dt.datetime] = None) -> Optional[str]:
        """Start, resume or restart the continuous trainer when it should run; returns what it did."""
        now = now or utc_now()
        job = self._training.current_job() if self._settings.continuous_training else None
        if job is not None and job.active:
            self._forgive_if_healthy(job, now)
            return None
        decision = self.decide(now, job)
        if decision.action not in ("start", "resume", "restart"):
            return None
        if decision.action == "restart":
            self._count_restart(job, now)
        try:  # the trainer lease lets one of several supervisors deciding at once start it
            started = self._training.start("continuous")
        except ApiError:  # someone else started one meanwhile; the next call looks again
            return None
        return "{} {}".format({"start": "started", "resume": "resumed", "restart": "restarted"}[decision.action],
                              started["job"]["job_id"])

    def _count_restart(self, job: Optional[TrainingJob], now: dt.datetime) -> None:
        """Increment the restart count for this failure, once, whoever else decides at the same time."""
        failure = job.job_id if job is not None else ""

        def change(doc: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
            policy = dict(DEFAULT_POLICY, **(doc or {}))
            if policy.get("last_failure") == failure:
                return None  # this failure was counted (and restarted) already
            policy["restarts"] = int(policy["restarts"]) + 1
            policy["last_failure"] = failure
            policy["last_restart_at"] = isoformat_utc(now)
            return policy

        self._state.mutate_config(POLICY, change)

    def _forgive_if_healthy(self, job: TrainingJob, now: dt.datetime) -> None:
        """Failures in a row end when a trainer has run healthily for healthy_after_s."""
        if job.status != "running" or not job.started_at:
            return
        policy = get_policy(self._state)
        if not int(policy["restarts"]):
            return
        if (now - parse_timestamp(job.started_at)).total_seconds() < float(policy["healthy_after_s"]):
            return

        def change(doc: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
            policy = dict(DEFAULT_POLICY, **(doc or {}))
            if not int(policy["restarts"]):
                return None
            return dict(policy, restarts=0, healthy_since=job.started_at)

        self._state.mutate_config(POLICY, change)
