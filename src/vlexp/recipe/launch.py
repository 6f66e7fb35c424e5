"""Start the ranks of one run: `accelerate launch ... -m vlexp.worker RUN_DIR/config.resolved.yaml`.

The Hydra parent composes and resolves the config once (app.py); every rank then loads that
one file, so `${now:}` and every other interpolation have the same value on all ranks and
there is one run dir. Each call is its own process group on its own port, so the jobs of a
`-m` sweep never share a rendezvous.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vlexp.recipe import per_node

log = logging.getLogger("vlexp")


class RanksFailed(RuntimeError):
    """The ranks exited with an error; the message says where to look."""


def wanted(cfg: DictConfig) -> bool:
    """Spawn ranks for launcher=accelerate, for more than one process, or for DeepSpeed.

    DeepSpeed needs a process group even for one process (ZeRO-3 offload on one GPU), which
    the worker sets up; running it in its own process also keeps `-m` sweep jobs apart.
    """
    launcher = cfg.launcher
    return (
        launcher.get("name") == "accelerate"
        or int(launcher.get("num_processes", 1)) > 1
        or cfg.memory.get("deepspeed") is not None
    )


def free_port() -> int:
    """A TCP port nothing listens on now (29500 may be held by another job on the machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def accelerate_command(launcher: DictConfig, config_path: Path) -> list[str]:
    """The `accelerate launch` command line for this launcher config."""
    port = launcher.get("main_process_port") or free_port()
    processes = int(launcher.get("num_processes", 1))
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        # --multi_gpu is accelerate's torch.distributed launcher (it runs as MULTI_CPU when
        # no GPU is visible; `--cpu` would silently start one process). DeepSpeed is turned
        # on by the trainer args (memory.deepspeed), not here, so there is one source of truth.
        *(["--multi_gpu"] if processes > 1 else []),
        "--num_processes", str(processes),
        "--num_machines", str(launcher.get("num_machines", 1)),
        "--machine_rank", str(launcher.get("machine_rank", 0)),
        "--main_process_port", str(port),
        "--mixed_precision", "no",  # precision comes from train.bf16 (the trainer args)
        "--dynamo_backend", "no",
    ]  # fmt: skip
    if launcher.get("main_process_ip"):
        cmd += ["--main_process_ip", str(launcher.main_process_ip)]
    return [*cmd, "-m", "vlexp.worker", str(config_path)]


def rank_environment(launcher: DictConfig) -> dict[str, str]:
    """This process's environment plus what the launcher config sets for the ranks."""
    env = os.environ.copy()
    # One id per launch on this machine: the ranks name the data check's shared result by
    # it (recipe.per_node), so a resumed run never reads the last launch's file.
    env[per_node.LAUNCH_ID] = uuid.uuid4().hex
    # On SIGTERM the torch.distributed agent gives the ranks this long to save their
    # checkpoint before it SIGKILLs them (torch's default, 30 s, is short for a large model).
    env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] = str(launcher.get("shutdown_timeout") or 100)
    return env


def launch(cfg: DictConfig, config_path: Path) -> None:
    """Run this machine's ranks on `config_path` and wait for them (rank 0 logs the metrics)."""
    cmd = accelerate_command(cfg.launcher, config_path)
    log.info("starting %s processes: %s", cfg.launcher.num_processes, " ".join(cmd))
    # A new session makes the ranks one process group we can signal as a whole.
    # stderr passes through a pipe: shown as it comes, its tail kept to name the rank that died.
    child = subprocess.Popen(
        cmd, start_new_session=True, env=rank_environment(cfg.launcher), stderr=subprocess.PIPE
    )
    tail = _StderrTail(child.stderr)
    received: list[int] = []
    ranks: set[int] = set()
    previous = _forward_signals(child, received, ranks)
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        tail.join()
    run_dir = config_path.parent
    if received:
        # The agent may exit before its ranks (a second SIGTERM, e.g. SLURM's to every
        # process, cuts its wait short); leaving now would let the scheduler kill them mid-save.
        _wait_for_exit(ranks | {child.pid}, float(cfg.launcher.get("shutdown_timeout") or 100) + 30)
        # The ranks checkpointed and stopped (resume.SaveOnSigterm); a sweep must stop too.
        print(
            f"vlexp: stopped by {signal.Signals(received[0]).name}; checkpoints are in {run_dir}; "
            f"continue with the same command plus resume=auto hydra.run.dir={run_dir}",
            file=sys.stderr,
        )
        raise SystemExit(128 + received[0])
    if code:
        cause = root_cause(tail.text())
        first = f"vlexp: {cause}; the other ranks' errors follow from it. " if cause else "vlexp: "
        raise RanksFailed(
            f"{first}The ranks started on {config_path} exited with code {code}; "
            + (
                "that rank's own error, if it printed one, is in the log above"
                if cause
                else "the first error is in the log above"
            )
        )


