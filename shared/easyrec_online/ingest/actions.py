"""User actions at the edge: the request models of /online/data/add and the stored action record.

An action is accepted once it validates; from then on it travels as a `StoredAction` (queue
message body, then one JSON line in S3). The stored form is the accepted form plus an `event_id`
(client-supplied or generated) and the server's `accepted_at` time, so nothing the client sent is
dropped and every action can be traced and de-duplicated.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, StringConstraints, field_validator
from typing_extensions import Annotated

from easyrec_online.ingest.labels import DEFAULT_LABEL_RULES, derive_label

MAX_ID_LENGTH = 256


# IDs are ints or non-empty strings, never floats or booleans: 6 and "6" name the same item (see
# `id_key`); 6.0 or true is almost certainly a client bug. Checked natively by pydantic-core, with no
# Python call per id: /recommend validates up to 1000 candidates per request.
EntityId = Union[StrictInt, Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH,
                                                                   pattern=r"\S")]]
MAX_PARAMETERS_JSON_BYTES = 16 * 1024


# The canonical string form of a user or item id (the model hashes strings): 6 and "6" are one id.
# `str` itself rather than a function around it: serving calls it for every candidate.
id_key = str


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def isoformat_utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_timestamp(value: Union[int, float, str]) -> dt.datetime:
    if isinstance(value, bool):
        raise ValueError("timestamp must be an ISO-8601 string or epoch seconds")
    if isinstance(value, (int, float)):
        if not 0 <= value < 32503680000:  # year 3000
            raise ValueError("epoch seconds out of range")
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an ISO-8601 timestamp: {!r}".format(value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


class ActionIn(BaseModel):
    """One sample of POST /online/data/add, as the client sends it."""

    model_config = ConfigDict(extra="forbid")

    user_id: EntityId
    item_id: EntityId
    # Optional: without it, the label rule of action_type decides (labels.py).
    label: Optional[Union[StrictInt, StrictFloat]] = Field(None, ge=0, le=1)
    action_type: Optional[StrictStr] = Field(None, min_length=1, max_length=64)
    parameters: Optional[Dict[str, Any]] = None
    event_id: Optional[StrictStr] = Field(None, min_length=1, max_length=128)
    timestamp: Optional[Union[StrictInt, StrictFloat, StrictStr]] = None

    @field_validator("parameters")
    @classmethod
    def _parameters_size(cls, value: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        if value is not None and len(json.dumps(value)) > MAX_PARAMETERS_JSON_BYTES:
            raise ValueError("parameters larger than {} bytes".format(MAX_PARAMETERS_JSON_BYTES))
        return value

    @field_validator("timestamp")
    @classmethod
    def _timestamp_parses(cls, value: Optional[Union[int, float, str]]) -> Optional[Union[int, float, str]]:
        if value is not None:
            parse_timestamp(value)
        return value


class AddDataRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: List[ActionIn] = Field(..., min_length=1)


class StoredAction(BaseModel):
    """An accepted action: what the queue carries and what S3 stores (one JSON line each)."""

    model_config = ConfigDict(extra="ignore")

    event_id: str
    user_id: Union[StrictInt, StrictStr]
    item_id: Union[StrictInt, StrictStr]
    label: float
    action_type: Optional[str] = None
    parameters: Dict[str, Any] = Field(default_factory=dict)
    timestamp: str
    accepted_at: str

    @classmethod
    def accept(cls, sample: ActionIn, now: Optional[dt.datetime] = None,
               label_rules: Optional[Dict[str, Any]] = None) -> "StoredAction":
        """The stored form of a validated sample. Raises LabelRuleError when it has no label and
        no rule gives it one."""
        now = now or utc_now()
        moment = parse_timestamp(sample.timestamp) if sample.timestamp is not None else now
        label = (float(sample.label) if sample.label is not None else
                 derive_label(sample.action_type, sample.parameters,
                              DEFAULT_LABEL_RULES if label_rules is None else label_rules))
        return cls(
            event_id=sample.event_id or uuid.uuid4().hex,
            user_id=sample.user_id,
            item_id=sample.item_id,
            label=label,
            action_type=sample.action_type,
            parameters=sample.parameters or {},
            timestamp=isoformat_utc(moment),
            accepted_at=isoformat_utc(now),
        )

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: Union[str, bytes]) -> "StoredAction":
        return cls.model_validate_json(text)

    @property
    def accepted_date(self) -> str:
        return self.accepted_at[:10]
