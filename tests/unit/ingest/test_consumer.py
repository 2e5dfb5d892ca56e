import datetime as dt
import json

import pytest

from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.ingest.consumer import Sinks, new_processor, store_sqs_batch
from easyrec_online.ingest.envelopes import (
    ENVELOPE_MAX_BYTES,
    PoisonMessage,
    decode_message,
    decode_message_body,
    encode_envelopes,
)
from easyrec_online.ingest.ledger import InMemoryEventLedger
from easyrec_online.ingest.store import InMemoryActionStore
from easyrec_online.state.activity import InMemoryActivityStore
from easyrec_online.state.registry import InMemoryStateStore


def _record(message_id, body, sent_ms="1764547200000"):
    return {"messageId": message_id, "receiptHandle": "r-" + message_id, "body": body,
            "attributes": {"SentTimestamp": sent_ms}, "messageAttributes": {}, "md5OfBody": "",
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
            "awsRegion": "us-east-1"}


def _action(n, **extra):
    return StoredAction.accept(ActionIn.model_validate(dict({"user_id": n, "item_id": n, "label": 1}, **extra)))


def _sinks():
    return Sinks(InMemoryActionStore(), InMemoryEventLedger(), InMemoryStateStore(), InMemoryActivityStore())


def _envelope(actions):
    (body, _), = encode_envelopes(actions)
    return body


def _stored_ids(sinks):
    return sorted(a.event_id for key in sinks.store.keys() for a in sinks.store.read(key))


def test_good_records_stored_as_one_object_poison_reported():
    sinks = _sinks()
    event = {"Records": [_record("m1", _action(1).to_json()), _record("m2", "not json"),
                         _record("m3", json.dumps({"user_id": 1})), _record("m4", _action(4).to_json())]}
    response = store_sqs_batch(event, new_processor(), sinks)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]}
    assert len(sinks.store.objects) == 1
    assert [a.user_id for a in sinks.store.iter_actions()] == [1, 4]
    assert sinks.counters.counts("ingest")["stored_actions"] == 2
    assert sinks.counters.counts("ingest")["poison_messages"] == 2


def test_an_event_is_stored_and_counted_once_however_batches_regroup_it():
    """A client retry in another request, a redelivery regrouped with other messages: one event, one line."""
    sinks = _sinks()
    a1, a2, a3 = _action(1), _action(2), _action(3)
    first = {"Records": [_record("m1", _envelope([a1, a2]))]}
    assert store_sqs_batch(first, new_processor(), sinks) == {"batchItemFailures": []}
    store_sqs_batch(first, new_processor(), sinks)  # the same batch redelivered: rewritten, not added
    regrouped = {"Records": [_record("m7", _envelope([a2, a3])), _record("m8", _envelope([a1]))]}
    assert store_sqs_batch(regrouped, new_processor(), sinks) == {"batchItemFailures": []}
    assert _stored_ids(sinks) == sorted([a1.event_id, a2.event_id, a3.event_id])
    assert sinks.counters.counts("ingest")["stored_actions"] == 3


class _DiesBeforeCounting(InMemoryStateStore):
    """A consumer killed after its object is stored and before the count (the first time only)."""

    def __init__(self):
        super().__init__()
        self.dead = True

    def add_counts_once(self, *args, **kwargs):
        if self.dead:
            self.dead = False
            raise SystemExit("killed")
        return super().add_counts_once(*args, **kwargs)


@pytest.mark.parametrize("redelivery", ["same batch", "regrouped"])
def test_stored_actions_stays_exact_when_the_consumer_dies_between_storing_and_counting(redelivery):
    sinks = _sinks()
    sinks.counters = _DiesBeforeCounting()
    a1, a2, a3 = _action(1), _action(2), _action(3)
    first = {"Records": [_record("m1", _envelope([a1, a2]))]}
    with pytest.raises(SystemExit):
        store_sqs_batch(first, new_processor(), sinks)
    assert len(sinks.store.objects) == 1 and "stored_actions" not in sinks.counters.counts("ingest")
    again = first if redelivery == "same batch" else {
        "Records": [_record("m1", _envelope([a1, a2])), _record("m9", _envelope([a3]))]}
    assert store_sqs_batch(again, new_processor(), sinks) == {"batchItemFailures": []}
    store_sqs_batch(again, new_processor(), sinks)  # and once more: nothing added twice
    expected = 2 if redelivery == "same batch" else 3
    assert sinks.counters.counts("ingest")["stored_actions"] == expected == len(_stored_ids(sinks))


