"""DynamoDB's atomicity in moto: each item write atomic, TransactWriteItems all or nothing, cheaply.

moto applies a write as read, modify, write back, with no lock: two requests on one item at once (a
consumer's ADD to a counter and another's, two consumers' conditional claims of one event id) can
lose an increment or both pass a condition, which DynamoDB never allows. And its TransactWriteItems
backs up every table a transaction touches with copy.deepcopy, so it costs in proportion to the
table (130 ms at 3,000 items, measured in-process), and a cancelled transaction puts those copies
back, undoing whatever other requests wrote to the same tables meanwhile.

The local cloud serves requests on many threads, so `install()` makes every item write (PutItem,
UpdateItem, DeleteItem, and so BatchWriteItem's) and every transaction hold one lock, and replaces
TransactWriteItems with one that checks every condition first and writes only when all hold: a
cancelled transaction has written nothing, and the only items a transaction ever touches (or
restores, if a write itself fails) are its own. Writes are cheap next to moto's request handling, so
one lock for all tables costs little.
"""
from __future__ import annotations

import copy
import functools
import json
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

_LOCK = threading.RLock()  # re-entered: a transaction's writes go through the locked methods
_OPERATIONS = ("ConditionCheck", "Put", "Delete", "Update")


def _key(backend: Any, op_type: str, op: Dict[str, Any]) -> Dict[str, Any]:
    if op_type != "Put":
        return op["Key"]
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def transact_write_items(self: Any, transact_items: List[Dict[str, Any]]) -> None:
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    with _LOCK:
        plan: List[Tuple[str, Dict[str, Any], Dict[str, Any], Optional[Any]]] = []
        reasons: List[Tuple[Optional[str], Optional[str], Optional[Dict[str, Any]]]] = []
        seen = set()
        for entry in transact_items:
            if len(entry) != 1:
                raise TransactWriteSingleOpException
            (op_type, op), = entry.items()
            if op_type not in _OPERATIONS:
                raise MockValidationException("Unsupported transaction operation")
            key = _key(self, op_type, op)
            identity = (op["TableName"], json.dumps(key, sort_keys=True))
            if identity in seen:
                raise MultipleTransactionsException()
            seen.add(identity)
            current = self.get_item(op["TableName"], key)
            condition = op.get("ConditionExpression")
            if condition is not None and not get_filter_expression(
                    condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")).expr(current):
                old = (current.to_json()["Attributes"]
                       if current is not None and op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None)
                reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
            else:
                reasons.append((None, None, None))
            plan.append((op_type, op, key, copy.deepcopy(current)))
        if any(code is not None for code, _, _ in reasons):
            raise TransactionCanceledException(reasons)
        done: List[Tuple[str, Dict[str, Any], Optional[Any]]] = []
        try:
            for op_type, op, key, before in plan:
                name = op["TableName"]
                if op_type == "Put":
                    self.put_item(name, op["Item"])
                elif op_type == "Delete":
                    self.delete_item(name, key)
                elif op_type == "Update":
                    self.update_item(name, key, update_expression=op["UpdateExpression"],
                                     expression_attribute_names=op.get("ExpressionAttributeNames"),
                                     expression_attribute_values=op.get("ExpressionAttributeValues"))
                done.append((name, key, before))
        except Exception:
            for name, key, before in reversed(done):  # all or nothing: put back what this one changed
                if before is None:
                    self.delete_item(name, key)
                else:
                    self.put_item(name, before.to_json()["Attributes"])
            raise


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def write(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)
    write.__wrapped_by_local_cloud__ = True  # type: ignore[attr-defined]
    return write


def install() -> None:
    """Patch moto's DynamoDB backend (process-wide; idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "update_item", "delete_item"):
        method = getattr(DynamoDBBackend, name)
        if not getattr(method, "__wrapped_by_local_cloud__", False):
            setattr(DynamoDBBackend, name, _locked(method))
    DynamoDBBackend.transact_write_items = transact_write_items
