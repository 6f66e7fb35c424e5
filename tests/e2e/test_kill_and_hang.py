"""Kills at the worst moment and rewards that hang, through the command line (slow)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.distributed.helpers import start_cli
from tests.helpers import read_metrics, run_cli


@pytest.mark.slow
def test_sigkill_during_a_save_leaves_no_checkpoint_that_looks_complete(tmp_path, tiny_model):
    from vlexp.recipe import checkpoints

    run_dir = tmp_path / "run"
    args = ("algo=sft", "train.max_steps=40", "train.save_steps=1", f"hydra.run.dir={run_dir}")
    proc = start_cli(*args, log=tmp_path / "first.log")
    deadline = time.monotonic() + 400
    # Kill while a save is under way: its staging folder exists (the 2nd save, so that one
    # whole checkpoint exists before it).
    while time.monotonic() < deadline and proc.poll() is None:
        if list(run_dir.glob(".partial-checkpoint-*")) and list(run_dir.glob("checkpoint-*")):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-2000:]
    published = list(run_dir.glob("checkpoint-*"))
    assert published and all(checkpoints.problem(path) is None for path in published)
    result = run_cli(*args[:1], "train.max_steps=3", "resume=auto", args[3], timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(run_dir.glob(".partial-checkpoint-*"))  # the killed save's leftover is gone
    steps = [row["step"] for row in read_metrics(run_dir) if "loss" in row]
    assert steps == sorted(set(steps))  # no step twice: rows after the checkpoint were trimmed


def odd_hangs(completions, **kwargs):
    """Scores 1.0, but spins forever on completions of odd length (a hung reward)."""
    scores = []
    for completion in completions:
        text = completion if isinstance(completion, str) else str(completion)
        while len(text) % 2:
            pass
        scores.append(1.0)
    return scores


@pytest.mark.slow
def test_a_hung_reward_is_abandoned_counted_and_the_run_finishes(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = run_cli(
        "algo=grpo",
        "train.max_steps=2",
        "reward=[accuracy]",
        "reward.funcs.accuracy._target_=tests.e2e.test_kill_and_hang.odd_hangs",
        "reward.on_error=zero",
        "reward.timeout_s=2",
        f"hydra.run.dir={run_dir}",
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [row for row in read_metrics(run_dir) if "rewards/odd_hangs/timeouts" in row]
    assert [row["step"] for row in rows] == [1, 2]
    assert sum(row["rewards/odd_hangs/timeouts"] for row in rows) > 0
    assert "did not return within reward.timeout_s=2 s" in result.stdout + result.stderr
    assert time.monotonic() - started < 300
