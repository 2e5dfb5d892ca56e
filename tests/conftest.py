"""Test-wide set-up: the shared package and the repo root are importable; paths to both runtimes."""
import os
import sys
import time

from hypothesis import settings as hypothesis_settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "shared")):
    if path not in sys.path:
        sys.path.insert(0, path)

# Tests never talk to real AWS: dummy credentials, and no tracing.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.pop("AWS_ENDPOINT_URL", None)

# Hypothesis: "ci" (what `make test` uses, and the default) draws the same examples on every run, so a
# red run is a defect to fix, not bad luck; "explore" draws new ones (HYPOTHESIS_PROFILE=explore).
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MODEL_PYTHON = os.path.join(ROOT, ".venv-model", "bin", "python")
CONTROL_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")


def wait_for(predicate, timeout_s: float, what: str):
    """predicate()'s first truthy value, polled every 0.5 s; AssertionError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("timed out waiting for " + what)
