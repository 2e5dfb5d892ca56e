"""No input breaks the API: property-based requests against every route of the real API function (its
Chalice app, on the local cloud), zero 5xx, every error in the `{"error", "detail"}` shape.

Bodies are arbitrary JSON (deeply nested, huge numbers, lone surrogates, NaN text), arbitrary bytes,
and near-valid samples with one field broken; paths carry arbitrary ids; query strings arbitrary
values; Content-Types arbitrary. Whatever /online/data/add accepts must also be readable by the
trainer's schema (StoredAction) -- checked on every accepted sample.
"""
import importlib.util
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from easyrec_online.ingest.actions import StoredAction
from tests.conftest import ROOT
from tests.integration.conftest import BACKEND, make_cloud

ROUTES = [("GET", "/health"), ("GET", "/model/info"), ("POST", "/model/rollback"), ("POST", "/model/export"),
          ("POST", "/model/unpin"), ("POST", "/online/data/add"), ("GET", "/online/training/status"),
          ("POST", "/online/training/start"), ("POST", "/online/training/stop"),
          ("PATCH", "/online/training/restart-policy"), ("GET", "/online/training/logs"),
          ("GET", "/online/updates/list"), ("GET", "/online/streaming/status"),
          ("POST", "/online/streaming/consume"), ("PUT", "/users/{id}"), ("GET", "/users/{id}"), ("POST", "/users"),
          ("PUT", "/items/{id}"), ("GET", "/items/{id}"), ("POST", "/items")]
# Training starts would launch ECS tasks: the fuzz keeps to what answers without one.
NO_TASKS = {"CONTINUOUS_TRAINING": "false"}


@pytest.fixture(scope="module")
def api(moto_endpoint):
    from chalice.test import Client

    from easyrec_online.core import aws

    if BACKEND == "localstack":
        pytest.skip("LocalStack's community edition does not emulate ECS, which the training routes call: "
                    "the fuzz (about the API's input handling, not the backend) runs on the moto backend")
    cloud = make_cloud(moto_endpoint, **NO_TASKS)
    # An ECS cluster and task definition on moto: a training start launches a (moto) task, as on AWS.
    ecs = aws.client("ecs", cloud)
    ecs.create_cluster(clusterName="fuzz")
    ecs.register_task_definition(family="fuzz-trainer", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                                 cpu="256", memory="512", containerDefinitions=[{"name": "trainer", "image": "x", "cpu": 256, "memory": 512}])
    ec2 = aws.client("ec2", cloud)
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:1]
    groups = [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]][:1]
    old = dict(os.environ)
    os.environ.update(cloud.as_env())
    os.environ.update({"TRAINING_CLUSTER": "fuzz", "TRAINING_TASK_DEFINITION": "fuzz-trainer",
                       "TRAINING_SUBNETS": ",".join(subnets), "TRAINING_SECURITY_GROUPS": ",".join(groups)})
    try:
        spec = importlib.util.spec_from_file_location("fuzzed_api_app", os.path.join(ROOT, "functions", "api", "app.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with Client(module.app) as client:
            yield client, cloud
    finally:
        os.environ.clear()
        os.environ.update(old)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 40), max_value=10 ** 40),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                      st.sampled_from(["\ud800", "\x00", "9999-12-31T23:59:59-14:00", "NaN", ""]))
json_value = st.recursive(json_leaf, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)), max_leaves=20)
sample_field = st.sampled_from(["user_id", "item_id", "label", "action_type", "parameters", "event_id", "timestamp",
                                "extra"])
good_sample = {"user_id": 1, "item_id": "a", "label": 1, "action_type": "purchase", "parameters": {"x": 1}}


@st.composite
def bodies(draw):
    kind = draw(st.sampled_from(["json", "bytes", "sample", "deep", "nan"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "deep":
        depth = draw(st.sampled_from([40, 400, 5000]))
        return ("[" * depth + "]" * depth).encode() if draw(st.booleans()) else \
            ('{"samples": [{"user_id": 1, "item_id": 1, "label": 1, "parameters": ' + '{"a": ' * depth + "1"
             + "}" * depth + "}]}").encode()
    if kind == "nan":
        return b'{"samples": [{"user_id": 1, "item_id": 1, "label": NaN}], "users": [{"user_id": 1, "profile": {"a": Infinity}}]}'
    if kind == "sample":  # a valid sample with one field replaced by anything
        sample = dict(good_sample)
        sample[draw(sample_field)] = draw(json_value)
        return json.dumps({"samples": [sample], "users": [{"user_id": 1, "profile": sample}],
                           "items": [{"item_id": "a", "profile": sample}], "version": sample.get("event_id"),
                           "max_messages": sample.get("label"), "mode": sample.get("action_type")}).encode()
    return json.dumps(draw(json_value)).encode()


STATUSES = {}


def _check(response):
    STATUSES[response.status_code] = STATUSES.get(response.status_code, 0) + 1
    assert response.status_code < 500, (response.status_code, response.body[:500])
    if response.status_code >= 400:
        body = json.loads(response.body)
        assert set(body) >= {"error", "detail"}, body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), body=bodies(), entity=st.text(min_size=1, max_size=300),
       content_type=st.sampled_from(["application/json", "text/plain", "application/xml", "",
                                     "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]),
       query=st.dictionaries(st.sampled_from(["lines", "limit", "job_id", "lineage"]), st.text(max_size=12), max_size=2))
def test_no_request_gets_a_5xx_and_every_error_is_json(api, route, body, entity, content_type, query):
    client, _ = api
    method, path = route
    path = path.replace("{id}", entity.replace("/", "_").replace("?", "_").replace("#", "_") or "x")
    if query:
        from urllib.parse import urlencode

        path += "?" + urlencode(query)
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.http.request(method, path, headers=headers, body=body if method != "GET" else b"")
    _check(response)
    if route == ("POST", "/online/data/add") and response.status_code == 200:
        sample = json.loads(body)["samples"][0]  # accepted: the trainer's schema must read it back
        StoredAction.accept(__import__("easyrec_online.ingest.actions", fromlist=["ActionIn"]).ActionIn.model_validate(sample))


@pytest.mark.skipif(BACKEND == "localstack", reason="the fuzz runs on the moto backend (no ECS on LocalStack)")
def test_the_fuzz_reached_the_routes():
    """The property test above ran requests that were accepted and refused both (not only 404s)."""
    assert STATUSES.get(200, 0) > 0 and sum(v for k, v in STATUSES.items() if 400 <= k < 500) > 50, STATUSES
