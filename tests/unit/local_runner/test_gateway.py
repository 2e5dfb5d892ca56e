import base64

from infra.local_runner.gateway import build_event, match_route
from infra.local_runner.template import Route

ROUTES = [Route("GET", "/health", "Api"), Route("PUT", "/users/{id}", "Api"), Route("GET", "/users/{id}", "Api")]
COMPILED = [(r, r.pattern()) for r in ROUTES]


def test_matching_with_path_parameters_and_405_detection():
    route, params, _ = match_route(COMPILED, "PUT", "/users/a%20b")
    assert route.path == "/users/{id}" and route.method == "PUT" and params == {"id": "a b"}
    assert match_route(COMPILED, "DELETE", "/health") == (None, {}, True)
    assert match_route(COMPILED, "GET", "/nope") == (None, {}, False)


def test_rest_v1_proxy_event_shape():
    event = build_event(ROUTES[1], "PUT", "/users/7", "a=1&a=2&b=", {"content-type": ["application/json"]},
                        b'{"x": 1}', {"id": "7"}, "dev", "127.0.0.1")
    assert event["resource"] == "/users/{id}" and event["requestContext"]["resourcePath"] == "/users/{id}"
    assert event["pathParameters"] == {"id": "7"} and event["body"] == '{"x": 1}' and not event["isBase64Encoded"]
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert event["queryStringParameters"]["a"] == "2"


def test_binary_bodies_are_base64():
    event = build_event(ROUTES[0], "GET", "/health", "", {"content-type": ["application/octet-stream"]},
                        b"\xff\x00", {}, "dev", "127.0.0.1")
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == b"\xff\x00"


import json  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402

import pytest  # noqa: E402

from infra.local_runner import gateway as gateway_module  # noqa: E402
from infra.local_runner.gateway import Gateway, Keys  # noqa: E402

ECHO_ROUTES = [Route("GET", "/health", "Api"), Route("POST", "/online/data/add", "Api", "client"),
               Route("POST", "/online/training/start", "Api", "admin")]


@pytest.fixture
def served(monkeypatch):
    """A gateway on a free port whose function echoes the body it got (the local function workers are
    tested with the real functions in tests/e2e)."""
    monkeypatch.setattr(gateway_module, "REQUEST_TIMEOUT_S", 1.0)
    calls = []

    def invoke(function, event):
        calls.append(event)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"body": event["body"]})}

    def start(keys=None):
        gw = Gateway(ECHO_ROUTES, invoke, "127.0.0.1", 0, keys=keys)
        threading.Thread(target=gw.serve_forever, daemon=True).start()
        started.append(gw)
        return gw.server.server_address[1]

    started = []
    yield start, calls
    for gw in started:
        gw.shutdown()


def _raw(port, data, read_all=True):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_all:
                break
    return b"".join(chunks)


def _responses(raw):
    """(status, JSON body) of each HTTP response in `raw`."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int([line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
        out.append((status, json.loads(rest[:length])))
        raw = rest[length:]
    return out


@pytest.mark.parametrize("request_bytes,status,error", [
    (b"POST /online/data/add HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}", 400, "bad_request"),
    (b"POST /online/data/add HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}", 400, "bad_request"),
    (b"POST /online/data/add HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{}", 408, "request_timeout"),
    (b"POST /online/data/add HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}", 400,
     "bad_request"),
    (b"POST /online/data/add HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400,
     "bad_request"),
    (b"BREW /health HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),  # a 4xx, never the stdlib's 501
    (b"TRACE /online/data/add HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    (b"TRACE /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
    (b"DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
])
def test_malformed_requests_get_a_json_error_never_a_hang_or_html(served, request_bytes, status, error):
    start, calls = served
    (got_status, body), = _responses(_raw(start(), request_bytes))
    assert (got_status, body["error"]) == (status, error) and body["detail"]
    assert calls == []


def test_a_chunked_body_is_read_as_the_body_and_never_as_a_second_request(served):
    start, calls = served
    raw = (b"POST /online/data/add HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json"
           b"\r\nConnection: close\r\n\r\n4\r\n{\"a\"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n")
    (status, body), = _responses(_raw(start(), raw))
    assert status == 200 and body == {"body": '{"a": 1}'} and len(calls) == 1


def test_keys_from_the_template_roles_401_403_and_open_health(served):
    start, calls = served
    port = start(Keys(["client-key"], ["admin-key"]))

    def call(path, key=None):
        headers = b"x-api-key: " + key.encode() + b"\r\n" if key else b""
        method = b"GET" if path == "/health" else b"POST"
        raw = method + b" " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n" + \
            headers + b"\r\n{}"
        (status, body), = _responses(_raw(port, raw))
        return status, body.get("error")

    assert call("/health") == (200, None)
    assert call("/online/data/add") == (401, "unauthorized")
    assert call("/online/data/add", "guess") == (401, "unauthorized")
    assert call("/online/data/add", "client-key") == (200, None)
    assert call("/online/training/start", "client-key") == (403, "forbidden")
    assert call("/online/training/start", "admin-key") == (200, None)
    assert call("/online/data/add", "admin-key") == (200, None)  # an admin may do what a client may


def test_without_keys_everything_is_open_and_the_runner_refuses_a_public_host(tmp_path):
    assert Keys([], []).check("admin", None) is None
    from infra.local_runner.__main__ import LocalRunner, parse_args

    with pytest.raises(SystemExit, match="without API keys"):
        LocalRunner(parse_args(["--host", "0.0.0.0", "--state-dir", str(tmp_path)]))
