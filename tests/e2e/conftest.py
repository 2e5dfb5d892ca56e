"""End-to-end: the service as `make run` starts it (python -m infra.local_runner), over HTTP."""
import os
import shlex
import signal
import subprocess
import time
from typing import List, Optional, Sequence

import pytest
import requests

from tests.conftest import CONTROL_PYTHON, ROOT, wait_for  # noqa: F401  (wait_for: the e2e modules import it from here)
from tests.integration.conftest import free_port

SEED_COMMANDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed_quickstart.txt")


class RunningService:
    def __init__(self, state_dir: str, log_path: str, extra_env: List[str], parameters: Sequence[str] = ()):
        self.state_dir = state_dir
        self.log_path = log_path
        self.extra_env = extra_env
        self.parameters = list(parameters)  # template parameter overrides, e.g. StreamTransport=kafka
        self.port = free_port()
        self.cloud_port = free_port()
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return "http://127.0.0.1:{}".format(self.port)

    @property
    def cloud_url(self) -> str:
        return "http://127.0.0.1:{}".format(self.cloud_port)

    def start(self, timeout_s: float = 180) -> None:
        argv = [CONTROL_PYTHON, "-m", "infra.local_runner", "--port", str(self.port),
                "--cloud-port", str(self.cloud_port), "--state-dir", self.state_dir]
        for pair in self.extra_env:
            argv += ["--env", pair]
        for pair in self.parameters:
            argv += ["--parameter", pair]
        log = open(self.log_path, "ab")
        # LOCAL_* settings are the runner's own (e.g. LOCAL_QUIET_ACCESS_LOG), the rest its functions'.
        own = dict(pair.split("=", 1) for pair in self.extra_env if pair.startswith("LOCAL_"))
        self.process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, **own))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("runner exited early:\n" + self.log())
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError("runner did not come up:\n" + self.log())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def curl(self, command: str) -> subprocess.CompletedProcess:
        """Run a seed curl command verbatim, pointed at this service; appends the status code."""
        argv = shlex.split(command.replace("http://localhost:5000", self.url))
        assert argv[0] == "curl"
        return subprocess.run(argv + ["-s", "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=60)


def seed_commands() -> List[str]:
    with open(SEED_COMMANDS) as f:
        blocks = f.read().split("\n\n")
    return [b.replace("\\\n", " ").strip() for b in blocks if b.strip().startswith("curl")]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("service")
    running = RunningService(str(tmp / "state"), str(tmp / "runner.log"),
                             # The one-shot flow (training when started); tests/e2e/test_learning_by_default.py
                             # runs the default, a continuous trainer.
                             ["TRAIN_STEPS=100", "CURRENT_CHECK_INTERVAL_MS=200", "PROMOTION_AUC_TOLERANCE=1.0",
                              "CONTINUOUS_TRAINING=false"])
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()
