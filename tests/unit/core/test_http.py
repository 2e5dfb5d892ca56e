import json

import pytest

from easyrec_online.core.http import ApiError, json_route, parse_json_body, validate
from easyrec_online.ingest.actions import AddDataRequest


def test_validation_error_names_fields_without_union_noise():
    with pytest.raises(ApiError) as caught:
        validate(AddDataRequest, {"samples": [{"user_id": 1.5, "item_id": 2}]})
    err = caught.value
    assert err.status == 400 and err.error == "invalid_request"
    assert err.fields == ["samples[0].user_id"]
    assert "must be an integer or a string" in err.detail


@pytest.mark.parametrize("raw", [b"", b"{bad", b"\xff\xfe"])
def test_unparseable_bodies(raw):
    with pytest.raises(ApiError) as caught:
        parse_json_body(raw)
    assert caught.value.status == 400 and caught.value.error == "invalid_json"


def test_non_object_body():
    with pytest.raises(ApiError) as caught:
        validate(AddDataRequest, [1, 2])
    assert caught.value.fields == ["body"]


def test_json_route_maps_errors_and_hides_internals():
    @json_route
    def bad():
        raise ApiError(409, "conflict", "busy")

    @json_route
    def broken():
        raise RuntimeError("secret stack detail")

    response = bad()
    assert response.status_code == 409 and json.loads(response.body) == {"error": "conflict", "detail": "busy"}
    response = broken()
    assert response.status_code == 500
    assert "secret" not in response.body and json.loads(response.body)["error"] == "internal_error"


@pytest.mark.parametrize("value, message", [
    (True, "must be an integer or a string"),
    (None, "must be an integer or a string"),
    ("", "at least 1 character"),
    ("   ", "must not be blank"),
    ("x" * 300, "at most 256 characters"),
])
def test_entity_id_errors_say_what_an_id_must_be(value, message):
    with pytest.raises(ApiError) as caught:
        validate(AddDataRequest, {"samples": [{"user_id": 1, "item_id": value}]})
    assert caught.value.fields == ["samples[0].item_id"]
    assert message in caught.value.detail


def test_union_of_three_types_is_listed():
    with pytest.raises(ApiError) as caught:
        validate(AddDataRequest, {"samples": [{"user_id": 1, "item_id": 2, "timestamp": [1]}]})
    assert caught.value.detail == "samples[0].timestamp: must be an integer, a number or a string"
