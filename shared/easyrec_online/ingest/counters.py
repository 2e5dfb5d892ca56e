"""The ingest consumer's running totals (GET /online/streaming/status reads them).

Kept in the state table through any object with `add_counts` (the state store). `stored_actions`
is exact, added once per stored object by the consumer (consumer._count_once); the others (batches,
messages, poison messages) are observability only, so a lost increment never fails, and so never
repeats, a stored batch.
"""
from __future__ import annotations

import logging
from typing import Optional

from typing_extensions import Protocol

from easyrec_online.ingest.actions import isoformat_utc, utc_now

logger = logging.getLogger(__name__)

INGEST_COUNTERS = "ingest"


class Counters(Protocol):
    def add_counts(self, name: str, stamp: str, **deltas: int) -> None: ...

    def add_counts_once(self, name: str, token: str, stamp: str, keep_s: float = ..., **deltas: int) -> bool: ...


def count_batch(counters: Optional[Counters], records: int, poison: int) -> None:
    if counters is None:
        return
    try:  # observability only: a lost increment must never fail (and so repeat) a stored batch
        counters.add_counts(INGEST_COUNTERS, isoformat_utc(utc_now()), batches=1, messages=records,
                            poison_messages=poison)
    except Exception:  # noqa: BLE001
        logger.exception("could not update the ingest counters")
