"""Warm function workers: one OS process per concurrent invocation slot, in the function's runtime."""
from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
import uuid
from typing import IO, Any, Callable, Dict, List, Optional

WORKER_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_main.py")
COLD_START_LIMIT_S = 180.0

_console_lock = threading.Lock()


def console(prefix: str, line: str) -> None:
    with _console_lock:
        sys.stdout.write("[{}] {}\n".format(prefix, line.rstrip("\n")))
        sys.stdout.flush()


def pump_lines(stream: IO[bytes], prefix: str, sink: Optional[Callable[[str], None]] = None) -> threading.Thread:
    def run() -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            console(prefix, line)
            if sink is not None:
                sink(line)
        stream.close()

    thread = threading.Thread(target=run, name="log-" + prefix, daemon=True)
    thread.start()
    return thread


class InvokeError(Exception):
    """The function did not return a result: it raised, timed out, or its process died."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__("{}: {}".format(kind, message))
        self.kind = kind
        self.message = message


class Worker:
    def __init__(self, name: str, python: str, code_dir: str, handler: str, env: Dict[str, str]) -> None:
        self.name = name
        self._argv = [python, WORKER_MAIN, code_dir, handler]
        self._env = env
        self._code_dir = code_dir
        self.process: Optional[subprocess.Popen] = None
        self.init_s: Optional[float] = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self._env, cwd=self._code_dir, start_new_session=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        pump_lines(self.process.stderr, self.name)
        ready = self._next_reply(COLD_START_LIMIT_S)
        if not ready.get("ready"):
            self.stop()
            raise InvokeError("InitError", ready.get("error", "cold start failed"))
        self.init_s = ready.get("init_s")

    def _read_exact(self, size: int, deadline: float) -> Optional[bytes]:
        """`size` bytes of the reply pipe, or None at end of file. Read by the invoking thread itself
        (the worker serves one invocation at a time), straight from the descriptor: no reader thread
        to hand the reply over, which costs a thread switch on every request."""
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        chunks: List[bytes] = []
        while size > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, min(size, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _next_reply(self, timeout_s: float) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        try:
            header = self._read_exact(4, deadline)
            data = self._read_exact(struct.unpack(">I", header)[0], deadline) if header is not None else None
        except TimeoutError:
            self.stop()
            raise InvokeError("Timeout", "no answer within {:.0f} s; the worker was stopped".format(timeout_s))
        if data is None:
            code = self.process.wait() if self.process else None
            raise InvokeError("ProcessExited", "the function's process exited (code {})".format(code))
        return json.loads(data.decode("utf-8"))

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def invoke(self, event: Dict[str, Any], timeout_s: float) -> Any:
        assert self.process is not None and self.process.stdin is not None
        data = json.dumps({"event": event, "request_id": str(uuid.uuid4())}).encode("utf-8")
        try:
            self.process.stdin.write(struct.pack(">I", len(data)) + data)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise InvokeError("ProcessExited", str(exc))
        reply = self._next_reply(timeout_s)
        if not reply.get("ok"):
            error = reply.get("error", {})
            raise InvokeError(error.get("errorType", "Error"), error.get("errorMessage", ""))
        return reply.get("result")

    def stop(self, grace_s: float = 3.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            if self.process.stdin:
                self.process.stdin.close()  # a clean exit for a worker waiting for work
            self.process.wait(timeout=grace_s)
        except (subprocess.TimeoutExpired, OSError):
            self.process.kill()
            self.process.wait(timeout=5)


class FunctionPool:
    """Up to `max_workers` warm workers of one function; invocations wait for a free one."""

    def __init__(self, name: str, python: str, code_dir: str, handler: str, env: Dict[str, str],
                 timeout_s: float, max_workers: int = 2) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.env = env
        self._factory = lambda: Worker(name, python, code_dir, handler, env)
        self._idle: List[Worker] = []
        self._all: List[Worker] = []
        self._max = max_workers
        self._cond = threading.Condition()
        self.invocations = 0

    def prewarm(self) -> None:
        worker = self._spawn()
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def _spawn(self) -> Worker:
        worker = self._factory()
        with self._cond:
            self._all.append(worker)
        try:
            worker.start()
        except Exception:
            with self._cond:
                self._all.remove(worker)
            raise
        return worker

    def _acquire(self) -> Worker:
        with self._cond:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive:
                        return worker
                    self._all.remove(worker)
                if len(self._all) < self._max:
                    break
                self._cond.wait()
        return self._spawn()

    def _release(self, worker: Worker) -> None:
        with self._cond:
            if worker.alive:
                self._idle.append(worker)
            elif worker in self._all:
                self._all.remove(worker)
            self._cond.notify()

    def invoke(self, event: Dict[str, Any]) -> Any:
        worker = self._acquire()
        try:
            self.invocations += 1
            return worker.invoke(event, self.timeout_s)
        finally:
            self._release(worker)

    def stop(self) -> None:
        with self._cond:
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
        for worker in workers:
            worker.stop()

