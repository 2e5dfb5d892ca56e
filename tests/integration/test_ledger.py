"""One contract, two backends: the in-memory event ledger and DynamoDB (moto server)."""
import threading

import pytest

from easyrec_online import wiring
from easyrec_online.ingest.ledger import InMemoryEventLedger
from tests.integration.conftest import contract_backend


@pytest.fixture(params=["memory", "dynamodb"])
def ledger(request):
    return contract_backend(request, InMemoryEventLedger, wiring.event_ledger)


def never_stored(_key):
    return False


class TestEventLedgerContract:
    def test_new_ids_are_claimed_and_a_retry_of_the_same_object_keeps_them(self, ledger):
        first = ledger.claim(["e1", "e2", "e2"], "obj-a", never_stored, now=1000.0)
        assert first.owned == first.new == {"e1", "e2"}
        again = ledger.claim(["e1", "e2", "e3"], "obj-a", never_stored, now=1001.0)
        assert again.owned == {"e1", "e2", "e3"} and again.new == {"e3"}

    def test_an_id_stored_by_another_object_is_a_duplicate(self, ledger):
        ledger.claim(["e1"], "obj-a", never_stored, now=1000.0)
        asked = []
        claims = ledger.claim(["e1", "e2"], "obj-b", lambda key: asked.append(key) or key == "obj-a", now=1001.0)
        assert claims.duplicates == {"e1"} and claims.owned == claims.new == {"e2"}
        assert asked == ["obj-a"]  # asked once per owner, only for the conflicting ids

    def test_an_unstored_claim_is_in_flight_until_its_lease_runs_out_then_taken_over(self, ledger):
        ledger.claim(["e1"], "obj-a", never_stored, now=1000.0)
        assert ledger.claim(["e1"], "obj-b", never_stored, now=1010.0, lease_s=300).in_flight == {"e1"}
        late = ledger.claim(["e1"], "obj-b", never_stored, now=1400.0, lease_s=300)
        assert late.owned == {"e1"} and late.new == set()  # counted once already, by obj-a's claim
        assert ledger.claim(["e1"], "obj-c", lambda key: key == "obj-b", now=1401.0).duplicates == {"e1"}

    def test_racing_consumers_claim_each_id_exactly_once(self, ledger):
        ids = ["e{}".format(i) for i in range(120)]
        results = {}

        def consume(owner):
            results[owner] = ledger.claim(ids, owner, never_stored, now=1000.0)

        threads = [threading.Thread(target=consume, args=("obj-{}".format(n),)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        owned = [e for claims in results.values() for e in claims.owned]
        assert sorted(owned) == sorted(ids)  # no id owned twice, none dropped
        assert all(claims.owned | claims.in_flight == set(ids) for claims in results.values())

    def test_ids_claimed_between_the_read_and_the_write_are_lost_and_the_rest_claimed(self, ledger):
        # A transaction of 150 claims (two chunks) meets three ids another consumer claimed just before.
        ids = ["e{:03d}".format(k) for k in range(150)]
        assert ledger._put_new(["e005", "e120", "e149"], "obj-b", 999.0) == {}
        lost = ledger._put_new(ids, "obj-a", 1000.0)
        assert sorted(lost) == ["e005", "e120", "e149"] and all(e["owner"] == "obj-b" for e in lost.values())
        owners = ledger._existing(ids)
        assert sum(1 for e in owners.values() if e["owner"] == "obj-a") == 147 and len(owners) == 150

