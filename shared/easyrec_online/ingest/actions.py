"""User actions: the one schema of what an action is, at the edge and wherever it is read back.

An action is accepted once it validates; from then on it travels as a `StoredAction` (queue
message body, then one JSON line in S3). The stored form is the accepted form plus an `event_id`
(client-supplied or generated) and the server's `accepted_at` time, so nothing the client sent is
dropped and every action can be traced and de-duplicated. `StoredAction` holds its fields to the
same limits as `ActionIn` (ids, label, parameters: core/jsonsafe.py), so whatever the consumer
stores, from the API or from a producer writing to the stream directly, the trainer can read.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, StringConstraints, field_validator
from typing_extensions import Annotated

from easyrec_online.core.jsonsafe import MAX_ID_INT, check_value
from easyrec_online.ingest.labels import DEFAULT_LABEL_RULES, derive_label

MAX_ID_LENGTH = 256


# IDs are ints or non-empty strings, never floats or booleans: 6 and "6" name the same item (see
# `id_key`); 6.0 or true is almost certainly a client bug. Checked natively by pydantic-core, with no
# Python call per id: /recommend validates up to 1000 candidates per request.
EntityId = Union[Annotated[StrictInt, Field(ge=-MAX_ID_INT, le=MAX_ID_INT)],
                 Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"\S")]]
MAX_PARAMETERS_JSON_BYTES = 16 * 1024
Label = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
ActionType = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]
EventId = Annotated[StrictStr, StringConstraints(min_length=1, max_length=128)]
RecommendationId = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
# Years a timestamp may name (epoch seconds too): within them every conversion (to UTC, to epoch
# seconds, to the hour and day features) is safe.
FIRST_YEAR, LAST_YEAR = 1970, 2999


# The canonical string form of a user or item id (the model hashes strings): 6 and "6" are one id.
# `str` itself rather than a function around it: serving calls it for every candidate.
id_key = str


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def isoformat_utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_timestamp(value: Union[int, float, str]) -> dt.datetime:
    """An ISO-8601 string (UTC when it names no offset) or epoch seconds -> an aware UTC datetime
    within FIRST_YEAR..LAST_YEAR; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be an ISO-8601 string or epoch seconds")
    if isinstance(value, (int, float)):
        if not 0 <= value < 32503680000:  # year 3000
            raise ValueError("epoch seconds out of range (1970 to 2999)")
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an ISO-8601 timestamp: {!r}".format(value[:64]))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    try:  # 9999-12-31T23:59:59-14:00 is a valid string whose UTC moment does not exist
        parsed = parsed.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError("timestamp out of range ({} to {})".format(FIRST_YEAR, LAST_YEAR))
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise ValueError("timestamp out of range ({} to {})".format(FIRST_YEAR, LAST_YEAR))
    return parsed


def _check_parameters(value: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if value is not None:
        check_value(value)
        if len(json.dumps(value)) > MAX_PARAMETERS_JSON_BYTES:
            raise ValueError("parameters larger than {} bytes".format(MAX_PARAMETERS_JSON_BYTES))
    return value


class ActionIn(BaseModel):
    """One sample of POST /online/data/add, as the client sends it."""

    model_config = ConfigDict(extra="forbid")

    user_id: EntityId
    item_id: EntityId
    # Optional: without it, the label rule of action_type decides (labels.py).
    label: Optional[Union[StrictInt, Annotated[StrictFloat, Field(allow_inf_nan=False)]]] = Field(None, ge=0, le=1)
    action_type: Optional[ActionType] = None
    parameters: Optional[Dict[str, Any]] = None
    event_id: Optional[EventId] = None
    timestamp: Optional[Union[StrictInt, Annotated[StrictFloat, Field(allow_inf_nan=False)], StrictStr]] = None
    # The /recommend answer this action follows (its recommendation_id): experiments credit it to that
    # answer's arm. Without it, the latest answer that showed the item to the user within the window.
    recommendation_id: Optional[RecommendationId] = None

    @field_validator("parameters")
    @classmethod
    def _parameters_limits(cls, value: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        return _check_parameters(value)

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

    event_id: EventId
    user_id: EntityId
    item_id: EntityId
    label: Label
    action_type: Optional[ActionType] = None
    parameters: Dict[str, Any] = Field(default_factory=dict)
    timestamp: StrictStr
    accepted_at: StrictStr
    recommendation_id: Optional[RecommendationId] = None

    @field_validator("parameters")
    @classmethod
    def _parameters_limits(cls, value: Dict[str, Any]) -> Dict[str, Any]:
        return _check_parameters(value) or {}

    @field_validator("timestamp", "accepted_at")
    @classmethod
    def _moment(cls, value: str) -> str:
        parse_timestamp(value)
        return value

    @classmethod
    def accept(cls, sample: ActionIn, now: Optional[dt.datetime] = None,
               label_rules: Optional[Dict[str, Any]] = None, event_id: Optional[str] = None) -> "StoredAction":
        """The stored form of a validated sample. `event_id`: the id when the sample names none (a
        stream producer's sample: one derived from its message, so a redelivery is the same event;
        default a new one). Raises LabelRuleError when it has no label and no rule gives it one."""
        now = now or utc_now()
        moment = parse_timestamp(sample.timestamp) if sample.timestamp is not None else now
        label = (float(sample.label) if sample.label is not None else
                 derive_label(sample.action_type, sample.parameters,
                              DEFAULT_LABEL_RULES if label_rules is None else label_rules))
        return cls(
            event_id=sample.event_id or event_id or uuid.uuid4().hex,
            user_id=sample.user_id,
            item_id=sample.item_id,
            label=label,
            action_type=sample.action_type,
            parameters=sample.parameters or {},
            timestamp=isoformat_utc(moment),
            accepted_at=isoformat_utc(now),
            recommendation_id=sample.recommendation_id,
        )

    def to_json(self) -> str:
        # Without a recommendation id, the stored line is what it always was.
        return json.dumps(self.model_dump(exclude={"recommendation_id"} if self.recommendation_id is None else None),
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: Union[str, bytes]) -> "StoredAction":
        return cls.model_validate_json(text)

    @property
    def accepted_date(self) -> str:
        return self.accepted_at[:10]
