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


def _node_config(run_dir, machines: int = 2, rank: int = 0):
    """What the Hydra callback reads from one node's config of a run (hydra.run.dir on a
    shared disk, launcher.num_machines and machine_rank)."""
    from omegaconf import OmegaConf

    launcher = {"name": "accelerate", "num_machines": machines, "machine_rank": rank}
    return OmegaConf.create({"hydra": {"run": {"dir": str(run_dir)}}, "launcher": launcher})


def test_every_node_of_a_multi_node_run_starts_on_one_shared_run_dir(tmp_path):
    """Each node's parent takes the run-dir lock; on NFS, Lustre and GPFS an flock holds
    across machines (as it does between processes here), so with one lock file per run node 1
    was refused and node 0 waited for it at the rendezvous."""
    from vlexp.recipe.rundir import RunDirCheck

    nodes = [RunDirCheck() for _ in range(3)]
    try:
        for rank, node in enumerate(nodes):
            node.on_run_start(_node_config(tmp_path / "run", machines=3, rank=rank))
        assert all(node.lock is not None and node.lock.held for node in nodes)
        holders = {json.loads(p.read_text())["pid"] for p in (tmp_path / "run").glob(".vlexp*")}
        assert holders == {os.getpid()}
    finally:
        for node in nodes:
            node.on_run_end(None)


def test_a_second_multi_node_run_on_a_busy_dir_stops_on_every_node(tmp_path):
    from vlexp.recipe.rundir import RunDirCheck

    first = [RunDirCheck(), RunDirCheck()]
    try:
        for rank, node in enumerate(first):
            node.on_run_start(_node_config(tmp_path / "run", rank=rank))
        for rank in (0, 1):
            with pytest.raises(SystemExit) as caught:
                RunDirCheck().on_run_start(_node_config(tmp_path / "run", rank=rank))
            message = str(caught.value)
            assert message.startswith(f"vlexp: run dir {tmp_path / 'run'} is in use by another")
            assert ("node 1's lock, .vlexp.node1.lock" in message) == (rank == 1)
        # A single-machine run on the dir of a live multi-node run: node 0's lock is the run's.
        with pytest.raises(SystemExit, match="is in use by another vlexp run"):
            RunDirCheck().on_run_start(_node_config(tmp_path / "run", machines=1))
    finally:
        for node in first:
            node.on_run_end(None)
