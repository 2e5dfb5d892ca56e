"""DynamoDB's Query in moto at DynamoDB's cost: one partition read, and its answer written as JSON.

The live activity table holds every action of the last ACTIVITY_TTL_DAYS, and serving queries one
user's partition (their last LIVE_HISTORY actions) for each ranking, every ACTIVITY_CACHE_TTL_MS.
moto made each of those queries cost the local run more than the ranking itself, measured under a
/recommend loop at 1000 candidates over 3,000 actions (py-spy, and each request timed in the local
cloud's middleware):
  - it answers a Query on a table's own key by sorting every item of the table (`Table.all_items`)
    and keeping the partition's: a cost in proportion to the table, not to the answer;
  - its response serializer then walks the operation's shape item by item: 95 ms (median) for a
    50-item, 10 KB answer, against 2 ms for a GetItem.
`install()` runs such a Query on a shallow view of the table holding only the asked partition (the
same code, the same answer), and writes Query's and Scan's answers with json.dumps: their results
are already DynamoDB's wire form, {type: value} per attribute, binary values as bytes that the wire
carries as base64. A result holding anything else goes through moto's serializer, as before.
Queries on an index keep moto's path (their partitions are not stored apart).
"""
from __future__ import annotations

import base64
import copy
import functools
import json
from typing import Any, Callable

_QUERY_INDEX_NAME_POSITION = 7  # Table.query(hash_key, range_comparison, range_objs, limit,
#                                  exclusive_start_key, scan_index_forward, projection_expressions, index_name)


def _partition_query(query: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(query)
    def partition_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[_QUERY_INDEX_NAME_POSITION - 1]
                                if len(args) >= _QUERY_INDEX_NAME_POSITION else None)
        if index_name or hash_key is None or not self.range_key_attr:
            return query(self, hash_key, *args, **kwargs)
        view = copy.copy(self)  # shallow: the same table but for `items`
        # dict(...) is one step under the GIL: a concurrent write to the partition cannot change it
        # mid-iteration. `in` first: self.items is a defaultdict, and a read must not add a partition.
        view.items = {hash_key: dict(self.items[hash_key])} if hash_key in self.items else {}
        return query(view, hash_key, *args, **kwargs)

    partition_query.__wrapped_by_local_cloud__ = True  # type: ignore[attr-defined]
    return partition_query


def _wire(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError("not DynamoDB's wire form: {!r}".format(type(value)))


def _json_answer(handler_method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(handler_method)
    def json_answer(self: Any) -> Any:
        from moto.core.responses import ActionResult

        result = handler_method(self)
        if isinstance(result, ActionResult) and isinstance(result.result, dict):
            try:
                return json.dumps(result.result, default=_wire)  # moto answers a str as a 200 body
            except TypeError:
                pass
        return result

    json_answer.__wrapped_by_local_cloud__ = True  # type: ignore[attr-defined]
    return json_answer


def install() -> None:
    """Patch moto's DynamoDB (process-wide; idempotent)."""
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    if not getattr(Table.query, "__wrapped_by_local_cloud__", False):
        Table.query = _partition_query(Table.query)
    for name in ("query", "scan"):
        method = getattr(DynamoHandler, name)
        if not getattr(method, "__wrapped_by_local_cloud__", False):
            setattr(DynamoHandler, name, _json_answer(method))
