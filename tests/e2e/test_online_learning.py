"""Online learning end to end, with no training call: CONTINUOUS_TRAINING=true makes the API keep a
continuous trainer running; a user's purchases of item A move A up against B for them (and not for
everyone), and the update shows in /online/updates/list."""
import pytest
import requests

from tests.e2e.conftest import RunningService, wait_for as _wait_for

pytestmark = pytest.mark.model_runtime
USER = 42


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("online")
    running = RunningService(str(tmp / "state"), str(tmp / "runner.log"), [
        "CONTINUOUS_TRAINING=true", "TRAIN_STEPS=150", "CONTINUOUS_POLL_MS=200", "CURRENT_CHECK_INTERVAL_MS=200",
        "PROMOTION_AUC_TOLERANCE=1.0"])
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


def _scores(service, context=None):
    request = {"user_id": USER, "item_ids": ["A", "B"]}
    if context:
        request["context"] = context
    body = requests.post(service.url + "/predict", json=request, timeout=10).json()
    return {p["item_id"]: p["score"] for p in body["predictions"]}, body["model_version"]


PURCHASE = {"action_type": "purchase"}


def test_purchases_move_the_user_towards_a_without_any_training_call(online):
    # History: everyone, user 42 too, rates B high and A low; user 42 has also liked other items. A and B
    # are rated in one context: when the history told them apart only by action type (likes of B, views
    # of A), the action type explained every label and the first version's order of A and B was a coin
    # toss (liked views: 3 runs of 7; views as passes: 1 CI run). User 42 rates them too: when only
    # others did, all the first version knew of 42 and B or A were sampled negatives (drawn by
    # popularity, both equally likely), so its order of A and B for 42 was a coin toss again (2 runs of 3).
    samples = []
    for user in [USER] + list(range(30)):
        samples += [{"user_id": user, "item_id": "B", "label": 1, "action_type": "rating"},
                    {"user_id": user, "item_id": "A", "label": 0, "action_type": "rating"}]
        samples += [{"user_id": user, "item_id": "x{}".format((user + k) % 7), "label": 0, "action_type": "view"}
                    for k in range(4)]
    samples += [{"user_id": USER, "item_id": "x{}".format(k), "label": 1, "action_type": "like"} for k in range(5)]
    for n, sample in enumerate(samples):
        sample["event_id"] = "ol-{}".format(n)  # the same holdout every run
    assert requests.post(online.url + "/online/data/add", json={"samples": samples}, timeout=30).status_code == 200

    status = requests.get(online.url + "/online/training/status", timeout=10).json()
    assert status["continuous_training"] and status["job"]["mode"] == "continuous", status
    first = _wait_for(lambda: requests.get(online.url + "/health", timeout=10).json()["model_version"], 300,
                      "the trainer's first version")
    before, _ = _wait_for(lambda: (lambda s: s if s[1] == first else None)(_scores(online)), 30, "serving v1")
    assert before["B"] > before["A"], before
    before_purchase, version = _scores(online, PURCHASE)
    assert version == first

    purchases = [{"user_id": USER, "item_id": "A", "label": 1, "action_type": "purchase"} for _ in range(40)]
    assert requests.post(online.url + "/online/data/add", json={"samples": purchases}, timeout=30).status_code == 200

    def learnt():
        (scores, version), (purchase, again) = _scores(online), _scores(online, PURCHASE)
        return (scores, purchase) if first != version == again else None

    after, after_purchase = _wait_for(learnt, 120, "an automatic update")
    # The purchases moved A up against B for the user, as something they buy. (Not necessarily in the
    # default context, ratings, where 42 rated A low: with the catalog counting 42's burst once per
    # REPEAT_ACTIONS_MAX, what the update learns of 42 and A is three purchase rows, and in 2 runs of
    # 8 the rating-context order did not move.)
    updates = requests.get(online.url + "/online/updates/list", timeout=10).json()["updates"]
    assert after_purchase["A"] / after_purchase["B"] > before_purchase["A"] / before_purchase["B"], (
        before_purchase, after_purchase, before, after, [
        {k: u[k] for k in ("version", "mode", "num_new_actions", "num_actions", "num_train_rows", "current")}
        for u in updates])
    # ...and one user's burst is one user's preference: the crowd's order stays for everyone else (40
    # purchases learnt as 40 rows outweighed the 30 users' ratings and put A near 1.0 for every user).
    bystander = requests.post(online.url + "/recommend", json={"user_id": 7, "candidate_items": ["A", "B"],
                                                               "top_k": 2}, timeout=10).json()
    print("user 42 before / after:", before, after, "as purchases:", before_purchase, after_purchase,
          "bystander 7:", bystander["recommendations"])
    assert [r["item_id"] for r in bystander["recommendations"]] == ["B", "A"], bystander
    ranked = requests.post(online.url + "/recommend", json={"user_id": USER, "candidate_items": ["A", "B"],
                                                            "top_k": 2}, timeout=10).json()
    assert ranked["model_version"] != first, ranked  # this update's version or a later one
    updates = requests.get(online.url + "/online/updates/list", timeout=10).json()["updates"]
    mine = [u for u in updates if u["version"] == ranked["model_version"]]
    assert mine and mine[0]["mode"] == "incremental" and mine[0]["warm"], updates
    assert requests.get(online.url + "/online/training/status", timeout=10).json()["status"] == "running"
    info = requests.get(online.url + "/model/info", timeout=10).json()
    assert info["online"]["updates"] >= 1 and info["online"]["last_trigger"].startswith("immediate"), info["online"]


