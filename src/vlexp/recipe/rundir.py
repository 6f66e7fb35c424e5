"""The run dir must take writes before anything slow starts, not at the first checkpoint.

`RunDirCheck` is a Hydra callback (conf/config.yaml, hydra.callbacks) that looks at the run
dir before Hydra creates it; `check_writable` writes and deletes a probe file at the start
of every job. No heavy imports here.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger("vlexp")
PROBE_BYTES = 1 << 20  # 1 MiB: a full disk or quota fails here, not at checkpoint-500
LOW_SPACE_BYTES = 1 << 30  # warn below 1 GiB free


class RunDirError(OSError):
    """The run dir cannot be written; the message names it and the fix."""


def _fix(path: Path) -> str:
    return f"choose another with hydra.run.dir=DIR (now {path})"


def check_writable(run_dir: Path) -> None:
    """Create the run dir if needed and write, sync and delete a 1 MiB probe file."""
    run_dir = Path(run_dir)
    probe = run_dir / ".vlexp-write-test"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "the disk is full" if full else (err.strerror or str(err))
        raise RunDirError(f"run dir {run_dir} is not writable: {what}; {_fix(run_dir)}") from None
    finally:
        probe.unlink(missing_ok=True)
    free = shutil.disk_usage(run_dir).free
    if free < LOW_SPACE_BYTES:
        log.warning(
            "run dir %s: only %.0f MiB free; checkpoints may not fit", run_dir, free / 2**20
        )


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class RunDirCheck(Callback):
    """Before Hydra makes the run dir: its nearest existing ancestor must be a writable folder."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir)).expanduser().absolute()
        ancestor = _existing_ancestor(run_dir)
        if not ancestor.is_dir():
            reason = f"{ancestor} is a file, not a folder"
        elif not os.access(ancestor, os.W_OK | os.X_OK):
            reason = f"{ancestor} is not writable"
        else:
            return
        raise SystemExit(f"vlexp: run dir {run_dir} cannot be created: {reason}; {_fix(run_dir)}")
