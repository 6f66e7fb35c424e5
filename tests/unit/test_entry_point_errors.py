"""Every `python -m vlexp...` entry point answers an unknown override key with one line and
a non-zero exit status, never a traceback: the line `python -m vlexp` ends with."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

# Modules a user runs with `python -m` (they end in a `__main__` guard), found in the source
# so a new entry point gets its row. vlexp.worker is started by vlexp's own launcher with the
# resolved config file of a run, never with overrides typed by a person.
INTERNAL = {"vlexp.worker"}
ENTRY_POINTS = sorted(
    f"vlexp.{path.stem}"
    for path in (REPO / "src" / "vlexp").glob("*.py")
    if '__name__ == "__main__"' in path.read_text(encoding="utf-8")
    and f"vlexp.{path.stem}" not in INTERNAL
    and path.stem != "app"  # `python -m vlexp` itself: the reference below
)
# Takes run directories, not overrides: a `key=value` word is a directory that is not there.
NO_OVERRIDES = {"vlexp.compare": "vlexp.compare: nosuchkey=1 is not a directory"}


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, "HYDRA_FULL_ERROR": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def vlexp_line() -> str:
    done = run_module("vlexp", "train.max_step=3", "nosuchkey=1")
    assert done.returncode == 1
    return lines(done)[-1]


def test_the_reference_line_names_the_key_and_the_closest_one(vlexp_line):
    assert vlexp_line == (
        "vlexp: train.max_step is not a key of the config (nor is nosuchkey): "
        "did you mean train.max_steps=3?"
    )


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_an_unknown_key_is_one_line_and_a_failing_exit_status(module, vlexp_line):
    assert {"vlexp.plan", "vlexp.check_data", "vlexp.evaluate"} <= set(ENTRY_POINTS)
    if module in NO_OVERRIDES:
        done = run_module(module, "nosuchkey=1")
        assert (done.returncode, lines(done)) == (1, [NO_OVERRIDES[module]])
        return
    done = run_module(module, "train.max_step=3", "nosuchkey=1")
    assert "Traceback" not in done.stderr
    assert done.returncode != 0 and lines(done) == [vlexp_line]
    done = run_module(module, "nosuchkey=1")
    assert done.returncode != 0
    assert re.fullmatch(
        r"vlexp: nosuchkey is not a key of the config \(python -m vlexp(\.\w+)? --cfg job "
        r"prints them all\)",
        "\n".join(lines(done)),
    )
