"""GET /online/training/logs: the training task's log stream tail."""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError, query_int
from easyrec_online.state.registry import StateStore

logger = logging.getLogger(__name__)

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
                logger.exception("could not read the training logs")
                raise ApiError(503, "logs_unavailable", "could not read the training logs; try again",
                               headers={"Retry-After": "5"})
        return {"job_id": job.job_id, "status": job.status, "log_stream": stream, "count": len(events),
                "lines": [e["message"] for e in events[-lines:]]}
