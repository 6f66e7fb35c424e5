"""One writer per run dir: a second run on the same folder stops at once; a dead one's lock
is no obstacle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import run_cli

HOLD = """
import sys, time
from vlexp.recipe.rundir import RunDirLock
lock = RunDirLock(sys.argv[1]); lock.acquire(); print("held", flush=True); time.sleep(120)
"""


def test_a_second_lock_on_the_same_dir_is_refused_until_the_first_is_released(tmp_path):
    from vlexp.recipe.rundir import RunDirBusy, RunDirLock

    first = RunDirLock(tmp_path / "run")
    first.acquire()
    with pytest.raises(RunDirBusy) as caught:
        RunDirLock(tmp_path / "run").acquire()
    message = str(caught.value)
    assert message.startswith(f"run dir {tmp_path / 'run'} is in use by another vlexp run (pid ")
    assert f"pid {os.getpid()} on " in message and "hydra.run.dir=DIR" in message
    first.release()
    again = RunDirLock(tmp_path / "run")
    again.acquire()  # released: free again
    again.release()


def test_the_lock_of_a_killed_process_is_stale(tmp_path):
    from vlexp.recipe.rundir import RunDirLock

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # SIGKILL: no cleanup ran, the lock file stays
    holder.wait()
    assert json.loads((tmp_path / ".vlexp.lock").read_text())["pid"] == holder.pid
    lock = RunDirLock(tmp_path)
    lock.acquire()
    assert json.loads((tmp_path / ".vlexp.lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_a_second_run_on_a_busy_run_dir_stops_at_once(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        result = run_cli("train.max_steps=1", f"hydra.run.dir={run_dir}", timeout=120)
        assert result.returncode == 1
        assert (
            result.stderr.strip()
            .splitlines()[-1]
            .startswith(
                f"vlexp: run dir {run_dir} is in use by another vlexp run (pid {holder.pid} on "
            )
        )
        assert time.monotonic() - started < 60
        assert not (run_dir / ".hydra").exists()  # stopped before Hydra wrote anything
    finally:
        holder.kill()
        holder.wait()
