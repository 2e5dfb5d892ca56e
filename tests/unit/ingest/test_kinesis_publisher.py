import pytest

from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.ingest.publishers import KinesisActionPublisher, PublishError


class FlakyKinesis:
    """Throttles the first record of the first `failures` calls, like a hot shard."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = []

    def put_records(self, StreamName, Records):
        self.calls.append(Records)
        out = [{"SequenceNumber": str(i), "ShardId": "s"} for i in range(len(Records))]
        if len(self.calls) <= self.failures:
            out[0] = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
        return {"FailedRecordCount": int(len(self.calls) <= self.failures), "Records": out}


def _actions(n):
    return [StoredAction.accept(ActionIn.model_validate({"user_id": i, "item_id": 1, "label": 1,
                                                         "event_id": "e{}".format(i)})) for i in range(n)]


def test_a_throttled_record_is_retried_once_and_then_reported_by_event_id():
    kinesis = FlakyKinesis(failures=1)
    KinesisActionPublisher(kinesis, "s").publish(_actions(3))
    assert len(kinesis.calls) == 2 and len(kinesis.calls[1]) == 1  # only the throttled record again
    with pytest.raises(PublishError) as caught:
        KinesisActionPublisher(FlakyKinesis(failures=5), "s").publish(_actions(3))
    assert caught.value.event_ids == ["e0", "e1", "e2"] and "ProvisionedThroughput" in str(caught.value)
    with pytest.raises(ValueError):
        KinesisActionPublisher(kinesis, "")
