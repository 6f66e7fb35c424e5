"""A short write in torch.save is recognised as a full disk, by the texts torch really raises."""

from __future__ import annotations

import subprocess
import sys

from vlexp.recipe.checkpoints import disk_full

# A child process whose file-size limit is 1 MiB saves 8 MiB with torch.save: the write stops
# short exactly as on a full disk (SIGXFSZ ignored, so the write fails instead of killing it).
SHORT_WRITE = """
import os, resource, signal, sys, tempfile, torch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    torch.save({"state": torch.zeros(1 << 21)}, os.path.join(tempfile.mkdtemp(), "o.pt"))
except BaseException as err:
    while err is not None:
        print(type(err).__name__ + "|" + str(err).replace("\\n", " "))
        err = err.__cause__ or err.__context__
"""


def _chain(lines: list[str]) -> BaseException:
    """The printed chain rebuilt: the first line outermost."""
    error: BaseException | None = None
    for line in reversed(lines):
        _, _, text = line.partition("|")
        outer = RuntimeError(text)
        outer.__context__ = error
        error = outer
    return error


def test_torch_short_write_is_a_full_disk():
    out = subprocess.run(
        [sys.executable, "-c", SHORT_WRITE], capture_output=True, text=True, timeout=120
    ).stdout.strip()
    lines = out.splitlines()
    assert lines, "torch.save did not fail past the file-size limit"
    assert disk_full(_chain(lines)), lines


def test_other_runtime_errors_are_not_a_full_disk():
    assert not disk_full(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not disk_full(ValueError("unexpected position argument"))
