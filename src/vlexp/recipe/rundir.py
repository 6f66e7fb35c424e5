"""The run dir must take writes before anything slow starts, not at the first checkpoint.

`RunDirCheck` is a Hydra callback (conf/config.yaml, hydra.callbacks) that looks at the run
dir before Hydra creates it; `check_writable` writes and deletes a probe file at the start
of every job. No heavy imports here.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from vlexp.paths import private_temp

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
    probe = None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # A name of its own: every node's parent probes the shared run dir at the same time.
        probe = private_temp(run_dir / ".vlexp-write-test")
        with probe.open("wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "the disk is full" if full else (err.strerror or str(err))
        raise RunDirError(f"run dir {run_dir} is not writable: {what}; {_fix(run_dir)}") from None
    finally:
        if probe is not None:
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


class RunDirBusy(RunDirError):
    """Another live vlexp run holds the run dir's lock."""


LOCK_FILE = ".vlexp.lock"


def lock_file(node: int = 0) -> str:
    """The lock file of machine `node` of a run: `.vlexp.lock` for node 0 (and every
    single-machine run), `.vlexp.node<N>.lock` for the others.

    One lock per node, not one per run: a multi-node run starts one vlexp parent per node
    on the same run dir, and on NFS, Lustre (mounted with flock) and GPFS an `flock` holds
    across machines, so with one file node 1 would be refused and node 0 would wait for it at
    the rendezvous. Per node rather than node 0 alone, so that a second run started on a
    busy dir stops at once on every node (a node without a lock would overwrite the live
    run's config and then hang at the rendezvous), and two machines both told
    machine_rank=N are caught. Node 0 keeps the plain name, so a single-machine run and a
    multi-node one on the same dir exclude each other."""
    return LOCK_FILE if node == 0 else f".vlexp.node{node}.lock"


def node_of(config: Any) -> int:
    """This machine's node index in the run: `launcher.machine_rank` when the launcher spans
    several machines, else 0."""
    launcher = config.get("launcher") or {}
    if int(launcher.get("num_machines", 1) or 1) <= 1:
        return 0
    return int(launcher.get("machine_rank", 0) or 0)


class RunDirLock:
    """One writer per run dir and node: an exclusive `flock` on RUN_DIR/.vlexp.lock (node 0;
    `lock_file` names the others') for the run's life.

    The kernel drops the lock when its process ends, however it ends (SIGKILL, OOM, power
    loss), so a lock left by a dead run is never in the way; the file also records the
    holder (pid, host, start) for the message. Where the file system has no `flock`, the
    recorded pid is checked instead (same host: alive or not)."""

    def __init__(self, run_dir: Path, node: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.node = node
        self.path = self.run_dir / lock_file(node)
        self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunDirBusy(self._busy_message()) from None
        except OSError as err:  # no flock here (some network file systems)
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                handle.close()
                raise
            if _holder_alive(self._holder()):
                handle.close()
                raise RunDirBusy(self._busy_message()) from None
        handle.seek(0)
        handle.truncate()
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        handle.write(json.dumps(holder) + "\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file drops the flock
            self._handle = None

    def _holder(self) -> dict:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def _busy_message(self) -> str:
        holder = self._holder()
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        if isinstance(holder.get("started"), int | float):
            who += ", started " + time.strftime(
                "%Y-%m-%d %H:%M:%S", time.localtime(holder["started"])
            )
        node = f" (node {self.node}'s lock, {self.path.name})" if self.node else ""
        return (
            f"run dir {self.run_dir} is in use by another vlexp run ({who}){node}: two runs in one "
            "folder would mix their metrics, config and checkpoints. Wait for it to end (or stop "
            f"it), or {_fix(self.run_dir)}"
        )


def _holder_alive(holder: dict) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return False  # another host cannot be asked; without flock, last writer wins
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # a stale lock: its run is gone
    except PermissionError:
        return True
    return True


class RunDirCheck(Callback):
    """Before Hydra makes the run dir: its nearest existing ancestor must be a writable folder,
    and no other run may hold it (the lock is taken here, before Hydra writes `.hydra/`, and
    held until the run, or each job of a sweep, ends)."""

    def __init__(self) -> None:
        self.lock: RunDirLock | None = None

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir)).expanduser().absolute()
        ancestor = _existing_ancestor(run_dir)
        if not ancestor.is_dir():
            reason = f"{ancestor} is a file, not a folder"
        elif not os.access(ancestor, os.W_OK | os.X_OK):
            reason = f"{ancestor} is not writable"
        else:
            self._lock(run_dir, node_of(config))
            return
        raise SystemExit(f"vlexp: run dir {run_dir} cannot be created: {reason}; {_fix(run_dir)}")

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.runtime.output_dir)).expanduser().absolute()
        if self.lock is None or self.lock.run_dir.resolve() != run_dir.resolve():  # -m job
            self._lock(run_dir, node_of(config))

    def on_job_end(self, config: Any, **kwargs: Any) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        self.on_job_end(config)

    def _lock(self, run_dir: Path, node: int) -> None:
        self.on_job_end(None)
        lock = RunDirLock(run_dir, node)
        try:
            lock.acquire()
        except RunDirBusy as err:
            raise SystemExit(f"vlexp: {err}") from None
        self.lock = lock
