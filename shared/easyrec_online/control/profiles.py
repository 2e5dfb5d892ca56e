"""PUT/POST/GET /users and /items: profiles in, validated at the edge."""
from __future__ import annotations

import json
from typing import Any, Dict, List

from pydantic import BaseModel, ConfigDict, Field

from easyrec_online.core import jsonsafe
from easyrec_online.core.http import ApiError, validate
from easyrec_online.ingest.actions import MAX_ID_LENGTH, EntityId, id_key
from easyrec_online.state.profiles import MAX_PROFILE_JSON_BYTES, ProfileStore


def _check_profile(profile: Dict[str, Any], field: str) -> None:
    """What a profile may hold (core/jsonsafe.py): it is stored, echoed back and read by training."""
    try:
        jsonsafe.check_value(profile, field)
    except jsonsafe.JsonLimitError as exc:
        raise ApiError(400, "invalid_request", str(exc), [field])


def put_profile(profiles: ProfileStore, kind: str, entity_id: str, body: Any) -> Dict[str, Any]:
    if not isinstance(body, dict) or not body:
        raise ApiError(400, "invalid_request", "body must be a non-empty JSON object of {} attributes".format(kind),
                       ["body"])
    _check_profile(body, "body")
    if len(json.dumps(body)) > MAX_PROFILE_JSON_BYTES:
        raise ApiError(413, "profile_too_large", "a profile is at most {} bytes of JSON".format(
            MAX_PROFILE_JSON_BYTES), ["body"])
    if not entity_id.strip() or len(entity_id) > MAX_ID_LENGTH or jsonsafe.bad_text(entity_id):
        raise ApiError(400, "invalid_request", "{}_id: 1 to {} characters".format(kind, MAX_ID_LENGTH),
                       ["{}_id".format(kind)])
    return profiles.put(kind, entity_id, body)


MAX_PROFILES_PER_REQUEST = 1000


class _ProfileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: Dict[str, Any] = Field(min_length=1)


class UserProfileIn(_ProfileEntry):
    user_id: EntityId


class ItemProfileIn(_ProfileEntry):
    item_id: EntityId


class PutUsersRequest(BaseModel):
    """POST /users: many profiles at once (a catalog import), each as GET /users/{id} returns it."""
    model_config = ConfigDict(extra="forbid")
    users: List[UserProfileIn] = Field(min_length=1, max_length=MAX_PROFILES_PER_REQUEST)


class PutItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: List[ItemProfileIn] = Field(min_length=1, max_length=MAX_PROFILES_PER_REQUEST)


def put_profiles(profiles: ProfileStore, kind: str, body: Any) -> Dict[str, Any]:
    """Store (replace) up to MAX_PROFILES_PER_REQUEST profiles, all or none: the whole batch is validated
    before anything is written. An id twice in one batch: the later entry wins, as two PUTs would."""
    plural = kind + "s"
    if isinstance(body, dict) and isinstance(body.get(plural), list) and len(body[plural]) > MAX_PROFILES_PER_REQUEST:
        raise ApiError(413, "too_many_profiles", "{}: at most {} per request (got {}); split the batch".format(
            plural, MAX_PROFILES_PER_REQUEST, len(body[plural])), [plural])
    request = validate(PutUsersRequest if kind == "user" else PutItemsRequest, body)
    batch: Dict[str, Dict[str, Any]] = {}
    for index, entry in enumerate(getattr(request, plural)):
        field = "{}[{}].profile".format(plural, index)
        _check_profile(entry.profile, field)
        if len(json.dumps(entry.profile)) > MAX_PROFILE_JSON_BYTES:
            raise ApiError(413, "profile_too_large", "{}: a profile is at most {} bytes of JSON".format(
                field, MAX_PROFILE_JSON_BYTES), [field])
        entity_id = id_key(getattr(entry, kind + "_id"))
        batch.pop(entity_id, None)  # keeps the order of the last occurrence
        batch[entity_id] = entry.profile
    stored = profiles.put_many(kind, batch)
    return {"stored": len(stored), "{}_ids".format(kind): [r["{}_id".format(kind)] for r in stored]}


def get_profile(profiles: ProfileStore, kind: str, entity_id: str) -> Dict[str, Any]:
    found = profiles.get(kind, entity_id)
    if found is None:
        raise ApiError(404, "not_found", "no profile for {} {}".format(kind, entity_id), ["{}_id".format(kind)])
    return found
