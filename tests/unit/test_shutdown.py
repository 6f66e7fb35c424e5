"""SIGTERM always ends a run within launcher.shutdown_timeout; a second Ctrl-C at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

STUCK_RUN = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from vlexp.recipe.resume import SaveOnSigterm

callback = SaveOnSigterm(Path(sys.argv[1]), shutdown_timeout=float(sys.argv[2]))
callback.on_train_begin(None, SimpleNamespace(global_step=7, is_world_process_zero=True), None)
print("training", flush=True)

def stuck_in_a_reward():
    while True:
        time.sleep(0.1)

stuck_in_a_reward()
"""


def _start(tmp_path, timeout: float) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", STUCK_RUN, str(tmp_path), str(timeout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "training"
    return child


def test_sigterm_ends_a_stuck_step_within_the_shutdown_timeout(tmp_path):
    child = _start(tmp_path, 2.0)
    started = time.monotonic()
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 143
    assert time.monotonic() - started < 2.0 + 3
    message = [line for line in stderr.splitlines() if line.startswith("vlexp: ")]
    assert message[0] == (
        "vlexp: SIGTERM at step 7: the run did not stop within launcher.shutdown_timeout=2 s, "
        f"so the unfinished step is abandoned; no checkpoint in {tmp_path} yet. The main "
        "thread was stuck in:"
    )
    assert "in stuck_in_a_reward" in stderr


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    child = _start(tmp_path, 100.0)
    child.send_signal(signal.SIGINT)  # the first: checkpoint after this step, then stop
    time.sleep(0.5)
    assert child.poll() is None
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 130 and time.monotonic() - started < 5
    assert (
        "SIGINT: saving a checkpoint after this step, then stopping (Ctrl-C again exits" in stderr
    )
    assert (
        f"vlexp: second Ctrl-C: exiting at once, without saving step 7; no checkpoint in {tmp_path} yet"
        in stderr
    )
