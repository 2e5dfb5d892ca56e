"""The API described for machines: an OpenAPI 3.1 document built from the pydantic models the handlers
validate with, so that the description and the validation are one source.

`OPERATIONS` lists every route (a test keeps it equal to template.yaml's) with its role, a summary and
the model its body is validated with. `document()` builds the document (it imports the inference
plane's request models, so it is built by `make openapi`, not at request time); GET /openapi.json
serves the built copy, `openapi.json` beside this module, which a test keeps equal to what
`document()` builds now.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from easyrec_online import __version__ as VERSION

BUILT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")


class Operation(NamedTuple):
    method: str
    path: str
    role: str  # open | client | admin (README, "Who may call what")
    summary: str
    body: Optional[str] = None  # "module:Model" the body is validated with
    status: int = 200  # the success status
    body_optional: bool = False


OPERATIONS: Tuple[Operation, ...] = (
    Operation("GET", "/health", "open", "Service health, API version and the version serving"),
    Operation("GET", "/openapi.json", "open", "This document"),
    Operation("POST", "/online/data/add", "client", "Accept user actions (one sample, or up to the limit in samples)",
              "easyrec_online.ingest.actions:AddDataRequest"),
    Operation("POST", "/recommend", "client", "Rank candidate items (or the catalog) for a user",
              "easyrec_online.serving.service:RecommendRequest"),
    Operation("POST", "/predict", "client", "The probability of a positive action for user-item pairs",
              "easyrec_online.serving.service:PredictRequest"),
    Operation("PUT", "/users/{user_id}", "client", "Store (replace) a user's profile: a JSON object of attributes"),
    Operation("GET", "/users/{user_id}", "client", "A user's stored profile"),
    Operation("POST", "/users", "client", "Store up to 1,000 user profiles at once",
              "easyrec_online.control.profiles:PutUsersRequest"),
    Operation("PUT", "/items/{item_id}", "client", "Store (replace) an item's profile: a JSON object of attributes"),
    Operation("GET", "/items/{item_id}", "client", "An item's stored profile"),
    Operation("POST", "/items", "client", "Store up to 1,000 item profiles at once",
              "easyrec_online.control.profiles:PutItemsRequest"),
    Operation("GET", "/model/info", "admin", "The current version, recent versions and the latest training job"),
    Operation("POST", "/model/rollback", "admin", "Make a servable version current (pinned by default)",
              "easyrec_online.control.models:RollbackRequest"),
    Operation("POST", "/model/unpin", "admin", "Let the trainer's next good version become current again"),
    Operation("POST", "/model/export", "admin", "Export a version's SavedModel",
              "easyrec_online.control.export:ExportRequest", body_optional=True),
    Operation("GET", "/online/training/status", "admin", "The trainer: status, job, restart policy, what comes next"),
    Operation("POST", "/online/training/start", "admin", "Start training (or ask the running trainer for an update)",
              "easyrec_online.control.training:TrainingStartRequest", 202, body_optional=True),
    Operation("POST", "/online/training/stop", "admin", "Stop the running training"),
    Operation("PATCH", "/online/training/restart-policy", "admin", "How a failed continuous trainer is restarted",
              "easyrec_online.control.supervisor:RestartPolicyPatch"),
    Operation("GET", "/online/training/logs", "admin", "The tail of a training task's log"),
    Operation("GET", "/online/updates/list", "admin", "Model versions, newest first"),
    Operation("GET", "/online/streaming/status", "admin", "The stream: depth, dead letters, the consumer's totals"),
    Operation("POST", "/online/streaming/consume", "admin", "Drain a batch through the consumer by hand",
              "easyrec_online.control.streaming:ConsumeRequest", body_optional=True),
    Operation("POST", "/experiments", "admin", "Create an experiment (A/B or interleaving)",
              "easyrec_online.experiments.definition:ExperimentIn", 201),
    Operation("GET", "/experiments", "admin", "Every experiment's definition"),
    Operation("GET", "/experiments/{experiment_id}", "admin", "An experiment's definition and live results"),
    Operation("POST", "/experiments/{experiment_id}/stop", "admin", "Stop serving an experiment (results stay)"),
    Operation("POST", "/experiments/{experiment_id}/conclude", "admin",
              "Record the decision; with apply, make the winning arm's version current",
              "easyrec_online.experiments.definition:ConcludeIn", body_optional=True),
)

# What every error answers (core/http.py: ApiError and the gateway's own refusals).
ERROR_SCHEMA: Dict[str, Any] = {
    "type": "object", "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "A stable code, e.g. invalid_request, not_found, unauthorized"},
        "detail": {"type": "string", "description": "What was wrong, for a person"},
        "fields": {"type": "array", "description": "Where in the body, when fields were wrong (e.g. samples[3].user_id)",
                   "items": {"type": "string"}},
    },
}
_ERRORS = {
    "400": "Bad input (the body or a parameter): `fields` says where",
    "401": "No API key, or an unknown one", "403": "A client key on an admin route",
    "404": "Not found", "409": "Conflicts with the service's state (e.g. a training already running)",
    "413": "The body is too large", "415": "The body is not JSON", "429": "Throttled",
}


def _model(reference: str) -> Any:
    import importlib

    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


def _roles(role: str) -> List[Dict[str, List[str]]]:
    if role == "open":
        return []
    return [{"adminKey": []}] if role == "admin" else [{"clientKey": []}, {"adminKey": []}]


def document() -> Dict[str, Any]:
    """The OpenAPI 3.1 document of every route."""
    from pydantic.json_schema import models_json_schema

    models = sorted({op.body for op in OPERATIONS if op.body})
    _, schemas = models_json_schema([(_model(m), "validation") for m in models],
                                    ref_template="#/components/schemas/{model}")
    components = dict(schemas.get("$defs", {}), Error=ERROR_SCHEMA)
    paths: Dict[str, Dict[str, Any]] = {}
    for op in OPERATIONS:
        operation: Dict[str, Any] = {
            "summary": op.summary, "operationId": "{}_{}".format(op.method.lower(), op.path.strip("/").replace(
                "/", "_").replace("{", "").replace("}", "").replace(".", "_").replace("-", "_")),
            "tags": [op.role], "security": _roles(op.role),
            "responses": dict({str(op.status): {"description": "Done", "content": {"application/json": {
                "schema": {"type": "object"}}}}},
                **{code: {"description": text, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}} for code, text in _ERRORS.items()}),
        }
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _path_parameters(op.path)]
        if parameters:
            operation["parameters"] = parameters
        if op.body:
            operation["requestBody"] = {"required": not op.body_optional, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/" + op.body.split(":")[1]}}}}
        elif op.method in ("PUT",):
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"type": "object", "description": "The profile: attributes, up to 16 KB"}}}}
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "EasyRec Online", "version": VERSION,
                 "description": "Real-time recommendations that learn from every action (README.md)."},
        "servers": [{"url": "http://127.0.0.1:5000", "description": "make run"}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "clientKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                          "description": "A client key (API_KEYS locally; the usage plan's key deployed)"},
            "adminKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                         "description": "An admin key (ADMIN_API_KEYS locally; IAM SigV4 deployed)"}}},
    }


def _path_parameters(path: str) -> List[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def built() -> Dict[str, Any]:
    """The document as `make openapi` built it (what GET /openapi.json serves)."""
    with open(BUILT) as f:
        return json.load(f)


def write() -> None:
    with open(BUILT, "w") as f:
        json.dump(document(), f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    write()
