"""Users' live activity: each user's recent actions, readable by serving moments after they are accepted.

A model version knows the actions it trained on (its catalog); what a user did since reaches the
ranking through this store, before any weight update: the live features (artifacts/features/live.py)
read the user's recent actions from here at serving time. It is written by the API when it accepts
actions (the fast path: the next /recommend sees them) and by the ingest consumer (for actions
producers wrote to the stream directly). Each event counts once: a client's retry of an event sent
without a timestamp is accepted again at a later moment (another sort key), so reads keep one entry
per event id (the newest), as the store and the trainer keep one action per event id.

On DynamoDB: one item per action, pk "user#<id>", sk "<timestamp>#<event_id>" (a user's actions in
time order), expiring after ACTIVITY_TTL_DAYS (the table's TTL attribute `expires_at`). Entries are
`[item_id, action_type, positive]`, the shape of a catalog's user history (catalog.Catalog.users).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from easyrec_online.ingest.actions import StoredAction, id_key, parse_timestamp

Entry = List[Any]  # [item_id, action_type, positive (0/1)]


def entry_of(action: StoredAction) -> Entry:
    return [id_key(action.item_id), action.action_type or "", 1 if action.label >= 0.5 else 0]


def _sort_key(action: StoredAction) -> str:
    # ISO-8601 UTC with milliseconds (isoformat_utc) sorts as time does.
    return "{}#{}".format(action.timestamp, action.event_id)


class ActivityStore:
    def record(self, actions: Sequence[StoredAction]) -> None:
        """Add actions to their users' activity (again: no change)."""
        raise NotImplementedError

    def recent(self, user_ids: Iterable[Any], limit: int) -> Dict[str, List[Entry]]:
        """user id -> up to `limit` of their latest actions, oldest first (users without any: absent)."""
        raise NotImplementedError


class InMemoryActivityStore(ActivityStore):
    def __init__(self) -> None:
        self._by_user: Dict[str, Dict[str, Entry]] = {}
        self._lock = threading.Lock()

    def record(self, actions: Sequence[StoredAction]) -> None:
        with self._lock:
            for action in actions:
                self._by_user.setdefault(id_key(action.user_id), {})[_sort_key(action)] = entry_of(action)

    def recent(self, user_ids: Iterable[Any], limit: int) -> Dict[str, List[Entry]]:
        out: Dict[str, List[Entry]] = {}
        with self._lock:
            for user in {id_key(u) for u in user_ids}:
                found = self._by_user.get(user)
                if found:
                    newest_first = [(key, found[key]) for key in sorted(found, reverse=True)]
                    out[user] = [list(entry) for entry in once_per_event(newest_first, limit)]
        return out


def once_per_event(newest_first: Iterable[Tuple[str, Entry]], limit: int) -> List[Entry]:
    """Up to `limit` entries, oldest first, one per event id (the newest of each), from (sort key,
    entry) pairs newest first."""
    seen: set = set()
    kept: List[Entry] = []
    for key, entry in newest_first:
        event = key.split("#", 1)[-1]
        if event not in seen:
            seen.add(event)
            kept.append(entry)
            if len(kept) == limit:
                break
    kept.reverse()
    return kept


class DynamoActivityStore(ActivityStore):
    def __init__(self, dynamodb_client: Any, table: str, ttl_days: float = 30.0, max_parallel: int = 8) -> None:
        self._ddb = dynamodb_client
        self.table = table
        self._ttl_s = ttl_days * 86400.0
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="activity")

    def record(self, actions: Sequence[StoredAction]) -> None:
        requests = []
        for action in actions:
            item, action_type, positive = entry_of(action)
            expires = int(parse_timestamp(action.accepted_at).timestamp() + self._ttl_s)
            requests.append({"PutRequest": {"Item": {
                "pk": {"S": "user#" + id_key(action.user_id)}, "sk": {"S": _sort_key(action)},
                "item": {"S": item}, "type": {"S": action_type}, "pos": {"N": str(positive)},
                "expires_at": {"N": str(expires)}}}})
        chunks = [requests[start:start + 25] for start in range(0, len(requests), 25)]  # BatchWriteItem's limit
        if len(chunks) == 1:
            self._write(chunks[0])
        else:
            list(self._pool.map(self._write, chunks))  # a request of 500 actions: 20 writes at once

    def _write(self, chunk: List[Dict[str, Any]]) -> None:
        pending = {self.table: chunk}
        for attempt in range(8):
            pending = self._ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(1.0, 0.05 * 2 ** attempt))  # throttled: back off, as the SDK advises
        raise RuntimeError("DynamoDB left {} activity writes unprocessed".format(len(pending[self.table])))

    def _recent_one(self, user: str, limit: int) -> Tuple[str, List[Entry]]:
        # Only the entry's attributes: the SDK's parsing of each returned value costs the request path. A
        # few more than `limit`, for the retried events that count once.
        items = self._ddb.query(
            TableName=self.table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={
                ":pk": {"S": "user#" + user}}, ScanIndexForward=False, Limit=limit + limit // 5 + 1,
            ProjectionExpression="sk, #i, #t, #p", ExpressionAttributeNames={"#i": "item", "#t": "type", "#p": "pos"},
        ).get("Items", [])
        return user, once_per_event(((i["sk"]["S"], [i["item"]["S"], i["type"]["S"], int(i["pos"]["N"])])
                                     for i in items), limit)

    def recent(self, user_ids: Iterable[Any], limit: int) -> Dict[str, List[Entry]]:
        users = sorted({id_key(u) for u in user_ids})
        if len(users) == 1:
            found = [self._recent_one(users[0], limit)]
        else:  # one Query per user, several at a time (a /predict of many users' pairs)
            found = list(self._pool.map(lambda u: self._recent_one(u, limit), users))
        return {user: entries for user, entries in found if entries}


class CachedActivity:
    """Recent activity for scoring, cached for `ttl_s` (a burst of requests for one user reads it once).

    Short by design: an action accepted now reaches that user's next ranking within the TTL.
    """

    def __init__(self, store: ActivityStore, ttl_s: float, clock: Optional[Callable[[], float]] = None,
                 max_entries: int = 100000) -> None:
        self._store = store
        self._ttl = ttl_s
        self._clock = clock or time.monotonic
        self._max = max_entries
        self._cache: Dict[Tuple[str, int], Tuple[float, List[Entry]]] = {}
        self._lock = threading.Lock()

    def recent(self, user_ids: Iterable[Any], limit: int) -> Dict[str, List[Entry]]:
        now = self._clock()
        wanted = {id_key(u) for u in user_ids}
        out: Dict[str, List[Entry]] = {}
        missing: List[str] = []
        with self._lock:
            for user in wanted:
                hit = self._cache.get((user, limit))
                if hit is not None and now - hit[0] < self._ttl:
                    if hit[1]:
                        out[user] = hit[1]
                else:
                    missing.append(user)
        if missing:
            fetched = self._store.recent(missing, limit)
            with self._lock:
                if len(self._cache) + len(missing) > self._max:
                    self._cache.clear()
                for user in missing:
                    self._cache[(user, limit)] = (now, fetched.get(user) or [])
            out.update(fetched)
        return out