def test_a_record_whose_event_another_consumer_holds_is_retried_and_a_dead_claim_is_taken_over():
    sinks = _sinks()
    a1, a2 = _action(1), _action(2)
    sinks.ledger.claim([a1.event_id], "actions/dt=x/other-consumer.jsonl", lambda key: False)  # in flight elsewhere
    event = {"Records": [_record("m1", _envelope([a1])), _record("m2", _envelope([a2]))]}
    assert store_sqs_batch(event, new_processor(), sinks) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert _stored_ids(sinks) == [a2.event_id]
    # That consumer died between its claim and its store: once the claim's lease ran out, the retry stores it.
    sinks.ledger.entries[a1.event_id]["claimed_at"] -= 10_000
    assert store_sqs_batch({"Records": [_record("m1", _envelope([a1]))]}, new_processor(), sinks) == {
        "batchItemFailures": []}
    assert _stored_ids(sinks) == sorted([a1.event_id, a2.event_id])
    # Counted with the object that stores it (the dead consumer counted nothing: it stored nothing).
    assert sinks.counters.counts("ingest")["stored_actions"] == 2


def test_stored_actions_reach_the_users_live_activity():
    sinks = _sinks()
    store_sqs_batch({"Records": [_record("m1", _envelope([_action(5, action_type="purchase")]))]}, new_processor(),
                    sinks)
    assert sinks.activity.recent(["5"], 10) == {"5": [["5", "purchase", 1]]}


def test_producers_may_write_the_sample_shape_of_the_api_to_the_stream():
    sinks = _sinks()
    single = {"user_id": "p1", "item_id": "x1", "action_type": "purchase"}  # the label from its rule
    many = {"samples": [{"user_id": "p2", "item_id": "x2", "label": 1},
                        {"user_id": "p3", "item_id": "x3", "label": 0, "event_id": "mine"}]}
    event = {"Records": [_record("m1", json.dumps(single)), _record("m2", json.dumps(many))]}
    assert store_sqs_batch(event, new_processor(), sinks) == {"batchItemFailures": []}
    stored = {a.event_id: a for a in sinks.store.iter_actions()}
    assert sorted(stored) == ["m1", "m2:0", "mine"]  # derived from the message: a redelivery is the same event
    assert stored["m1"].label == 1.0 and stored["m1"].accepted_at == "2025-12-01T00:00:00.000Z"
    store_sqs_batch(event, new_processor(), sinks)  # redelivered
    assert len(list(sinks.store.iter_actions())) == 3 and sinks.counters.counts("ingest")["stored_actions"] == 3


@pytest.mark.parametrize("body", [
    json.dumps({"user_id": "p1", "item_id": "x1"}),  # no label, no rule
    json.dumps({"user_id": "p1", "item_id": "x1", "label": 1, "parameters": {"a": [[[[[[[[[[1]]]]]]]]]]}}),
    json.dumps({"samples": [{"user_id": 1, "item_id": 1, "label": 1, "timestamp": "9999-12-31T23:59:59-14:00"}]}),
    '{"user_id": 1, "item_id": 1, "label": NaN}',
    json.dumps({"v": 1, "actions": [{"event_id": "e", "user_id": 1, "item_id": 1, "label": 7, "timestamp": "x",
                                     "accepted_at": "y"}]}),
    "[" * 5000 + "]" * 5000,
    json.dumps([1, 2]),
])
def test_what_the_api_would_refuse_is_a_poison_message(body):
    with pytest.raises(PoisonMessage):
        decode_message(body, "m1", dt.datetime.now(dt.timezone.utc))


def test_all_poison_batch_reports_all_and_stores_nothing():
    sinks = _sinks()
    response = store_sqs_batch({"Records": [_record("m1", "x")]}, new_processor(), sinks)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]} and sinks.store.objects == {}


def test_envelopes_and_direct_messages_are_both_consumed():
    sinks = _sinks()
    actions = [_action(n) for n in range(5)]
    (body, members), = encode_envelopes(actions[:3])
    assert members == actions[:3] and decode_message_body(body) == actions[:3]
    event = {"Records": [_record("m1", body), _record("m2", actions[3].to_json()), _record("m3", actions[3].to_json())]}
    assert store_sqs_batch(event, new_processor(), sinks) == {"batchItemFailures": []}
    assert [a.user_id for a in sinks.store.iter_actions()] == [0, 1, 2, 3]


def test_envelopes_respect_the_message_size_limit_and_keep_order():
    big = [StoredAction.accept(ActionIn.model_validate({"user_id": n, "item_id": n, "label": 1,
                                                         "parameters": {"blob": "x" * 15000}})) for n in range(40)]
    envelopes = encode_envelopes(big)
    assert len(envelopes) > 1 and all(len(body) <= ENVELOPE_MAX_BYTES + 64 for body, _ in envelopes)
    assert [a for _, members in envelopes for a in members] == big


def test_an_unreadable_stored_line_is_kept_apart_and_the_rest_reads():
    store = InMemoryActionStore()
    key = store.put_batch([_action(1), _action(2)])
    store.objects[key] = store.objects[key].replace(b'"label":1.0', b'"label":"many"', 1)
    content = store.read_object(key)
    assert [a.user_id for a in content.actions] == [2] and len(content.unreadable) == 1
    line_number, reason, line = content.unreadable[0]
    assert line_number == 1 and "label" in reason and '"many"' in line
