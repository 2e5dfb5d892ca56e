"""The Python client (clients/python) against the running service: every kind of call, typed errors,
chunked ingest with client-made event ids (so a retried request adds nothing twice), bulk profiles,
training, scoring and experiments."""
import pytest
import requests
from easyrec_online_client import BadRequest, Client, NoModel, NotFound

from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.model_runtime


@pytest.fixture(scope="module")
def client(service):
    return Client(service.url, retries=2, backoff_s=0.05)


def _stored(client):
    return client.streaming_status()["consumer"]["stored_actions"]


def test_health_the_document_and_no_model_yet(client):
    assert client.health()["status"] == "healthy"
    assert "/recommend" in client.openapi()["paths"]
    with pytest.raises(NoModel) as caught:
        client.recommend("nobody", ["a", "b"])
    assert caught.value.status == 503 and "training" in caught.value.detail


def test_bad_input_raises_bad_request_naming_the_field(client):
    with pytest.raises(BadRequest) as caught:
        client.add_actions([{"user_id": "u", "item_id": "a"}, {"user_id": None, "item_id": "b"}])
    assert caught.value.error and caught.value.fields == ["samples[1].user_id"], caught.value.fields
    assert caught.value.accepted_event_ids == []
    with pytest.raises(NotFound):
        client.get_user("never-stored")


def test_actions_in_chunks_with_progress_retried_requests_add_nothing_twice_then_training_and_scoring(client):
    # Buyers of "a" bounce off "b"; the rest of the crowd buys "c".
    samples = []
    for k in range(60):
        samples.append({"user_id": "fan-{}".format(k), "item_id": "a", "action_type": "purchase", "label": 1})
        samples.append({"user_id": "fan-{}".format(k), "item_id": "b", "action_type": "view", "label": 0})
        samples.append({"user_id": "crowd-{}".format(k), "item_id": "c", "action_type": "purchase", "label": 1})
    for n, sample in enumerate(samples):
        if n % 2:  # half name their own id, the rest get one from the client
            sample["event_id"] = "client-e2e-{}".format(n)
    seen = []
    before = _stored(client)
    ids = client.add_actions(iter(samples), chunk_size=50, progress=seen.append)
    assert seen == [50, 100, 150, 180] and len(ids) == len(set(ids)) == len(samples)
    assert ids[1] == "client-e2e-1" and len(ids[0]) == 32
    # The same request sent again (as a retry after a lost answer would be): nothing new is stored.
    again = client.add_actions([dict(s, event_id=i) for s, i in zip(samples[:50], ids[:50])])
    assert again == ids[:50]
    wait_for(lambda: _stored(client) >= before + len(samples), 60, "the actions stored")
    assert _stored(client) == before + len(samples)

    assert client.put_users({"fan-{}".format(k): {"segment": "fan"} for k in range(3)}) == 3
    assert client.put_items([("a", {"category": "x"}), ("b", {"category": "y"})]) == 2
    assert client.get_item("a")["profile"] == {"category": "x"}

    client.start_training()
    status = client.wait_for_training(timeout_s=300)
    assert status["status"] == "succeeded", status
    answer = client.recommend("fan-1", ["a", "b"], top_k=2)
    assert [r["item_id"] for r in answer["recommendations"]][0] == "a" and answer["recommendation_id"]
    scores = client.predict(pairs=[("fan-1", "a"), ("fan-1", "b")])
    assert len(scores["predictions"]) == 2
    assert client.model_info()["current"]["version"] == answer["model_version"]
    assert client.updates(limit=5)["updates"][0]["version"] == answer["model_version"]


def test_experiments_through_the_client(client):
    created = client.create_experiment({"name": "client", "arms": [
        {"name": "now", "weight": 50, "strategy": "current"}, {"name": "pop", "weight": 50, "strategy": "popularity"}]})
    assert created["status"] == "running"
    assert created["experiment_id"] in [e["experiment_id"] for e in client.experiments()]
    assert "results" in client.experiment(created["experiment_id"])
    assert client.stop_experiment(created["experiment_id"])["status"] == "stopped"


def test_a_lost_connection_is_retried_where_that_is_safe_and_not_where_it_is_not(client, service):
    class Flaky(requests.Session):
        """Drops the first attempt of every request."""

        def __init__(self):
            super().__init__()
            self.calls = 0

        def request(self, *args, **kwargs):
            self.calls += 1
            if self.calls % 2:
                raise requests.ConnectionError("dropped")
            return super().request(*args, **kwargs)

    flaky = Client(service.url, retries=2, backoff_s=0.01, session=Flaky())
    assert flaky.health()["status"] == "healthy"
    assert flaky.add_actions([{"user_id": "retry", "item_id": "a", "action_type": "purchase",
                              "event_id": "client-retry-1"}]) == ["client-retry-1"]
    with pytest.raises(requests.ConnectionError):
        flaky.unpin()  # not retried: the caller decides
