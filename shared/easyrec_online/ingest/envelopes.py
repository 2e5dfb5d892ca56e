"""Stream messages: what the consumer reads from SQS, Kinesis or Kafka.

The API writes envelopes of accepted actions, {"v": 1, "actions": [...]}: one SQS message, Kinesis
record or Kafka message carries a whole /online/data/add request (typically), not one action, so
one send per request instead of one per action. Producers that write to the stream directly may
send what /online/data/add takes: one sample, or {"samples": [...]}. Their samples go through the
same schema and label rules as the API's; each gets the event id "<message id>:<index>" (a single
sample "<message id>") unless it names one, so a redelivered message is the same events again, and
is accepted at the message's arrival on the stream.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

from easyrec_online.core import jsonsafe
from easyrec_online.ingest.actions import ActionIn, AddDataRequest, StoredAction
from easyrec_online.ingest.labels import DEFAULT_LABEL_RULES, LabelRuleError

# Actions travel in envelopes of up to this many bytes of JSON: one SQS message carries a whole
# /online/data/add request (typically), not one action. That is one SendMessage per request instead
# of one per ten actions, and far fewer (billed, 64 KB-chunked) requests. SQS allows 256 KiB.
ENVELOPE_MAX_BYTES = 240 * 1024
ENVELOPE_VERSION = 1


def encode_envelopes(actions: Sequence[StoredAction]) -> List[Tuple[str, List[StoredAction]]]:
    """Pack actions, in order, into message bodies {"v": 1, "actions": [...]} under the size cap."""
    envelopes: List[Tuple[str, List[StoredAction]]] = []
    lines: List[str] = []
    members: List[StoredAction] = []
    size = 0
    for action in actions:
        line = action.to_json()
        if members and size + len(line) + 1 > ENVELOPE_MAX_BYTES:
            envelopes.append((_envelope(lines), members))
            lines, members, size = [], [], 0
        lines.append(line)
        members.append(action)
        size += len(line) + 1
    if members:
        envelopes.append((_envelope(lines), members))
    return envelopes


def _envelope(lines: List[str]) -> str:
    return '{"v":%d,"actions":[%s]}' % (ENVELOPE_VERSION, ",".join(lines))


class PoisonMessage(ValueError):
    """A message that is no action (the consumer reports it; the stream retries it, then dead-letters it)."""


def decode_message(body: str, message_id: str, arrival: dt.datetime,
                   label_rules: Optional[Dict[str, Any]] = None) -> List[StoredAction]:
    """A stream message -> the actions it carries. Raises PoisonMessage naming what is wrong."""
    try:
        doc = jsonsafe.loads(body)
    except ValueError as exc:
        raise PoisonMessage("not JSON: {}".format(str(exc)[:200]))
    rules = label_rules if label_rules is not None else DEFAULT_LABEL_RULES
    try:
        if isinstance(doc, dict) and "v" in doc and "actions" in doc:  # the API's envelope
            if not isinstance(doc["actions"], list):
                raise PoisonMessage("actions: must be a list")
            return [StoredAction.model_validate(item) for item in doc["actions"]]
        if isinstance(doc, dict) and "samples" in doc:  # a producer's /online/data/add body
            samples = AddDataRequest.model_validate(doc).samples
            return [StoredAction.accept(s, arrival, rules, event_id="{}:{}".format(message_id, i))
                    for i, s in enumerate(samples)]
        if isinstance(doc, dict) and "accepted_at" in doc:  # one stored action (written by earlier releases)
            return [StoredAction.model_validate(doc)]
        if isinstance(doc, dict):  # a producer's single sample
            return [StoredAction.accept(ActionIn.model_validate(doc), arrival, rules, event_id=message_id)]
    except PoisonMessage:
        raise
    except (ValueError, LabelRuleError) as exc:  # pydantic's ValidationError is a ValueError
        raise PoisonMessage("not an action message: {}".format(str(exc)[:300]))
    raise PoisonMessage("not an action message: a JSON object is expected")


def decode_message_body(body: str) -> List[StoredAction]:
    """The actions of a message with no stream metadata (tests, tools): as if it arrived now."""
    return decode_message(body, "m-" + hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()[:16],
                          dt.datetime.now(dt.timezone.utc))
