"""HTTP edge helpers shared by the Chalice apps: one error shape, JSON parsing, validation.

Every error the API returns is `{"error": <code>, "detail": <human sentence>}` (plus `fields` when
input validation names fields). Handlers raise `ApiError`; `json_route` turns it into a response.
"""
from __future__ import annotations

import functools
import json
import logging
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar

from chalice import Response
from pydantic import BaseModel, ValidationError

logger = logging.getLogger(__name__)

# Clients send JSON; curl without -H sends form-urlencoded. Accept both content types on the wire
# and parse the body as JSON either way, so the answer is our JSON error, not a framework's 415.
JSON_CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain"]

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, fields: Optional[List[str]] = None,
                 headers: Optional[Dict[str, str]] = None):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.fields = fields
        self.headers = headers or {}

    def body(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"error": self.error, "detail": self.detail}
        if self.fields:
            body["fields"] = self.fields
        return body


def json_response(body: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> Response:
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return Response(body=json.dumps(body), status_code=status, headers=all_headers)


def query_int(raw: Optional[str], field: str, default: int, maximum: int) -> int:
    """An integer query-string parameter between 1 and `maximum` (absent: `default`), else a 400."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise ApiError(400, "invalid_request", "{}: an integer between 1 and {}".format(field, maximum), [field])
    return value


def parse_json_body(raw_body: Optional[bytes]) -> Any:
    if not raw_body:
        raise ApiError(400, "invalid_json", "request body is empty; send a JSON object")
    try:
        return json.loads(raw_body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", "request body is not valid JSON: {}".format(exc))


# Parts of a pydantic error location that name a union branch or validator, not a field.
_BRANCH_TAGS = ("int", "str", "float", "bool")


def _field_path(loc: Any) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += "[{}]".format(part)
        elif part in _BRANCH_TAGS or "[" in part or part.startswith("constrained-"):
            continue
        else:
            path += ("." if path else "") + str(part)
    return path or "body"


def validate(model: Type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "request body must be a JSON object", ["body"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems: Dict[str, str] = {}
        for err in exc.errors():
            path = _field_path(err.get("loc", ()))
            if path not in problems:  # a union reports once per branch; the first says enough
                message = err.get("msg", "invalid")
                if message.startswith("Value error, "):
                    message = message[len("Value error, "):]
                if err.get("type") == "extra_forbidden":
                    message = "unknown field (put extra details in `parameters`)"
                problems[path] = message
        detail = "; ".join("{}: {}".format(path, message) for path, message in problems.items())
        raise ApiError(400, "invalid_request", detail, list(problems))


def json_route(fn: Callable[..., Any]) -> Callable[..., Response]:
    """Wrap a route: ApiError -> its JSON error; anything unexpected -> 500 JSON, logged."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            result = fn(*args, **kwargs)
        except ApiError as exc:
            return json_response(exc.body(), exc.status, exc.headers)
        except Exception:  # noqa: BLE001 - the last line of defence must catch everything
            logger.exception("unhandled error in %s", fn.__name__)
            return json_response({"error": "internal_error", "detail": "unexpected server error; see logs"}, 500)
        if isinstance(result, Response):
            return result
        return json_response(result)

    return wrapper
