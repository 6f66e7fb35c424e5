"""`vlexp.light_exit.light_exit`: the commands end without the interpreter's final collections
over the libraries, and nothing a normal exit promises is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO

# Prints, after every other exit hook, whether a collection could still walk the objects alive.
REPORT_FREEZE = textwrap.dedent(
    """
    import atexit, gc, sys
    atexit.register(lambda: print("frozen", gc.get_freeze_count(), file=sys.stderr))
    """
)


def _python(code: str, *args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args] if not code else [sys.executable, "-c", code, *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_command_s_garbage_is_finalised_and_exit_hooks_run(tmp_path):
    code = textwrap.dedent(
        f"""
        import atexit, gc, sys
        from pathlib import Path
        from vlexp.light_exit import light_exit
        out = Path({str(tmp_path)!r})
        gc.disable()  # the cycle below stays garbage until someone collects it

        class Closes:
            def __del__(self):
                (out / "finalised").write_text("yes")

        def main():
            atexit.register(lambda: (out / "atexit").write_text("yes"))
            a, b = Closes(), Closes()
            a.other, b.other = b, a  # a cycle: only the garbage collector frees it
            del a, b
            raise SystemExit(3)

        light_exit(main)
        """
    )
    done = _python(REPORT_FREEZE + code)
    assert done.returncode == 3, done.stderr  # main's exit status is kept
    assert (tmp_path / "finalised").read_text() == "yes"
    assert (tmp_path / "atexit").read_text() == "yes"
    frozen = int(done.stderr.split("frozen ")[1].split()[0])
    assert frozen > 1000  # the modules' objects: the exit-time collections skip them


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "vlexp", "--cfg", "job"],
        ["-m", "vlexp.evaluate", "--cfg", "job"],
        ["-m", "vlexp.worker"],  # usage error: SystemExit, frozen all the same
    ],
    ids=["vlexp", "evaluate", "worker"],
)
def test_each_heavy_command_ends_through_light_exit(tmp_path, command):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(REPORT_FREEZE)
    done = subprocess.run(
        [sys.executable, *command],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": f"{site}:{REPO / 'src'}"},
    )  # fmt: skip
    assert "frozen" in done.stderr, done.stderr
    assert int(done.stderr.split("frozen ")[1].split()[0]) > 1000, done.stderr
