"""The local API Gateway: HTTP on port 5000 -> REST (v1) proxy events -> the declared function.

Routes come from the template's Api events. A request for an undeclared path gets 404, a declared
path with another method 405, a body over API Gateway's 10 MB limit 413 -- all as JSON errors in
the API's own shape. A function that fails (raises, times out, dies) gives 502, as API Gateway does.
"""
from __future__ import annotations

import base64
import json
import logging
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
                 stage: str) -> type:
    compiled = [(r, r.pattern()) for r in routes]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "easyrec-online-local"
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

        def _handle(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                # Read what was sent (up to a bound) so the client gets to read the answer.
                remaining = min(length, 8 * MAX_BODY_BYTES)
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                self.close_connection = True
                return self._error(413, "payload_too_large", "request body over {} bytes".format(MAX_BODY_BYTES))
            body = self.rfile.read(length) if length else b""
            path = url.path.rstrip("/") or "/"
            route, params, known = match_route(compiled, self.command, path)
            if route is None:
                if known:
                    return self._error(405, "method_not_allowed", "{} is not allowed on {}".format(self.command, path))
                return self._error(404, "not_found", "no route {} {}".format(self.command, path))
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

    return Handler


class Gateway:
    def __init__(self, routes: List[Route], invoke: Callable[[str, Dict[str, Any]], Any], host: str, port: int,
                 stage: str = "dev") -> None:
        self.server = ThreadingHTTPServer((host, port), make_handler(routes, invoke, stage))
        self.server.daemon_threads = True

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
