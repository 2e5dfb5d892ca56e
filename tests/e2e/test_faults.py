"""Fault injection, once per process: kill -9 the API worker, the consumer, the trainer, the inference
worker and the runner itself under a steady mixed load (bench/faults.py; `python -m bench.faults`
kills each twice, at random moments). Every accepted action is stored once and trained (or held out) once, the
only failed requests are those in flight at a kill, and the current model is never unreadable."""
import pytest

from bench.faults import run_faults

pytestmark = pytest.mark.model_runtime


def test_every_process_killed_under_load_loses_nothing_and_serves_on(tmp_path):
    # Each kill once the service accepted 60 more actions since the last (not after a pause), and a
    # consumer's unfinished batch back after 5 s (the deployed default, 180 s, is the benchmark's).
    results = run_faults(kills=1, state_dir=str(tmp_path), pace_actions=60, parameters=["ActionsVisibilityTimeout=5"])
    print(results)
    assert results["accepted_actions"] > 100
    assert results["accepted_not_stored"] == 0 and results["stored_twice"] == 0, results
    assert results["accepted_not_covered"] == 0 and results["covered_twice"] == 0, results
    assert results["consumer_stored_actions"] == results["stored_event_ids"], results
    assert results["failed_otherwise"] == 0, results
    assert results["current_model_unreadable"] == [] and results["current_model_checks"] > 10, results
