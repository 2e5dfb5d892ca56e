"""The local API Gateway: HTTP on port 5000 -> REST (v1) proxy events -> the declared function.

Routes come from the template's Api events, each with its auth as the template declares it (see
`Keys`). A request for an undeclared path gets 404, a declared path with another method 405, a body
over API Gateway's 10 MB limit 413; a malformed request (a bad Content-Length, a body shorter than
it says, a broken chunked body, an oversized request line or header) 400, 408, 413, 414 or 431 --
all as JSON errors in the API's own shape, `{"error", "detail"}`. A function that fails (raises,
times out, dies) gives 502, as API Gateway does. Idle or stalled connections time out
(REQUEST_TIMEOUT_S), so a slow client never holds a thread for long.
"""
from __future__ import annotations

import base64
import hmac
import json
import logging
import socket
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

from .template import Route
from .workers import InvokeError

log = logging.getLogger("gateway")

MAX_BODY_BYTES = 10 * 1024 * 1024
TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded", "application/xml")
REQUEST_TIMEOUT_S = 15.0
# What BaseHTTPRequestHandler reports itself (send_error), as the API's error codes.
_ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
                411: "length_required", 413: "payload_too_large", 414: "uri_too_long",
                431: "headers_too_large", 501: "not_implemented", 505: "http_version_not_supported"}


class Keys:
    """The template's API auth, played locally with keys from API_KEYS and ADMIN_API_KEYS (x-api-key).

      open    (no Auth)                    anyone: GET /health
      client  (Auth: ApiKeyRequired: true) a client or an admin key: ingest, recommend/predict, profiles
      admin   (Auth: Authorizer: AWS_IAM)  an admin key (deployed: SigV4-signed IAM credentials)

    Without any key configured every route is open (the local run then binds loopback only). Keys
    are compared in constant time and never logged.
    """

    def __init__(self, client_keys: List[str], admin_keys: List[str]) -> None:
        self._client = [k.encode() for k in client_keys]
        self._admin = [k.encode() for k in admin_keys]

    @property
    def enabled(self) -> bool:
        return bool(self._client or self._admin)

    @staticmethod
    def _any(candidate: bytes, keys: List[bytes]) -> bool:
        found = False
        for key in keys:  # every key compared, whichever matches: the time says nothing
            found = hmac.compare_digest(candidate, key) | found
        return found

    def check(self, auth: str, presented: Optional[str]) -> Optional[Tuple[int, str, str]]:
        """None when the request may pass, else (status, error, detail)."""
        if auth == "open" or not self.enabled:
            return None
        if not presented:
            return 401, "unauthorized", "send an API key in the x-api-key header"
        candidate = presented.encode("utf-8", "replace")
        admin = self._any(candidate, self._admin)
        client = self._any(candidate, self._client)
        if not (admin or client):
            return 401, "unauthorized", "the API key is not valid"
        if auth == "admin" and not admin:
            return 403, "forbidden", "this route needs an admin key (training control, rollback, export, operations)"
        return None


class BadRequest(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def match_route(routes: List[Tuple[Route, Any]], method: str, path: str) -> Tuple[Optional[Route], Dict[str, str], bool]:
    """(route, path parameters, path_known). path_known: some route has this path (for 405 vs 404)."""
    path_known = False
    for route, pattern in routes:
        found = pattern.match(path)
        if found:
            path_known = True
            if route.method in (method, "ANY"):
                return route, {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}, True
    return None, {}, path_known


def build_event(route: Route, method: str, raw_path: str, query: str, headers: Dict[str, List[str]],
                body: bytes, path_params: Dict[str, str], stage: str, source_ip: str) -> Dict[str, Any]:
    multi_query: Dict[str, List[str]] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        multi_query.setdefault(key, []).append(value)
    content_type = (headers.get("content-type") or [""])[0]
    is_text = not body or content_type.startswith(TEXT_TYPES)
    if is_text:
        try:
            body_text: Optional[str] = body.decode("utf-8")
        except UnicodeDecodeError:
            is_text = False
    if not is_text:
        body_text = base64.b64encode(body).decode()
    request_id = str(uuid.uuid4())
    return {
        "resource": route.path,
        "path": raw_path,
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in headers.items()},
        "multiValueHeaders": headers,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.path, "httpMethod": method, "path": "/{}{}".format(stage, raw_path),
            "stage": stage, "requestId": request_id, "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": source_ip, "userAgent": (headers.get("user-agent") or [""])[0]},
            "accountId": "123456789012", "apiId": "local",
        },
        "body": body_text if body else None,
        "isBase64Encoded": bool(body) and not is_text,
    }


