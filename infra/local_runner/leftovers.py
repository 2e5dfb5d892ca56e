"""Processes a killed runner left behind, stopped before its successor serves the same state folder.

Workers, training tasks and the Kafka broker run in sessions of their own, so that a Ctrl-C in the
terminal reaches only the runner, which then stops them in order. When the runner itself is killed
(kill -9, the OOM killer) they outlive it: a worker in the middle of an invocation finishes it, a
training task keeps training, and their retried requests reach the next runner's cloud on the same
port, even while it is restoring the state folder. What they write then can be overwritten by the
restore, or land beside restored state that knows nothing of it. Seen in the quickstart's kill -9
test: the killed consumer's record that a batch object was counted reached the new cloud before its
restore, the count itself was restored over, and the batch's redelivery then found it counted:
`stored_actions` stayed 20 short for good.

So every process the runner starts carries MARKER=<state folder> in its environment, and a runner
starting on that folder first kills those whose runner is gone. Linux only (/proc); elsewhere
nothing is found.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from typing import Dict, List, Optional

log = logging.getLogger("runner")

MARKER = "EASYREC_LOCAL_RUNNER_STATE"


def marker_env(state_dir: str) -> Dict[str, str]:
    return {MARKER: os.path.realpath(state_dir)}


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return None


def _parent(pid: int) -> Optional[int]:
    stat = _read("/proc/{}/stat".format(pid))
    if stat is None:
        return None
    # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after its last ")"
    return int(stat.rsplit(b")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    stat = _read("/proc/{}/stat".format(pid))
    return stat is not None and stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def _owned_by_a_live_runner(pid: int) -> bool:
    parent = _parent(pid)
    if parent is None or parent <= 1:
        return False
    argv = (_read("/proc/{}/cmdline".format(parent)) or b"").split(b"\0")
    runs_a_runner = b"infra.local_runner" in argv or any(a.endswith(b"local_runner/__main__.py") for a in argv)
    return runs_a_runner and _alive(parent)


def find_leftovers(state_dir: str) -> List[int]:
    """Processes started by an earlier runner on `state_dir` whose runner is no longer alive."""
    if not os.path.isdir("/proc"):
        return []
    wanted = "{}={}".format(MARKER, os.path.realpath(state_dir)).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        environ = _read("/proc/{}/environ".format(entry))
        if environ is not None and wanted in environ.split(b"\0") and not _owned_by_a_live_runner(int(entry)):
            found.append(int(entry))
    return found


def stop_leftovers(state_dir: str, timeout_s: float = 10.0) -> List[int]:
    """Kill (SIGKILL: what was done to their runner) every leftover of `state_dir`; wait until gone."""
    found = find_leftovers(state_dir)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in found) and time.monotonic() < deadline:
        time.sleep(0.05)
    if found:
        log.warning("stopped %d processes an earlier runner on %s left behind: %s", len(found), state_dir, found)
    return found
