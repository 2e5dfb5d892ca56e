"""The trainer's hold on the trainer lease: one training task at a time.

The API takes the lease for a new job before it launches the task (control/training.py); the task
takes it over at start and renews it from a background thread while it runs (a full training can
take minutes between two points where the main loop could), and gives it up when it ends. If the
task dies, the lease lapses after LEASE_TTL_S, or at once when its job is recorded as ended.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from easyrec_online.ingest.actions import isoformat_utc, utc_now
from easyrec_online.state.registry import LeaseHeld, StateStore

logger = logging.getLogger(__name__)

LEASE_TTL_S = 60.0
RENEW_EVERY_S = 15.0


class LeaseLost(Exception):
    """Another trainer holds the lease: this one must stop (it was stalled past the lease's expiry)."""


class TrainerLease:
    """`with TrainerLease(state, job_id):` holds the lease for the block; `.check()` raises LeaseLost
    when it was lost meanwhile. The renewal also stamps the job's heartbeat."""

    def __init__(self, state: StateStore, job_id: str, ttl_s: float = LEASE_TTL_S,
                 renew_every_s: float = RENEW_EVERY_S) -> None:
        self._state = state
        self._job_id = job_id
        self._ttl = ttl_s
        self._every = renew_every_s
        self._stop = threading.Event()
        self._lost: Optional[str] = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "TrainerLease":
        try:
            self._state.acquire_lease(self._job_id, self._ttl)
        except LeaseHeld as held:
            raise LeaseLost("job {} holds the trainer lease".format(held.holder))
        self._thread = threading.Thread(target=self._renew, name="trainer-lease", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._state.acquire_lease(self._job_id, self._ttl)
                self._state.update_job(self._job_id, heartbeat_at=isoformat_utc(utc_now()))
            except LeaseHeld as held:
                self._lost = "job {} took the trainer lease over".format(held.holder)
                logger.error("trainer %s lost its lease: %s", self._job_id, self._lost)
                return
            except Exception:  # noqa: BLE001 - a passing error; the lease outlives a few missed renewals
                logger.exception("could not renew the trainer lease")

    def check(self) -> None:
        if self._lost:
            raise LeaseLost(self._lost)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._state.release_lease(self._job_id)
        except Exception:  # noqa: BLE001 - it lapses by itself
            logger.exception("could not release the trainer lease")
