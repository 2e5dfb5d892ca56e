"""The event ledger: each event id is stored (and so counted and trained) once, whatever redelivers it.

Streams redeliver (SQS at least once, Kinesis retries, a Kafka batch retried), retries regroup
records into other batches, and clients retry requests: the same event id can reach the consumer
in several batches. Before a batch is stored, the consumer claims each of its event ids for the
batch's object with a conditional write; an id another object owns is left out:

  claimed by nobody                    -> claimed for this object (a new event: counted)
  claimed for this object already      -> kept (a retry of this very batch: the object is rewritten
                                          with the same content)
  claimed by an object that is stored  -> a duplicate: dropped
  claimed by an object not stored yet,
  within the claim's lease             -> in flight elsewhere: this record is retried later
  ... whose lease ran out              -> taken over (that consumer died between claim and store)

The lease (LEDGER_LEASE_S) is longer than any consumer invocation may run, so a claim is only taken
over from a consumer that is gone. Whether an owner's object is stored is asked of the store
(`stored(key)`), and only for the rare conflicting ids, once per owner. Entries expire after
LEDGER_TTL_DAYS (the DynamoDB table's TTL), longer than any stream keeps a record (SQS: 14 days).
Existing claims are read in batches first (a redelivered batch costs a read per 100 ids), and only
ids seen nowhere are written, a hundred conditional puts per transaction.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

LEDGER_LEASE_S = 300.0
TRANSACTION_ITEMS = 100  # DynamoDB's limit of items per TransactWriteItems
CONFLICT_RETRIES = 8


@dataclass
class Claims:
    owned: Set[str] = field(default_factory=set)  # ids this object stores
    new: Set[str] = field(default_factory=set)  # of which first seen now (what the counters add)
    duplicates: Set[str] = field(default_factory=set)  # stored by another object: left out
    in_flight: Set[str] = field(default_factory=set)  # claimed by another consumer: retry the record later
    stored_owners: Set[str] = field(default_factory=set)  # the stored objects that own the duplicates


class EventLedger:
    def _existing(self, event_ids: List[str]) -> Dict[str, Dict[str, Any]]:
        """event id -> its entry ({"owner", "claimed_at"}) for the ids claimed already."""
        raise NotImplementedError

    def _put_new(self, event_ids: List[str], owner: str, now: float) -> Dict[str, Dict[str, Any]]:
        """Claim ids nobody holds; returns the entries that won the race for the ids not claimed."""
        raise NotImplementedError

    def _take_over(self, event_id: str, owner: str, old: Dict[str, Any], now: float) -> bool:
        """Claim an id from `old` (conditional on it still holding it)."""
        raise NotImplementedError

    def claim(self, event_ids: Iterable[str], owner: str, stored: Callable[[str], bool],
              now: Optional[float] = None, lease_s: float = LEDGER_LEASE_S) -> Claims:
        """Claim the ids for object `owner`; `stored(key)` says whether another owner's object exists."""
        moment = time.time() if now is None else now
        ids = sorted(set(event_ids))
        existing = self._existing(ids)
        fresh = [e for e in ids if e not in existing]
        existing.update(self._put_new(fresh, owner, moment) if fresh else {})
        known: Dict[str, bool] = {}  # owner key -> its object is stored
        claims = Claims()

        def outcome(event_id: str) -> str:
            entry = existing.get(event_id)
            if entry is None:
                return "new"
            if entry["owner"] == owner:
                return "owned"
            if entry["owner"] not in known:
                known[entry["owner"]] = stored(entry["owner"])
            if known[entry["owner"]]:
                claims.stored_owners.add(entry["owner"])
                return "duplicate"
            if float(entry["claimed_at"]) + lease_s > moment:
                return "in_flight"
            return "owned" if self._take_over(event_id, owner, entry, moment) else "in_flight"

        for event_id in ids:
            result = outcome(event_id)
            if result in ("new", "owned"):
                claims.owned.add(event_id)
                if result == "new":
                    claims.new.add(event_id)
            elif result == "duplicate":
                claims.duplicates.add(event_id)
            else:
                claims.in_flight.add(event_id)
        return claims