def test_a_new_users_purchases_of_a_new_item_count_before_any_weight_update(online):
    """Items no version has seen (cold start for the model): the user's own actions on them rank them at
    once, the one they bought above the one they bounced off, in their /predict and /recommend."""
    body = {"user_id": "newcomer", "item_ids": ["new-A", "new-B"]}
    before = requests.post(online.url + "/predict", json=body, timeout=10).json()["predictions"]
    assert all(p["cold_start"] for p in before), before
    samples = []
    for k in range(15):
        samples += [{"user_id": "newcomer", "item_id": "new-A", "action_type": "purchase", "label": 1},
                    {"user_id": "newcomer", "item_id": "new-B", "action_type": "view", "label": 0}]
    assert requests.post(online.url + "/online/data/add", json={"samples": samples}, timeout=30).status_code == 200

    def bought_first():  # serving reads a user's activity afresh every ACTIVITY_CACHE_TTL_MS (200 ms)
        after = {p["item_id"]: p["score"] for p in
                 requests.post(online.url + "/predict", json=body, timeout=10).json()["predictions"]}
        return after if after["new-A"] > after["new-B"] else None

    _wait_for(bought_first, 10, "the purchases to reach the newcomer's scores")
    ranked = requests.post(online.url + "/recommend", json={"user_id": "newcomer", "candidate_items": ["new-B", "new-A"],
                                                            "top_k": 2}, timeout=10).json()["recommendations"]
    assert [r["item_id"] for r in ranked] == ["new-A", "new-B"], ranked


def test_restart_policy_patch_and_stop(online):
    patched = requests.patch(online.url + "/online/training/restart-policy", json={"max_restarts": 3}, timeout=10)
    assert patched.status_code == 200 and patched.json()["restart_policy"]["max_restarts"] == 3
    bad = requests.patch(online.url + "/online/training/restart-policy", json={"policy": "sometimes"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["fields"] == ["policy"]
    stopped = requests.post(online.url + "/online/training/stop", timeout=10).json()
    assert stopped["status"] == "stopping", stopped
    _wait_for(lambda: requests.get(online.url + "/online/training/status", timeout=10).json()["status"] == "stopped",
              60, "the trainer to stop")
    # Stopped on request: new actions do not start it again (the status call runs the supervisor, as the
    # schedule does, and it leaves a stopped trainer stopped).
    added = requests.post(online.url + "/online/data/add", json={"samples": [{"user_id": 1, "item_id": "A", "label": 1}]},
                          timeout=10)
    assert added.status_code == 200, added.text
    status = requests.get(online.url + "/online/training/status", timeout=10).json()
    assert status["status"] == "stopped", status
