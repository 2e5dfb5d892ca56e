"""Experiments where requests and actions pass: which arm serves a user, and which actions are successes.

`RunningExperiments` caches the running experiments' definitions (re-read every
EXPERIMENT_REFRESH_MS; a failed read keeps the last list). Inference asks it for a user's
experiment and arm; the ingest consumer asks it which stored actions to log as successes.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, List, Optional, Sequence, Tuple

from easyrec_online.experiments.assignment import assign, in_experiment
from easyrec_online.experiments.definition import Arm, Experiment, Success
from easyrec_online.experiments.store import ExperimentDefinitions, ExperimentLog
from easyrec_online.ingest.actions import StoredAction, id_key, parse_timestamp, utc_now

logger = logging.getLogger(__name__)


class RunningExperiments:
    def __init__(self, definitions: ExperimentDefinitions, refresh_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._definitions = definitions
        self._refresh_s = refresh_s
        self._clock = clock
        self._running: List[Experiment] = []
        self._recording: List[Experiment] = []
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        if self._clock() - self._read_at >= self._refresh_s:
            with self._lock:
                if self._clock() - self._read_at >= self._refresh_s:
                    try:
                        listed = self._definitions.list()
                        now = utc_now()
                        self._running = [e for e in listed if e.running]
                        self._recording = [e for e in listed if e.running or (
                            e.status == "stopped" and e.stopped_at is not None and
                            (now - parse_timestamp(e.stopped_at)).total_seconds() < e.attribution_window_s)]
                    except Exception:  # noqa: BLE001 - keep serving with the last list; retried next time
                        logger.exception("could not read the running experiments")
                    self._read_at = self._clock()

    def running(self) -> List[Experiment]:
        """The experiments that serve."""
        self._refresh()
        return self._running

    def recording(self) -> List[Experiment]:
        """The experiments whose successes are logged: running ones, and stopped ones within their
        attribution window (an action after the last impression still counts for it)."""
        self._refresh()
        return self._recording

    def assign(self, user_id: object) -> Optional[Tuple[Experiment, Arm]]:
        running = self.running()
        return assign(running, id_key(user_id)) if running else None


def is_success(experiment: Experiment, action: StoredAction) -> bool:
    if experiment.success_actions is not None:
        return (action.action_type or "") in experiment.success_actions
    return action.label >= 0.5


class SuccessRecorder:
    """The ingest consumer's sink: stored actions that count as successes for a running experiment the
    user is in go to the experiment log (keyed by event id: a redelivered batch writes them again, once)."""

    def __init__(self, experiments: RunningExperiments, log: ExperimentLog) -> None:
        self._experiments = experiments
        self._log = log

    def record(self, actions: Sequence[StoredAction]) -> None:
        for experiment in self._experiments.recording():
            # `at`: when the service accepted it, on the same clock as the impressions (a client's own
            # timestamp may be minutes off, or historic).
            found = [Success(event_id=a.event_id, user_id=id_key(a.user_id), item_id=id_key(a.item_id), at=a.accepted_at,
                             action_type=a.action_type, recommendation_id=a.recommendation_id)
                     for a in actions if in_experiment(experiment, id_key(a.user_id)) and is_success(experiment, a)]
            if found:
                self._log.record_successes(experiment.experiment_id, found)
