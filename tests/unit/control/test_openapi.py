"""The OpenAPI document: every route of template.yaml and nothing else, each with the role the template
gives it, bodies described by the very models the handlers validate with, and the served copy current."""
import os

import pytest

from easyrec_online.control import openapi
from infra.local_runner.template import load_template, parse_app
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def document():
    return openapi.document()


def test_every_route_of_the_template_is_documented_with_its_role_and_nothing_else(document):
    routes = parse_app(load_template(os.path.join(ROOT, "template.yaml"))).routes
    declared = {(r.method, r.path): r.auth for r in routes}
    documented = {(method.upper(), path): op for path, ops in document["paths"].items() for method, op in ops.items()}
    assert set(documented) == set(declared)
    for key, operation in documented.items():
        assert operation["tags"] == [declared[key]], key
        assert bool(operation["security"]) == (declared[key] != "open")


def test_bodies_are_the_handlers_models_and_every_error_is_the_error_shape(document):
    from easyrec_online.ingest.actions import AddDataRequest

    schemas = document["components"]["schemas"]
    add = document["paths"]["/online/data/add"]["post"]
    assert add["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AddDataRequest"}
    assert schemas["AddDataRequest"]["properties"].keys() == AddDataRequest.model_json_schema()["properties"].keys()
    assert "new_lineage" in str(schemas["StrategyIn"])
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}, (method, path)
            for name in [p[1:-1] for p in path.split("/") if p.startswith("{")]:
                assert {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} in operation[
                    "parameters"]
    assert schemas["Error"]["required"] == ["error", "detail"]
    assert document["paths"]["/experiments"]["post"]["responses"].keys() >= {"201", "409"}


def test_the_served_document_is_the_one_the_models_make_now(document):
    assert openapi.built() == document, "the models changed: run `make openapi`"
