"""End-to-end: the service as `make run` starts it (python -m infra.local_runner), over HTTP."""
import json
import os
import shlex
import signal
import subprocess
import time
from typing import List, Optional, Sequence

import pytest
import requests

from tests.conftest import CONTROL_PYTHON, ROOT, wait_for  # noqa: F401  (wait_for: the e2e modules import it from here)

SEED_COMMANDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed_quickstart.txt")


class RunningService:
    """The local runner as `make run` starts it, on ports the system gives (port 0; the runner says
    which in its --ready-file), with its own state folder. stop() and start() again keep the state."""

    def __init__(self, state_dir: str, log_path: str, extra_env: List[str], parameters: Sequence[str] = ()):
        self.state_dir = state_dir
        self.log_path = log_path
        self.extra_env = extra_env
        self.parameters = list(parameters)  # template parameter overrides, e.g. StreamTransport=kafka
        self.ready_file = os.path.join(os.path.dirname(os.path.abspath(state_dir)), "runner-ready.json")
        self.url = ""  # http://127.0.0.1:<port> once started
        self.cloud_url = ""
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout_s: float = 180) -> None:
        if os.path.exists(self.ready_file):
            os.remove(self.ready_file)
        argv = [CONTROL_PYTHON, "-m", "infra.local_runner", "--port", "0", "--cloud-port", "0",
                "--state-dir", self.state_dir, "--ready-file", self.ready_file]
        for pair in self.extra_env + self._shared_cores_env():
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
            if os.path.exists(self.ready_file):
                with open(self.ready_file) as f:
                    ready = json.load(f)
                self.url, self.cloud_url = ready["url"], ready["cloud_url"]
                try:
                    if requests.get(self.url + "/health", timeout=2).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.2)
        raise RuntimeError("runner did not come up:\n" + self.log())

    def _shared_cores_env(self) -> List[str]:
        """Under pytest-xdist two test workers share the machine's cores: one TensorFlow thread per pool
        in the service's model-runtime processes, so that two services do not fight over them (a
        setting the service names itself wins)."""
        if not os.environ.get("PYTEST_XDIST_WORKER"):
            return []
        named = {pair.split("=", 1)[0] for pair in self.extra_env}
        return [pair for pair in ("TF_NUM_INTRAOP_THREADS=1", "TF_NUM_INTEROP_THREADS=1")
                if pair.split("=", 1)[0] not in named]

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
                              "CONTINUOUS_TRAINING=false"],
                             # a batch whose consumer died comes back within seconds, not minutes
                             parameters=["ActionsVisibilityTimeout=5"])
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()
