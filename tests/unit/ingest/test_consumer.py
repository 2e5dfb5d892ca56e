import json

from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.ingest.consumer import new_processor, store_sqs_batch
from easyrec_online.ingest.envelopes import ENVELOPE_MAX_BYTES, decode_message_body, encode_envelopes
from easyrec_online.ingest.store import InMemoryActionStore


def _record(message_id, body):
    return {"messageId": message_id, "receiptHandle": "r-" + message_id, "body": body, "attributes": {},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}


def _action(n):
    return StoredAction.accept(ActionIn.model_validate({"user_id": n, "item_id": n, "label": 1}))


def test_good_records_stored_as_one_object_poison_reported():
    store = InMemoryActionStore()
    event = {"Records": [_record("m1", _action(1).to_json()), _record("m2", "not json"),
                         _record("m3", json.dumps({"user_id": 1})), _record("m4", _action(4).to_json())]}
    response = store_sqs_batch(event, new_processor(), store)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]}
    assert len(store.objects) == 1
    assert [a.user_id for a in store.iter_actions()] == [1, 4]


def test_a_redelivered_batch_is_stored_once():
    store = InMemoryActionStore()
    event = {"Records": [_record("m1", _action(1).to_json()), _record("m2", _action(2).to_json())]}
    store_sqs_batch(event, new_processor(), store)
    store_sqs_batch(event, new_processor(), store)
    assert len(store.objects) == 1 and store.count() == 2


def test_all_poison_batch_reports_all_and_stores_nothing():
    store = InMemoryActionStore()
    response = store_sqs_batch({"Records": [_record("m1", "x")]}, new_processor(), store)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]} and store.objects == {}


def test_envelopes_and_direct_messages_are_both_consumed():
    store = InMemoryActionStore()
    actions = [_action(n) for n in range(5)]
    (body, members), = encode_envelopes(actions[:3])
    assert members == actions[:3] and decode_message_body(body) == actions[:3]
    event = {"Records": [_record("m1", body), _record("m2", actions[3].to_json()), _record("m3", actions[3].to_json())]}
    assert store_sqs_batch(event, new_processor(), store) == {"batchItemFailures": []}
    assert [a.user_id for a in store.iter_actions()] == [0, 1, 2, 3]


def test_envelopes_respect_the_message_size_limit_and_keep_order():
    big = [StoredAction.accept(ActionIn.model_validate({"user_id": n, "item_id": n, "label": 1,
                                                         "parameters": {"blob": "x" * 15000}})) for n in range(40)]
    envelopes = encode_envelopes(big)
    assert len(envelopes) > 1 and all(len(body) <= ENVELOPE_MAX_BYTES + 64 for body, _ in envelopes)
    assert [a for _, members in envelopes for a in members] == big