class InMemoryEventLedger(EventLedger):
    def __init__(self) -> None:
        self.entries: Dict[str, Dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _existing(self, event_ids: List[str]) -> Dict[str, Dict[str, Any]]:
        with self._lock:
            return {e: dict(self.entries[e]) for e in event_ids if e in self.entries}

    def _put_new(self, event_ids: List[str], owner: str, now: float) -> Dict[str, Dict[str, Any]]:
        lost: Dict[str, Dict[str, Any]] = {}
        with self._lock:
            for event_id in event_ids:
                if event_id in self.entries:
                    lost[event_id] = dict(self.entries[event_id])
                else:
                    self.entries[event_id] = {"owner": owner, "claimed_at": now}
        return lost

    def _take_over(self, event_id: str, owner: str, old: Dict[str, Any], now: float) -> bool:
        with self._lock:
            if self.entries.get(event_id, {}).get("owner") != old["owner"]:
                return False
            self.entries[event_id] = {"owner": owner, "claimed_at": now}
            return True


class DynamoEventLedger(EventLedger):
    """One item per event id (pk "event#<id>"): batched reads, transactions of conditional puts."""

    def __init__(self, dynamodb_client: Any, table: str, ttl_days: float = 21.0, max_parallel: int = 4) -> None:
        self._ddb = dynamodb_client
        self.table = table
        self._ttl_s = ttl_days * 86400.0
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="ledger")

    def _item(self, event_id: str, owner: str, now: float) -> Dict[str, Any]:
        return {"pk": {"S": "event#" + event_id}, "owner": {"S": owner}, "claimed_at": {"N": repr(now)},
                "expires_at": {"N": str(int(now + self._ttl_s))}}

    @staticmethod
    def _entry(item: Dict[str, Any]) -> Dict[str, Any]:
        return {"owner": item["owner"]["S"], "claimed_at": float(item["claimed_at"]["N"])}

    def _existing(self, event_ids: List[str]) -> Dict[str, Dict[str, Any]]:
        found: Dict[str, Dict[str, Any]] = {}
        for start in range(0, len(event_ids), 100):  # BatchGetItem's limit
            request = {self.table: {"Keys": [{"pk": {"S": "event#" + e}} for e in event_ids[start:start + 100]],
                                    "ConsistentRead": True}}
            while request:
                answer = self._ddb.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    found[item["pk"]["S"][len("event#"):]] = self._entry(item)
                request = answer.get("UnprocessedKeys") or {}
        return found

    def _put_new(self, event_ids: List[str], owner: str, now: float) -> Dict[str, Dict[str, Any]]:
        # Up to 100 conditional puts in one TransactWriteItems (several at a time): one round trip a
        # hundred claims, where single PutItems cost one each (a batch of 2,000 events took 2,000
        # requests; locally that capped storing at ~200 actions/s). A transaction is all or nothing,
        # so when some ids were claimed meanwhile (its cancellation reasons say which, with their
        # entries), the others are claimed again without them. It costs two write units an item.
        chunks = [event_ids[start:start + TRANSACTION_ITEMS] for start in range(0, len(event_ids), TRANSACTION_ITEMS)]
        lost: Dict[str, Dict[str, Any]] = {}
        for found in self._pool.map(lambda chunk: self._put_chunk(chunk, owner, now), chunks):
            lost.update(found)
        return lost

    def _put_chunk(self, event_ids: List[str], owner: str, now: float) -> Dict[str, Dict[str, Any]]:
        lost: Dict[str, Dict[str, Any]] = {}
        pending, conflicts = list(event_ids), 0
        while pending:
            try:
                self._ddb.transact_write_items(TransactItems=[{"Put": {
                    "TableName": self.table, "Item": self._item(e, owner, now),
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}} for e in pending])
                return lost
            except self._ddb.exceptions.TransactionCanceledException as error:
                reasons = error.response.get("CancellationReasons") or []
                taken = [(e, r.get("Item")) for e, r in zip(pending, reasons) if r.get("Code") == "ConditionalCheckFailed"]
                if not taken:  # a concurrent transaction on one of the items (TransactionConflict): again
                    conflicts += 1
                    if conflicts > CONFLICT_RETRIES:
                        raise
                    time.sleep(min(0.01 * 2 ** conflicts, 0.5))
                    continue
                unread = [e for e, item in taken if not item]
                entries = self._existing(unread) if unread else {}
                for event_id, item in taken:
                    entry = self._entry(item) if item else entries.get(event_id)
                    if entry is not None:  # else it expired in between: claim it afresh
                        lost[event_id] = entry
                pending = [e for e in pending if e not in lost]
        return lost

    def _take_over(self, event_id: str, owner: str, old: Dict[str, Any], now: float) -> bool:
        try:
            self._ddb.put_item(TableName=self.table, Item=self._item(event_id, owner, now),
                               ConditionExpression="#o = :old", ExpressionAttributeNames={"#o": "owner"},
                               ExpressionAttributeValues={":old": {"S": old["owner"]}})
            return True
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
