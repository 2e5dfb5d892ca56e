"""HTTP edge helpers shared by the Chalice apps: one error shape, JSON parsing, validation.

Every error the API returns is `{"error": <code>, "detail": <human sentence>}` (plus `fields` when
input validation names fields). Handlers raise `ApiError`; `json_route` turns it into a response.
"""
from __future__ import annotations

import functools
import json
import logging
import re
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar

from chalice import Response
from pydantic import BaseModel, ValidationError

from easyrec_online.core import jsonsafe

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
        return jsonsafe.loads(raw_body)
    except (ValueError, UnicodeDecodeError) as exc:  # about the client's bytes only
        raise ApiError(400, "invalid_json", "request body is not valid JSON: {}".format(str(exc)[:200]))


# Parts of a pydantic error location that name a union branch or validator, not a field.
_BRANCH_TAGS = {"int": "an integer", "str": "a string", "constrained-str": "a string", "constrained-int": "an integer",
                "float": "a number", "constrained-float": "a number", "bool": "a boolean"}


def _is_branch(part: Any) -> bool:
    return isinstance(part, str) and (part in _BRANCH_TAGS or "[" in part or part.startswith("constrained-"))


def _field_path(loc: Any) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += "[{}]".format(part)
        elif _is_branch(part):
            continue
        else:
            path += ("." if path else "") + str(part)
    return path or "body"


def _message(err: Dict[str, Any]) -> str:
    kind, message = err.get("type", ""), err.get("msg", "invalid")
    if kind == "extra_forbidden":
        return "unknown field (put extra details in `parameters`)"
    if kind == "string_pattern_mismatch":
        return "must not be blank"
    if message.startswith("Value error, "):
        return message[len("Value error, "):]
    return message


def _union_message(errors: List[Dict[str, Any]]) -> str:
    """One sentence for a value no branch of a union accepted (pydantic reports once per branch).

    A branch whose type matched but whose constraint failed says most ("String should have at most
    256 characters"); when no branch's type matched: "must be an integer or a string".
    """
    for err in errors:
        if not err.get("type", "").endswith("_type"):
            return _message(err)
    names: List[str] = []
    for err in errors:
        name = _BRANCH_TAGS.get(err["loc"][-1], str(err["loc"][-1]))
        if name not in names:
            names.append(name)
    return "must be " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])


def validate(model: Type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "request body must be a JSON object", ["body"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        by_path: Dict[str, List[Dict[str, Any]]] = {}
        for err in exc.errors():
            by_path.setdefault(_field_path(err.get("loc", ())), []).append(err)
        problems: Dict[str, str] = {}
        for path, errors in by_path.items():
            branches = [e for e in errors if e.get("loc") and _is_branch(e["loc"][-1])]
            problems[path] = _union_message(branches) if len(branches) == len(errors) else _message(errors[0])
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


def _snake(code: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", code).lower().replace("_error", "") or "error"


def json_errors(event: Any, get_response: Callable[[Any], Response]) -> Response:
    """Chalice middleware: the framework's own refusals (415 for a Content-Type a route does not take,
    405, 500) answer in the API's error shape too, {"error", "detail"}, not Chalice's {"Code", "Message"}."""
    response = get_response(event)
    if response.status_code < 400:
        return response
    try:
        body = json.loads(response.body) if isinstance(response.body, (str, bytes)) else response.body
    except ValueError:
        return response
    if isinstance(body, dict) and set(body) == {"Code", "Message"}:
        detail = body["Message"]
        if response.status_code == 415:
            detail += "; send Content-Type: application/json"
        response.body = json.dumps({"error": _snake(str(body["Code"])), "detail": detail})
        response.headers = dict(response.headers or {}, **{"Content-Type": "application/json"})
    return response
