"""Experiments end to end: create one, see sticky arms and recommendation ids, attribute actions with
and without the id, read significant results, conclude and see the winner become current.

The users' truth is clear by construction: shoppers s0..s119 bought item `g` and bounced off the
crowd's favourites p1..p4, which 300 other users bought. A popularity arm shows the p's; the model
(and the shoppers' own recent actions, in its served score) puts g first for them. Each shopper buys
g whenever a list shows it. So the model's arm wins, and popularity must not."""
import pytest
import requests

from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.model_runtime

SHOPPERS = ["s{}".format(k) for k in range(120)]
CANDIDATES = ["g", "p1", "p2", "p3", "p4"]


def _post(service, path, body=None):
    return requests.post(service.url + path, json=body, timeout=30)


def _train(service):
    assert _post(service, "/online/training/start").status_code == 202

    def finished():
        status = requests.get(service.url + "/online/training/status", timeout=10).json()
        return status if status["status"] in ("succeeded", "failed") else None

    status = wait_for(finished, 300, "training to finish")
    assert status["status"] == "succeeded", status
    return status["job"]["version"]


def _stored(service):
    return requests.get(service.url + "/online/streaming/status", timeout=10).json()["consumer"]["stored_actions"]


def _recommend(service, user):
    r = _post(service, "/recommend", {"user_id": user, "candidate_items": CANDIDATES, "top_k": 2})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def trained(service):
    samples = [{"user_id": "c{}".format(k), "item_id": p, "action_type": "purchase", "label": 1}
               for k in range(300) for p in ("p1", "p2", "p3", "p4")]
    for user in SHOPPERS:
        samples.append({"user_id": user, "item_id": "g", "action_type": "purchase", "label": 1})
        samples += [{"user_id": user, "item_id": p, "action_type": "view", "label": 0,
                     "parameters": {"bounced": True}} for p in ("p1", "p2", "p3", "p4")]
    for n, sample in enumerate(samples):
        sample["event_id"] = "exp-e2e-{}".format(n)  # the same holdout every run
    for start in range(0, len(samples), 500):
        assert _post(service, "/online/data/add", {"samples": samples[start:start + 500]}).status_code == 200
    wait_for(lambda: _stored(service) >= len(samples), 120, "the actions stored")
    first = _train(service)
    second = _train(service)  # an update: the experiment pits the first version against popularity
    assert first != second
    return first, second, len(samples)


def test_bad_experiments_are_clear_4xx(service, trained):
    bad = [({"name": "x", "arms": [{"name": "a", "weight": 60, "strategy": "current"},
                                   {"name": "b", "weight": 30, "strategy": "popularity"}]}, 400),
           ({"name": "x", "arms": [{"name": "a", "weight": 50, "strategy": "current"},
                                   {"name": "b", "weight": 50, "strategy": {"type": "version", "version": "nope"}}]}, 400),
           ({"name": "x", "arms": [{"name": "a", "weight": 50, "strategy": "current"}]}, 400)]
    for body, status in bad:
        r = _post(service, "/experiments", body)
        assert r.status_code == status and set(r.json()) >= {"error", "detail"}, r.text
    assert requests.get(service.url + "/experiments/exp-nope", timeout=10).status_code == 404


def test_an_ab_experiment_from_assignment_to_conclusion(service, trained):
    first, second, stored = trained
    r = _post(service, "/experiments", {
        "name": "first version against popularity", "success_actions": ["purchase"],
        "arms": [{"name": "popularity", "weight": 50, "strategy": "popularity"},
                 {"name": "model", "weight": 50, "strategy": {"type": "version", "version": first}}]})
    assert r.status_code == 201, r.text
    experiment = r.json()
    overlapping = _post(service, "/experiments", {"name": "another", "arms": [
        {"name": "a", "weight": 50, "strategy": "current"}, {"name": "b", "weight": 50, "strategy": "trending"}]})
    assert overlapping.status_code == 409 and overlapping.json()["error"] == "layer_full"

    # The model arm's version loads in the background (an arm never waits for a load; until it is in,
    # its users get the default, uncounted): probe until it serves.
    probes = []  # the answers to probe users: those served by an arm are users of the experiment too

    def model_arm_serves():
        probes.append(_recommend(service, "probe-{}".format(len(probes))))
        return probes[-1].get("arm") == "model"

    wait_for(model_arm_serves, 60, "the model arm serving")
    answers = {user: _recommend(service, user) for user in SHOPPERS}
    arms = {user: answer["arm"] for user, answer in answers.items()}
    assert set(arms.values()) == {"popularity", "model"}
    assert all(a["experiment"] == experiment["experiment_id"] for a in answers.values())
    assert len({a["recommendation_id"] for a in answers.values()}) == len(SHOPPERS)
    for user in SHOPPERS[:10]:  # sticky
        assert _recommend(service, user)["arm"] == arms[user]
    for user, answer in answers.items():
        shown = [r["item_id"] for r in answer["recommendations"]]
        assert ("g" in shown) == (arms[user] == "model"), (user, answer)

    # Each shopper buys g where it was shown: half name the answer, half leave attribution to the service.
    purchases = []
    for k, (user, answer) in enumerate(answers.items()):
        if "g" in [r["item_id"] for r in answer["recommendations"]]:
            purchase = {"user_id": user, "item_id": "g", "action_type": "purchase", "event_id": "buy-{}".format(user)}
            if k % 2:
                purchase["recommendation_id"] = answer["recommendation_id"]
            purchases.append(purchase)
    assert _post(service, "/online/data/add", {"samples": purchases}).status_code == 200
    wait_for(lambda: _stored(service) >= stored + len(purchases), 60, "the purchases stored")

    def counted():
        body = requests.get(service.url + "/experiments/" + experiment["experiment_id"], timeout=10).json()
        arm = {a["name"]: a for a in body["results"]["arms"]}
        return body if arm["model"]["successes"] == len(purchases) else None

    body = wait_for(counted, 60, "the purchases attributed")
    found = body["results"]
    arm = {a["name"]: a for a in found["arms"]}
    assert arm["popularity"]["successes"] == 0 and arm["model"]["users"] + arm["popularity"]["users"] == len(SHOPPERS) + sum(
        "experiment" in p for p in probes)
    assert found["winner"] == "model" and found["comparisons"][0]["significant"], found
    assert not found["srm"]["mismatch"] and "mSPRT" in found["method"]["test"]

    r = _post(service, "/experiments/{}/conclude".format(experiment["experiment_id"]), {"apply": True})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "concluded" and r.json()["concluded"]["applied_version"] == first
    info = requests.get(service.url + "/model/info", timeout=10).json()
    assert info["current"]["version"] == first
    # Concluded: users get the (now pinned) current version again, with no experiment.
    answer = wait_for(lambda: (lambda a: a if "experiment" not in a and a["model_version"] == first else None)(
        _recommend(service, SHOPPERS[0])), 30, "the default served again")
    assert answer["recommendation_id"]
    listed = requests.get(service.url + "/experiments", timeout=10).json()["experiments"]
    assert [e["status"] for e in listed if e["experiment_id"] == experiment["experiment_id"]] == ["concluded"]
    assert _post(service, "/model/unpin").status_code == 200
