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
