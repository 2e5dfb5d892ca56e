"""Every error the service answers is JSON: {"error": <code>, "detail": <sentence>, "fields"?: [...]}.
The client raises it as ApiError, or the subclass its status names, so that callers catch what they
can act on (a BadRequest names the fields; a NoModel says to train first)."""
from typing import Dict, List, Optional, Type


class ApiError(Exception):
    """An answer of 4xx or 5xx. `error`: the service's code; `detail`: what was wrong; `fields`: where in
    the body, when fields were wrong (e.g. "samples[3].user_id")."""

    def __init__(self, status: int, error: str, detail: str, fields: Optional[List[str]] = None) -> None:
        super().__init__("{} {}: {}".format(status, error, detail))
        self.status = status
        self.error = error
        self.detail = detail
        self.fields = list(fields or [])


class BadRequest(ApiError):
    """400: the body or a parameter is wrong; `fields` says where."""


class Unauthorized(ApiError):
    """401: no API key, or an unknown one."""


class Forbidden(ApiError):
    """403: a client key on an admin route."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409: the service's state does not allow it now (a training already running, a layer full...)."""


class PayloadTooLarge(ApiError):
    """413: too many samples or too large a body for one request."""


class Throttled(ApiError):
    """429: over the usage plan's rate; retried by the client where that is safe."""


class ServerError(ApiError):
    """5xx."""


class NoModel(ServerError):
    """503 no_model: nothing is trained yet; send actions and start a training."""


_BY_STATUS: Dict[int, Type[ApiError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                         409: Conflict, 413: PayloadTooLarge, 429: Throttled}


def error_for(status: int, body: object) -> ApiError:
    """The exception for an error answer (its JSON body, or whatever came)."""
    doc = body if isinstance(body, dict) else {}
    error = str(doc.get("error") or "http_{}".format(status))
    detail = str(doc.get("detail") or doc.get("message") or body or "")
    fields = doc.get("fields") if isinstance(doc.get("fields"), list) else None
    if status == 503 and error == "no_model":
        return NoModel(status, error, detail, fields)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, error, detail, fields)
