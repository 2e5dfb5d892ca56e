import datetime as dt

from easyrec_online.core.config import Settings
from easyrec_online.ingest.actions import ActionIn, StoredAction
from easyrec_online.modeling.continuous import update_trigger

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


def _waiting(action_type, seconds_ago=0.0, n=1):
    accepted = NOW - dt.timedelta(seconds=seconds_ago)
    return [StoredAction.accept(ActionIn.model_validate({"user_id": 1, "item_id": i, "label": 1,
                                                         "action_type": action_type}), accepted) for i in range(n)]


def test_high_priority_actions_train_at_once_and_the_rest_in_batches_by_count_or_age():
    settings = Settings.from_env({"BATCH_MIN_ACTIONS": "50", "BATCH_MAX_AGE_S": "30"})
    assert update_trigger(_waiting("purchase"), settings, NOW) == "immediate: purchase"
    assert update_trigger(_waiting("view", n=10) + _waiting("rating"), settings, NOW) == "immediate: rating"
    assert update_trigger(_waiting("view", n=10), settings, NOW) is None  # waits
    assert update_trigger(_waiting("view", n=50), settings, NOW) == "batch: 50 actions waiting"
    assert update_trigger(_waiting("click", seconds_ago=31), settings, NOW).startswith("batch: oldest waiting")
    assert update_trigger([], settings, NOW) is None
    only_views = Settings.from_env({"IMMEDIATE_ACTION_TYPES": "view"})
    assert update_trigger(_waiting("view"), only_views, NOW) == "immediate: view"


def test_the_backoff_blocks_the_rejected_actions_and_says_once_when_its_delay_is_over():
    from easyrec_online.modeling.continuous import Backoff

    backoff = Backoff(poll_s=0.5)
    assert not backoff.blocks(["a"], 0.0) and not backoff.newly_over(0.0)  # nothing rejected yet
    delay = backoff.rejected(["a"], now=10.0)
    assert delay == 1.0 and backoff.blocks(["a"], 10.5) and backoff.blocks(["a"], 11.5)  # same actions: still
    assert not backoff.blocks(["a", "b"], 11.5)  # a new action, after the delay: an update may run
    assert not backoff.newly_over(10.5)  # the delay is not over
    assert backoff.newly_over(11.0) and not backoff.newly_over(12.0)  # said once
    assert backoff.rejected(["a", "b"], now=20.0) == 2.0 and not backoff.newly_over(21.0)  # doubles
    assert backoff.newly_over(22.0)
    backoff.clear()
    assert not backoff.blocks(["a"], 22.0) and not backoff.newly_over(23.0)
