"""User and item profiles: the attributes known about them (PUT/GET /users/{id}, /items/{id}).

Like Amazon Personalize's PutUsers/PutItems or Gorse's items API: a profile is a JSON object of
attributes (age, location, category, price, ...), stored as sent and replaced as a whole by a PUT.
Profiles live in their own DynamoDB table, keyed "user#<id>" / "item#<id>", so they spread over
partitions (there may be millions) and never crowd the registry.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from easyrec_online.ingest.actions import id_key, isoformat_utc, utc_now

KINDS = ("user", "item")
MAX_PROFILE_JSON_BYTES = 16 * 1024


class ProfileStore:
    def put(self, kind: str, entity_id: str, attributes: Dict[str, Any]) -> Dict[str, Any]:
        """Store (replace) a profile; returns the stored record."""
        raise NotImplementedError

    def get(self, kind: str, entity_id: str) -> Optional[Dict[str, Any]]:
        raise NotImplementedError

    def put_many(self, kind: str, profiles: Mapping[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Store (replace) several profiles of one kind; returns the stored records in the given order."""
        return [self.put(kind, entity_id, attributes) for entity_id, attributes in profiles.items()]

    def attributes_of(self, kind: str, entity_ids: Iterable[str]) -> Dict[str, Dict[str, Any]]:
        """id -> profile attributes of those that have a profile (one round trip per 100 ids on DynamoDB)."""
        found: Dict[str, Dict[str, Any]] = {}
        for entity_id in {id_key(e) for e in entity_ids}:
            record = self.get(kind, entity_id)
            if record is not None:
                found[entity_id] = record["profile"]
        return found

    @staticmethod
    def record(kind: str, entity_id: str, attributes: Dict[str, Any]) -> Dict[str, Any]:
        if kind not in KINDS:
            raise ValueError("kind must be one of {}".format(KINDS))
        return {"{}_id".format(kind): id_key(entity_id), "profile": attributes, "updated_at": isoformat_utc(utc_now())}


class InMemoryProfileStore(ProfileStore):
    def __init__(self) -> None:
        self._records: Dict[str, str] = {}
        self._lock = threading.Lock()

    def put(self, kind: str, entity_id: str, attributes: Dict[str, Any]) -> Dict[str, Any]:
        record = self.record(kind, entity_id, attributes)
        with self._lock:
            self._records["{}#{}".format(kind, id_key(entity_id))] = json.dumps(record)
        return record

    def get(self, kind: str, entity_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            found = self._records.get("{}#{}".format(kind, id_key(entity_id)))
        return json.loads(found) if found else None


class DynamoProfileStore(ProfileStore):
    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self.table = table

    @staticmethod
    def _item(kind: str, record: Dict[str, Any]) -> Dict[str, Any]:
        return {"pk": {"S": "{}#{}".format(kind, record["{}_id".format(kind)])},
                "doc": {"S": json.dumps(record, sort_keys=True)}}

    def put(self, kind: str, entity_id: str, attributes: Dict[str, Any]) -> Dict[str, Any]:
        record = self.record(kind, entity_id, attributes)
        self._ddb.put_item(TableName=self.table, Item=self._item(kind, record))
        return record

    def put_many(self, kind: str, profiles: Mapping[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
        records = [self.record(kind, entity_id, attributes) for entity_id, attributes in profiles.items()]
        requests = [{"PutRequest": {"Item": self._item(kind, r)}} for r in records]
        for start in range(0, len(requests), 25):  # BatchWriteItem's limit
            pending = {self.table: requests[start:start + 25]}
            for attempt in range(8):
                pending = self._ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(min(1.0, 0.05 * 2 ** attempt))  # throttled: back off, as the SDK advises
            else:
                raise RuntimeError("DynamoDB left {} profile writes unprocessed".format(len(pending[self.table])))
        return records

    def get(self, kind: str, entity_id: str) -> Optional[Dict[str, Any]]:
        item = self._ddb.get_item(TableName=self.table, Key={"pk": {"S": "{}#{}".format(kind, id_key(entity_id))}},
                                  ConsistentRead=True).get("Item")
        return json.loads(item["doc"]["S"]) if item else None

    def attributes_of(self, kind: str, entity_ids: Iterable[str]) -> Dict[str, Dict[str, Any]]:
        keys: List[str] = sorted({"{}#{}".format(kind, id_key(e)) for e in entity_ids})
        found: Dict[str, Dict[str, Any]] = {}
        for start in range(0, len(keys), 100):  # BatchGetItem's limit
            request = {self.table: {"Keys": [{"pk": {"S": k}} for k in keys[start:start + 100]], "ConsistentRead": True}}
            while request:
                answer = self._ddb.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    record = json.loads(item["doc"]["S"])
                    found[record["{}_id".format(kind)]] = record["profile"]
                request = answer.get("UnprocessedKeys") or {}
        return found


class CachedProfiles:
    """Profile attributes for scoring, cached for `ttl_s` (serving reads them for every candidate).

    A profile PUT reaches the model's inputs within the TTL; entities without a profile are cached
    as empty too, so unknown candidates cost one lookup per TTL, not one per request.
    """

    def __init__(self, store: ProfileStore, ttl_s: float, clock: Any = None, max_entries: int = 200000) -> None:
        import time

        self._store = store
        self._ttl = ttl_s
        self._clock = clock or time.monotonic
        self._max = max_entries
        self._cache: Dict[str, Any] = {}  # "kind#id" -> (fetched at, attributes)
        self._lock = threading.Lock()

    def attributes_of(self, kind: str, entity_ids: Iterable[str]) -> Dict[str, Dict[str, Any]]:
        now = self._clock()
        wanted = {id_key(e) for e in entity_ids}
        found: Dict[str, Dict[str, Any]] = {}
        missing: List[str] = []
        with self._lock:
            for entity_id in wanted:
                hit = self._cache.get("{}#{}".format(kind, entity_id))
                if hit is not None and now - hit[0] < self._ttl:
                    if hit[1]:
                        found[entity_id] = hit[1]
                else:
                    missing.append(entity_id)
        if missing:
            fetched = self._store.attributes_of(kind, missing)
            with self._lock:
                if len(self._cache) + len(missing) > self._max:
                    self._cache.clear()
                for entity_id in missing:
                    self._cache["{}#{}".format(kind, entity_id)] = (now, fetched.get(entity_id) or {})
            found.update(fetched)
        return found


# What training and scoring read profiles through: a store, or a TTL cache in front of one.
ProfileSource = Union[ProfileStore, CachedProfiles]
