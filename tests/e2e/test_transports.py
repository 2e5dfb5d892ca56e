"""The whole service with each streamed transport the template offers (StreamTransport=kinesis,
StreamTransport=kafka): the runner creates the Kinesis stream or starts a real Kafka-protocol
broker, wires the transport's consumer function and event source mapping from template.yaml, and
actions accepted by POST /online/data/add are stored once, visible in /online/streaming/status."""
import pytest
import requests

from tests.e2e.conftest import RunningService, wait_for


@pytest.fixture(scope="module", params=["kinesis", "kafka"])
def streamed(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transport-" + request.param)
    running = RunningService(str(tmp / "state"), str(tmp / "runner.log"), [],
                             parameters=["StreamTransport=" + request.param])
    running.start()
    yield request.param, running
    if running.process is not None and running.process.poll() is None:
        running.stop()


def test_accepted_actions_are_stored_once_through_the_transport(streamed):
    transport, service = streamed
    samples = [{"user_id": i % 9, "item_id": i, "label": 1, "event_id": "{}-{}".format(transport, i)}
               for i in range(150)]
    for start in (0, 100):
        r = requests.post(service.url + "/online/data/add", json={"samples": samples[start:start + 100]}, timeout=30)
        assert r.status_code == 200, r.text
    r = requests.post(service.url + "/online/data/add", json={"samples": samples[:5]}, timeout=30)  # a client retry
    assert r.status_code == 200, r.text

    def stored():
        status = requests.get(service.url + "/online/streaming/status", timeout=10).json()
        return status if status["consumer"]["stored_actions"] >= 150 else None

    status = wait_for(stored, 90, "the {} consumer to store every action".format(transport))
    assert status["transport"] == transport and "stream" in status and status["status"] == "ok"
    assert status["consumer"]["poison_messages"] == 0
    r = requests.post(service.url + "/online/streaming/consume", json={}, timeout=10)
    assert r.status_code == 409 and r.json()["error"] == "not_a_queue"
