"""Run vlexp as a user does and interrupt it the way a scheduler does (SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO

TWO_RANKS = ("launcher=accelerate", "launcher.num_processes=2")


def start_cli(*args: str, log: Path) -> subprocess.Popen:
    """`python -m vlexp ARGS` in the background, output to `log`."""
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "vlexp", *args], cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
    )


def sigterm_after_step(proc: subprocess.Popen, run_dir: Path, step: int, timeout: int = 600) -> int:
    """Send SIGTERM (to the parent only) once metrics.jsonl shows `step`; return the exit code."""
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file():
            steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if line]
            if steps and max(steps) >= step:
                os.kill(proc.pid, signal.SIGTERM)
                break
        time.sleep(0.05)
    return proc.wait(timeout=timeout)


def load_without_deepspeed(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where `import deepspeed` fails, as if not installed."""
    blocker = "import sys; sys.modules['deepspeed'] = None\n"
    return subprocess.run(
        [sys.executable, "-c", blocker + code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
