"""Work done once per machine of a multi-process run, its result read by the machine's other
ranks: the data check (it fetches remote images and writes 8-bit copies into the node's
cache, and reports bad records) runs on local rank 0 alone.

Local rank 0 computes and writes the result (or the error it raised) to one file in the run
dir, named by the node and by this launch; the other local ranks wait for that file, not at a
collective, so a data check longer than the process group's timeout (`ddp_timeout`, 30 min)
cannot time them out, and a local rank 0 that dies takes its node down through the launcher
as before. Once every rank has its copy (a barrier, where a process group exists) the file
is removed.

Per node, not once per run: the caches the check fills (`cache_dir`) are usually on each
machine's own disk.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from vlexp.paths import private_temp

log = logging.getLogger("vlexp")
T = TypeVar("T")
LAUNCH_ID = "VLEXP_LAUNCH_ID"  # set per launch by the node's vlexp parent (recipe.launch)
POLL_S = 0.2


@dataclass(frozen=True)
class Place:
    """This process in the run, as torch's launcher (torchrun, accelerate launch) says."""

    rank: int = 0
    local_rank: int = 0
    local_world: int = 1
    node: int = 0

    @property
    def shares(self) -> bool:
        """Other ranks on this machine would repeat the work."""
        return self.local_world > 1


def this_process() -> Place:
    """From torchelastic's variables: RANK, LOCAL_RANK, LOCAL_WORLD_SIZE and GROUP_RANK (the
    node; NODE_RANK or RANK // LOCAL_WORLD_SIZE where a launcher does not set it)."""
    env = os.environ
    rank = int(env.get("RANK", 0))
    local_world = int(env.get("LOCAL_WORLD_SIZE", 1))
    node = env.get("GROUP_RANK") or env.get("NODE_RANK") or rank // max(local_world, 1)
    return Place(rank, int(env.get("LOCAL_RANK", 0)), local_world, int(node))


def launch_id() -> str:
    """The same for every rank of one launch on one machine, new for each launch (a resumed
    run must not read the last launch's file): the parent's id, else the launcher agent's
    pid (every local rank is its child)."""
    return os.environ.get(LAUNCH_ID) or f"{socket.gethostname()}-{os.getppid()}"


def result_path(run_dir: Path, name: str, place: Place) -> Path:
    return Path(run_dir) / f".{name}.node{place.node}.{launch_id()}.pkl"


def once_per_node(name: str, run_dir: Path, compute: Callable[[], T]) -> T:
    """`compute()` on local rank 0; the other ranks of this machine get its result (or raise
    its error) without computing."""
    place = this_process()
    path = result_path(run_dir, name, place)
    if not place.shares:
        result = compute()
    elif place.local_rank == 0:
        try:
            result = compute()
        except Exception as err:
            _write(path, ("error", _picklable(err, name)))
            raise
        _write(path, ("result", result))
    else:
        log.info("rank %d: waiting for local rank 0's %s (%s)", place.rank, name, path)
        while not path.is_file():
            time.sleep(POLL_S)
        with path.open("rb") as handle:
            kind, result = pickle.load(handle)  # noqa: S301 (written by this run's own rank)
        if kind == "error":
            raise result
    _remove_when_all_read(path, place)
    return result


def _write(path: Path, payload: tuple) -> None:
    partial = private_temp(path)  # the readers see the whole file or none
    try:
        with partial.open("wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _picklable(err: Exception, name: str) -> Exception:
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"local rank 0's {name} failed: {type(err).__name__}: {err}")


def _remove_when_all_read(path: Path, place: Place) -> None:
    """A barrier of every rank (nodes with one rank too: it is a collective), then local rank
    0 removes the file; without a process group the file stays."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    if place.local_rank == 0:
        path.unlink(missing_ok=True)