class _StderrTail:
    """Copies a pipe to this process's stderr as it comes, keeping its last `keep` bytes."""

    def __init__(self, pipe: Any, keep: int = 256 * 1024) -> None:
        self.pipe, self.keep, self.buffer = pipe, keep, bytearray()
        self.thread = threading.Thread(target=self._copy, name="vlexp-rank-stderr", daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        out = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
        for chunk in iter(lambda: os.read(self.pipe.fileno(), 65536), b""):
            if out is not None:
                out.write(chunk)
                out.flush()
            else:
                sys.stderr.write(chunk.decode("utf-8", "replace"))
            self.buffer += chunk
            del self.buffer[: max(0, len(self.buffer) - self.keep)]

    def join(self) -> None:
        self.thread.join(timeout=10)

    def text(self) -> str:
        return self.buffer.decode("utf-8", "replace")


_ROOT = re.compile(
    r"Root Cause \(first observed failure\):.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.S
)
_DIED = re.compile(r"died with <Signals\.(SIG\w+): (\d+)>|returned non-zero exit status (\d+)")


def root_cause(text: str) -> str | None:
    """The rank that failed first and how, from torch's agent summary (several ranks) or
    accelerate's simple launcher (one rank), e.g. "rank 1 was killed by SIGKILL (...)"."""
    found = _ROOT.findall(text)
    if found:
        rank, code = found[-1]
        return _how(int(rank), int(code))
    died = _DIED.findall(text)
    if died:
        name, number, status = died[-1]
        return _how(0, -int(number) if name else int(status))
    return None


def _how(rank: int, exitcode: int) -> str:
    if exitcode >= 0:
        return f"rank {rank} exited with code {exitcode}"
    name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
    why = {
        "SIGKILL": " (probably out of host memory: the kernel's OOM killer, or the job's "
        "memory limit; see `dmesg` or the scheduler's log)",
        "SIGSEGV": " (a crash in native code: a CUDA/driver or library fault)",
        "SIGABRT": " (aborted in native code, e.g. a failed assertion in a library)",
        "SIGBUS": " (a bus error: often /dev/shm too small for the data loader)",
    }.get(name, "")
    return f"rank {rank} was killed by {name}{why}"


def _forward_signals(
    child: subprocess.Popen, received: list[int], ranks: set[int]
) -> dict[int, object]:
    """SIGTERM/SIGINT to this parent reach every rank, which checkpoint and stop.

    torch's agent starts each rank in a session of its own, so the ranks are signalled by
    pid (and the agent's group too: with one process, accelerate runs the rank directly).
    """

    def forward(signum, _frame):
        received.append(signum)
        log.warning("%s: asking the ranks to checkpoint and stop", signal.Signals(signum).name)
        ranks.update(_descendants(child.pid))
        for pid in ranks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    return {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc; empty elsewhere)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for children in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                new = {int(p) for p in children.read_text().split()} - found
                found |= new
                todo.extend(new)
    return found


def _wait_for_exit(pids: set[int], timeout: float) -> None:
    """Wait until none of `pids` is alive, or `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pids.discard(pid)
        time.sleep(0.2)
