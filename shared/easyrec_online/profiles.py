"""User and item profiles: the attributes known about them (PUT/GET /users/{id}, /items/{id}).

Like Amazon Personalize's PutUsers/PutItems or Gorse's items API: a profile is a JSON object of
attributes (age, location, category, price, ...), stored as sent and replaced as a whole by a PUT.
Profiles live in their own DynamoDB table, keyed "user#<id>" / "item#<id>", so they spread over
partitions (there may be millions) and never crowd the registry.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Dict, Optional

from .actions import id_key, isoformat_utc, utc_now

KINDS = ("user", "item")
MAX_PROFILE_JSON_BYTES = 16 * 1024


class ProfileStore:
    def put(self, kind: str, entity_id: str, attributes: Dict[str, Any]) -> Dict[str, Any]:
        """Store (replace) a profile; returns the stored record."""
        raise NotImplementedError

    def get(self, kind: str, entity_id: str) -> Optional[Dict[str, Any]]:
        raise NotImplementedError

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

    def put(self, kind: str, entity_id: str, attributes: Dict[str, Any]) -> Dict[str, Any]:
        record = self.record(kind, entity_id, attributes)
        self._ddb.put_item(TableName=self.table, Item={
            "pk": {"S": "{}#{}".format(kind, id_key(entity_id))}, "doc": {"S": json.dumps(record, sort_keys=True)}})
        return record

    def get(self, kind: str, entity_id: str) -> Optional[Dict[str, Any]]:
        item = self._ddb.get_item(TableName=self.table, Key={"pk": {"S": "{}#{}".format(kind, id_key(entity_id))}},
                                  ConsistentRead=True).get("Item")
        return json.loads(item["doc"]["S"]) if item else None
