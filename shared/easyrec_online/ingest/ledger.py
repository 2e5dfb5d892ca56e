"""The event ledger: each event id is stored (and so counted and trained) once, whatever redelivers it.

Streams redeliver (SQS at least once, Kinesis retries, a Kafka batch retried), retries regroup
records into other batches, and clients retry requests: the same event id can reach the consumer
in several batches. Before a batch is stored, the consumer claims each of its event ids for the
batch's object with a conditional write; an id another object owns is left out:

  claimed by nobody                 -> claimed for this object (a new event: counted)
  claimed for this object already   -> kept (a retry of this very batch: the object is rewritten
                                       with the same content)
  stored by another object          -> a duplicate: dropped
  claimed by another object, within
  the claim's lease                 -> in flight elsewhere: this record is retried later
  claimed by another object whose
  lease ran out, never stored       -> taken over (that consumer died between claim and store)

After the object is stored, its claims are marked stored. The lease (LEDGER_LEASE_S) is longer than
any consumer invocation may run, so a claim is only taken over from a consumer that is gone.
Entries expire after LEDGER_TTL_DAYS (the DynamoDB table's TTL), longer than any stream keeps a
record (SQS: 14 days).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Set

LEDGER_LEASE_S = 300.0
CLAIMED, STORED = "claimed", "stored"


@dataclass
class Claims:
    owned: Set[str] = field(default_factory=set)  # ids this object stores
    new: Set[str] = field(default_factory=set)  # of which first seen now (what the counters add)
    duplicates: Set[str] = field(default_factory=set)  # stored by another object: left out
    in_flight: Set[str] = field(default_factory=set)  # claimed by another consumer: retry the record later


class EventLedger:
    def _claim_one(self, event_id: str, owner: str, now: float, lease_s: float) -> str:
        """One event's claim: "new", "owned", "duplicate" or "in_flight"."""
        raise NotImplementedError

    def mark_stored(self, event_ids: Iterable[str], owner: str) -> None:
        raise NotImplementedError

    def claim(self, event_ids: Iterable[str], owner: str, now: Optional[float] = None,
              lease_s: float = LEDGER_LEASE_S) -> Claims:
        moment = time.time() if now is None else now
        claims = Claims()
        for event_id, outcome in self._claim_all(sorted(set(event_ids)), owner, moment, lease_s):
            if outcome in ("new", "owned"):
                claims.owned.add(event_id)
                if outcome == "new":
                    claims.new.add(event_id)
            elif outcome == "duplicate":
                claims.duplicates.add(event_id)
            else:
                claims.in_flight.add(event_id)
        return claims

    def _claim_all(self, event_ids: List[str], owner: str, now: float, lease_s: float) -> List[Any]:
        return [(e, self._claim_one(e, owner, now, lease_s)) for e in event_ids]


class InMemoryEventLedger(EventLedger):
    def __init__(self) -> None:
        self.entries: Dict[str, Dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _claim_one(self, event_id: str, owner: str, now: float, lease_s: float) -> str:
        with self._lock:
            entry = self.entries.get(event_id)
            if entry is None:
                self.entries[event_id] = {"owner": owner, "status": CLAIMED, "claimed_at": now}
                return "new"
            if entry["owner"] == owner:
                return "owned"
            if entry["status"] == STORED:
                return "duplicate"
            if entry["claimed_at"] + lease_s > now:
                return "in_flight"
            self.entries[event_id] = {"owner": owner, "status": CLAIMED, "claimed_at": now}
            return "owned"  # taken over: its first consumer counted it

    def mark_stored(self, event_ids: Iterable[str], owner: str) -> None:
        with self._lock:
            for event_id in event_ids:
                entry = self.entries.get(event_id)
                if entry is not None and entry["owner"] == owner:
                    entry["status"] = STORED


class DynamoEventLedger(EventLedger):
    """One item per event id (pk "event#<id>"), conditional PutItems, several at a time."""

    def __init__(self, dynamodb_client: Any, table: str, ttl_days: float = 21.0, max_parallel: int = 16) -> None:
        self._ddb = dynamodb_client
        self.table = table
        self._ttl_s = ttl_days * 86400.0
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="ledger")

    def _item(self, event_id: str, owner: str, status: str, now: float) -> Dict[str, Any]:
        return {"pk": {"S": "event#" + event_id}, "owner": {"S": owner}, "status": {"S": status},
                "claimed_at": {"N": repr(now)}, "expires_at": {"N": str(int(now + self._ttl_s))}}

    def _claim_all(self, event_ids: List[str], owner: str, now: float, lease_s: float) -> List[Any]:
        if len(event_ids) <= 1:
            return [(e, self._claim_one(e, owner, now, lease_s)) for e in event_ids]
        return list(self._pool.map(lambda e: (e, self._claim_one(e, owner, now, lease_s)), event_ids))

    def _claim_one(self, event_id: str, owner: str, now: float, lease_s: float) -> str:
        try:
            self._ddb.put_item(TableName=self.table, Item=self._item(event_id, owner, CLAIMED, now),
                               ConditionExpression="attribute_not_exists(pk)")
            return "new"
        except self._ddb.exceptions.ConditionalCheckFailedException:
            pass
        found = self._ddb.get_item(TableName=self.table, Key={"pk": {"S": "event#" + event_id}},
                                   ConsistentRead=True).get("Item")
        if found is None:  # expired meanwhile (TTL): claim it again
            return self._claim_one(event_id, owner, now, lease_s)
        if found["owner"]["S"] == owner:
            return "owned"
        if found["status"]["S"] == STORED:
            return "duplicate"
        if float(found["claimed_at"]["N"]) + lease_s > now:
            return "in_flight"
        try:  # its consumer died between claim and store: take the claim over
            self._ddb.put_item(TableName=self.table, Item=self._item(event_id, owner, CLAIMED, now),
                               ConditionExpression="#o = :old AND #s = :claimed",
                               ExpressionAttributeNames={"#o": "owner", "#s": "status"},
                               ExpressionAttributeValues={":old": found["owner"], ":claimed": {"S": CLAIMED}})
            return "owned"
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return "in_flight"  # someone else took it over first: look again on the retry

    def mark_stored(self, event_ids: Iterable[str], owner: str) -> None:
        now = time.time()
        # Only this object's claims (a takeover happens only after its consumer is long gone).
        requests = [{"PutRequest": {"Item": self._item(e, owner, STORED, now)}} for e in sorted(set(event_ids))]
        chunks = [requests[i:i + 25] for i in range(0, len(requests), 25)]
        list(self._pool.map(self._write, chunks))

    def _write(self, chunk: List[Dict[str, Any]]) -> None:
        pending: Dict[str, Any] = {self.table: chunk}
        for attempt in range(8):
            pending = self._ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(1.0, 0.05 * 2 ** attempt))
        raise RuntimeError("DynamoDB left {} ledger writes unprocessed".format(len(pending[self.table])))
