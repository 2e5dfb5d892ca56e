"""Stream messages: accepted actions travel in envelopes, {"v": 1, "actions": [...]}.

One SQS message, Kinesis record or Kafka message carries a whole /online/data/add request
(typically), not one action: one send per request instead of one per action.
"""
from __future__ import annotations

import json
from typing import List, Sequence, Tuple

from easyrec_online.ingest.actions import StoredAction

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


def decode_message_body(body: str) -> List[StoredAction]:
    """A stream message -> the actions it carries: an envelope, or one action written directly by
    an event producer. Raises ValueError for a message that is neither (a poison message)."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and "actions" in doc:
            return [StoredAction.model_validate(item) for item in doc["actions"]]
        return [StoredAction.model_validate(doc)]
    except Exception as exc:  # pydantic raises its own ValidationError type
        raise ValueError("not an action message: {}".format(str(exc)[:300]))