def make_handler(routes: List[Route], invoke: Callable[[str, Dict[str, Any]], Any],
                 stage: str, keys: Optional[Keys] = None) -> type:
    compiled = [(r, r.pattern()) for r in routes]
    keys = keys or Keys([], [])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "easyrec-online-local"
        timeout = REQUEST_TIMEOUT_S  # on the socket: reading a request line, headers or body
        # A request line that does not parse is still answered with a status line and headers.
        default_request_version = "HTTP/1.1"
        # Buffer the response and send it in one go without Nagle's delay: headers and body as
        # separate small writes cost a delayed-ACK round trip (~40 ms) per keep-alive request.
        wbufsize = 64 * 1024
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: Any) -> None:  # access log through logging, not stderr
            log.info("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, body: bytes, headers: Dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()

        def _error(self, status: int, error: str, detail: str) -> None:
            self._send(status, json.dumps({"error": error, "detail": detail}).encode(),
                       {"Content-Type": "application/json"})

        def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
            """What the HTTP machinery itself refuses (a bad request line, an unknown method, an oversized
            header), in the API's JSON shape rather than an HTML page."""
            self.close_connection = True
            try:
                self._error(code, _ERROR_CODES.get(code, "http_error"), message or explain or "bad request")
            except OSError:
                pass

        def _read_exactly(self, length: int) -> bytes:
            chunks, remaining = [], length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    raise BadRequest(400, "bad_request", "the body is shorter than its Content-Length")
                chunks.append(chunk)
                remaining -= len(chunk)
            return b"".join(chunks)

        def _read_chunked(self) -> bytes:
            body, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest(400, "bad_request", "malformed chunked body")
                if size < 0:
                    raise BadRequest(400, "bad_request", "malformed chunked body")
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    return b"".join(body)
                total += size
                if total > MAX_BODY_BYTES:
                    raise BadRequest(413, "payload_too_large", "request body over {} bytes".format(MAX_BODY_BYTES))
                body.append(self._read_exactly(size))
                if self.rfile.readline(1024).strip():
                    raise BadRequest(400, "bad_request", "malformed chunked body")

        def _body(self) -> bytes:
            encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
            raw_length = self.headers.get("Content-Length")
            if encoding:
                if raw_length is not None:  # both: a request-smuggling shape, refused as RFC 9112 allows
                    raise BadRequest(400, "bad_request", "send Content-Length or Transfer-Encoding, not both")
                if encoding != "chunked":
                    raise BadRequest(501, "not_implemented", "Transfer-Encoding {!r} is not supported".format(encoding))
                return self._read_chunked()
            if raw_length is None or raw_length.strip() == "":
                return b""
            if not raw_length.strip().isdigit():
                raise BadRequest(400, "bad_request", "Content-Length must be a non-negative integer")
            length = int(raw_length)
            if length > MAX_BODY_BYTES:
                raise BadRequest(413, "payload_too_large", "request body over {} bytes".format(MAX_BODY_BYTES))
            return self._read_exactly(length) if length else b""

        def _handle(self) -> None:
            try:
                body = self._body()
            except BadRequest as exc:
                self.close_connection = True  # the rest of the stream cannot be trusted to be a request
                return self._error(exc.status, exc.error, exc.detail)
            except (socket.timeout, TimeoutError):
                self.close_connection = True
                return self._error(408, "request_timeout", "the request body did not arrive in time")
            url = urllib.parse.urlsplit(self.path)
            path = url.path.rstrip("/") or "/"
            route, params, known = match_route(compiled, self.command, path)
            if route is None:
                if known:
                    return self._error(405, "method_not_allowed", "{} is not allowed on {}".format(self.command, path))
                return self._error(404, "not_found", "no route {} {}".format(self.command, path[:200]))
            refused = keys.check(route.auth, self.headers.get("x-api-key"))
            if refused is not None:
                return self._error(*refused)
            headers: Dict[str, List[str]] = {}
            for key, value in self.headers.items():
                headers.setdefault(key.lower(), []).append(value)
            event = build_event(route, self.command, path, url.query, headers, body, params, stage,
                                self.client_address[0])
            try:
                result = invoke(route.function, event)
            except InvokeError as exc:
                log.error("%s failed: %s", route.function, exc)
                return self._error(502, "function_error", "{} failed: {}".format(route.function, exc.kind))
            if not isinstance(result, dict) or "statusCode" not in result:
                return self._error(502, "function_error", "{} returned no HTTP response".format(route.function))
            out_headers: Dict[str, str] = dict(result.get("headers") or {})
            for key, values in (result.get("multiValueHeaders") or {}).items():
                out_headers[key] = ", ".join(str(v) for v in values)
            payload = result.get("body") or ""
            data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
            self._send(int(result["statusCode"]), data, out_headers)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        def __getattr__(self, name: str) -> Any:
            # Any other method (TRACE, CONNECT, a made-up token) is routed too, so that it gets the API's
            # 405 or 404 JSON error, not the standard library's 501 "Unsupported method" (a 5xx).
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

    return Handler


class Gateway:
    def __init__(self, routes: List[Route], invoke: Callable[[str, Dict[str, Any]], Any], host: str, port: int,
                 stage: str = "dev", keys: Optional[Keys] = None) -> None:
        self.server = ThreadingHTTPServer((host, port), make_handler(routes, invoke, stage, keys))
        self.server.daemon_threads = True

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
