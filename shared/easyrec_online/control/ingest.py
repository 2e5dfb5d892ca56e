"""POST /online/data/add: validated samples become stored actions on the stream."""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError
from easyrec_online.ingest.actions import AddDataRequest, StoredAction, isoformat_utc, utc_now
from easyrec_online.ingest.labels import LabelRuleError, check_rules
from easyrec_online.ingest.publishers import ActionPublisher, PublishError
from easyrec_online.state.activity import ActivityStore

logger = logging.getLogger(__name__)


class IngestService:
    def __init__(self, settings: Settings, publisher: ActionPublisher, activity: Optional[ActivityStore] = None) -> None:
        self._settings = settings
        self._publisher = publisher
        # Users' live activity: written once the stream took the actions, so the next ranking sees them
        # (the consumer writes them too; both writes are idempotent).
        self._activity = activity
        self._label_rules = check_rules(settings.label_rules)  # a bad LABEL_RULES fails the cold start

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
                actions.append(StoredAction.accept(sample, now, self._label_rules))
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
        if self._activity is not None:
            try:
                self._activity.record(actions)
            except Exception:  # noqa: BLE001 - accepted is accepted: the consumer records them as well
                logger.exception("could not record %d accepted actions in the live activity", len(actions))
        return {
            "status": "accepted",
            "accepted": len(actions),
            "event_ids": [a.event_id for a in actions],
            "accepted_at": isoformat_utc(now),
        }
