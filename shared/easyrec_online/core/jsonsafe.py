"""Limits on client JSON: what is accepted must be storable, trainable and servable, everywhere.

Python's json module accepts what the rest of the service cannot carry: NaN and Infinity (invalid
JSON when echoed back), integers of any size (10**400 overflows every float conversion), nesting
deep enough to exhaust the interpreter's recursion, and strings with lone surrogates (they cannot
be encoded as UTF-8, so S3, DynamoDB and the trainer's reader fail on them). These checks refuse
them at the edge, with the path of the offending value, and the same checks run wherever an action
or a profile is read back (ingest/actions.py), so nothing accepted can break training later.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, List, Optional, Tuple, Union

MAX_BODY_DEPTH = 32  # a request body, overall
MAX_VALUE_DEPTH = 8  # parameters and profiles: objects and lists inside them
MAX_NUMBER = 1e15  # |x| of any number in parameters and profiles (integers beyond 2**53 lose precision)
MAX_ID_INT = 2 ** 63 - 1  # integer ids
MAX_KEY_LENGTH = 128  # object keys in parameters and profiles

_BAD_TEXT = re.compile("[\ud800-\udfff\x00]")  # lone surrogates (not encodable as UTF-8) and NUL


class JsonLimitError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__("{}: {}".format(path, message) if path else message)
        self.path = path
        self.message = message


def _refuse_constant(name: str) -> Any:
    raise ValueError("{} is not JSON (numbers must be finite)".format(name))


def loads(raw: Union[str, bytes]) -> Any:
    """json.loads, refusing NaN/Infinity and nesting past MAX_BODY_DEPTH (ValueError)."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested deeper than {} levels".format(MAX_BODY_DEPTH))
    # Nesting needs an opening bracket per level: a body with few (a list of 1000 candidate ids has
    # one) cannot nest too deeply, and is not walked value by value.
    brackets = raw.count(b"[") + raw.count(b"{") if isinstance(raw, (bytes, bytearray)) else raw.count("[") + raw.count("{")
    depth = nesting(value, MAX_BODY_DEPTH + 1) if brackets > MAX_BODY_DEPTH else 0
    if depth > MAX_BODY_DEPTH:
        raise ValueError("nested deeper than {} levels".format(MAX_BODY_DEPTH))
    return value


def nesting(value: Any, stop: int) -> int:
    """How deeply objects and lists nest in `value` (a scalar: 0), counting no further than `stop`."""
    deepest = 0
    stack: List[Tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            depth += 1
            deepest = max(deepest, depth)
            if deepest >= stop:
                return deepest
            stack.extend((child, depth) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def bad_text(text: str) -> Optional[str]:
    """Why a string cannot be stored, or None."""
    found = _BAD_TEXT.search(text)
    if found is None:
        return None
    return "contains a NUL character" if found.group() == "\x00" else "contains a lone surrogate (not UTF-8)"


def check_value(value: Any, path: str = "", max_depth: int = MAX_VALUE_DEPTH) -> None:
    """Refuse (JsonLimitError naming the path) what parameters and profiles may not hold."""
    stack: List[Tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, dict):
            if depth >= max_depth:
                raise JsonLimitError(where, "nested deeper than {} levels".format(max_depth))
            for key, child in node.items():
                if not isinstance(key, str):
                    raise JsonLimitError(where, "object keys must be strings")
                if len(key) > MAX_KEY_LENGTH or bad_text(key):
                    raise JsonLimitError(where, "key {!r}: {}".format(key[:40], bad_text(key) or
                                                                        "longer than {} characters".format(MAX_KEY_LENGTH)))
                stack.append((child, "{}.{}".format(where, key) if where else key, depth + 1))
        elif isinstance(node, list):
            if depth >= max_depth:
                raise JsonLimitError(where, "nested deeper than {} levels".format(max_depth))
            stack.extend((child, "{}[{}]".format(where, i), depth + 1) for i, child in enumerate(node))
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, (int, float)):
            if isinstance(node, float) and not math.isfinite(node):
                raise JsonLimitError(where, "numbers must be finite")
            if abs(node) > MAX_NUMBER:
                raise JsonLimitError(where, "numbers must be between -{0:g} and {0:g}".format(MAX_NUMBER))
        elif isinstance(node, str):
            reason = bad_text(node)
            if reason:
                raise JsonLimitError(where, reason)
        else:
            raise JsonLimitError(where, "not a JSON value")
