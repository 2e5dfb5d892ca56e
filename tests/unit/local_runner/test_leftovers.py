"""A runner killed with SIGKILL leaves its workers and tasks running (sessions of their own); the next
runner on the same state folder stops them before its cloud serves (infra/local_runner/leftovers.py)."""
import os
import subprocess
import sys
import time

from infra.local_runner.leftovers import find_leftovers, marker_env, stop_leftovers

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _spawn(env):
    return subprocess.Popen(SLEEPER, env=dict(os.environ, **env), start_new_session=True)


def test_the_processes_of_a_dead_runner_on_the_folder_are_killed_and_no_others(tmp_path):
    ours = tmp_path / "state"
    other = tmp_path / "other-state"
    leftover, unrelated, elsewhere = _spawn(marker_env(str(ours))), _spawn({}), _spawn(marker_env(str(other)))
    try:
        time.sleep(0.2)  # exec'd, so /proc shows the child's own environment
        assert find_leftovers(str(ours)) == [leftover.pid]
        assert stop_leftovers(str(ours)) == [leftover.pid]
        assert leftover.wait(timeout=10) == -9
        assert unrelated.poll() is None and elsewhere.poll() is None
        assert stop_leftovers(str(ours)) == []
    finally:
        for process in (leftover, unrelated, elsewhere):
            process.kill()
            process.wait()
