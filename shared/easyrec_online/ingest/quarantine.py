"""Stored lines the trainer cannot read, set apart with their reason (never blocking training).

Every stored line passed the same schema as at the edge, so this should stay empty; if a line is
unreadable anyway (written by hand into the bucket, by an older release), the trainer copies it to
quarantine/<the object's key> with the reason, counts it once (GET /online/streaming/status:
`quarantined`), and trains on the rest of the object.
"""
from __future__ import annotations

import json
import logging
from typing import Any, List, Optional, Tuple

from easyrec_online.ingest.actions import isoformat_utc, utc_now
from easyrec_online.ingest.counters import Counters

logger = logging.getLogger(__name__)

QUARANTINE_PREFIX = "quarantine/"
QUARANTINE_COUNTERS = "quarantine"


class S3Quarantine:
    def __init__(self, s3: Any, bucket: str, counters: Optional[Counters] = None) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._counters = counters

    def set_apart(self, key: str, unreadable: List[Tuple[int, str, str]]) -> None:
        target = QUARANTINE_PREFIX + key
        try:
            self._s3.head_object(Bucket=self._bucket, Key=target)
            return  # set apart before (another trainer, an earlier run): counted then
        except Exception:  # noqa: BLE001 - not there yet
            pass
        lines = [json.dumps({"source": key, "line": number, "reason": reason, "text": text})
                 for number, reason, text in unreadable]
        self._s3.put_object(Bucket=self._bucket, Key=target, Body=("\n".join(lines) + "\n").encode())
        logger.error("quarantined %d unreadable lines of %s: %s", len(lines), key, unreadable[0][1][:200])
        if self._counters is not None:
            try:
                self._counters.add_counts(QUARANTINE_COUNTERS, isoformat_utc(utc_now()), lines=len(lines), objects=1)
            except Exception:  # noqa: BLE001 - observability only
                logger.exception("could not count quarantined lines")
