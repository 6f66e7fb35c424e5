"""Resume and preemption: which checkpoint to continue from, and a checkpoint on SIGTERM.

`resume=auto` continues from the newest `checkpoint-N` in the run dir (or starts fresh when
there is none, so one SLURM script serves the first start and every requeue);
`resume=PATH` continues from that checkpoint. The Trainer restores weights, optimizer,
scheduler, RNG states and the data order from it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from vlexp.config import memory
from vlexp.recipe import checkpoints

log = logging.getLogger("vlexp")

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a terminated job


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest `checkpoint-N` in `run_dir` that is whole (`checkpoints.problem`): a
    damaged newer one is skipped with a warning."""
    return checkpoints.newest_complete(run_dir)


def checkpoint_to_resume(resume: Any, run_dir: Path) -> str | None:
    """What to pass to `trainer.train(resume_from_checkpoint=...)` for the `resume` key."""
    if resume in (None, False, ""):
        return None
    if str(resume) == "auto":
        newest = latest_checkpoint(run_dir)
        if newest is None:
            log.info("resume=auto: no checkpoint in %s yet, starting from step 0", run_dir)
            return None
        log.info("resume=auto: continuing from %s", newest)
        return str(newest)
    path = Path(str(resume)).expanduser()
    reason = checkpoints.problem(path) if path.is_dir() else f"no such folder: {path}"
    if reason:
        from vlexp.recipe.stops import TrainingStopped

        raise TrainingStopped(
            f"resume={resume}: cannot resume from it: {reason}; give another checkpoint, or "
            "resume=auto to take the newest whole one"
        )
    return str(path)


def restore_full_weights(model, checkpoint: str | None, cfg: Any) -> None:
    """Load a full-weights checkpoint into `model` with the key conversion it was saved with.

    transformers 5.23's Trainer resumes full weights with `load_state_dict(strict=False)`
    on the saved key names; Qwen2.5-VL saves the legacy layout (`model.layers.*`) but is
    built as `model.language_model.layers.*`, so every language-model tensor silently kept
    its initial value (one "missing keys" warning in the log). `from_pretrained` applies the
    conversion; the Trainer's own load that follows then misses those keys harmlessly.
    Adapters (PEFT's loader) and DeepSpeed checkpoints (per-rank shards) load correctly.
    Only for trainers that use that Trainer resume: `recipe.run.build` skips it for those
    that restore their own parts (`config.algo.restores_own_weights`).
    """
    held = memory.of(cfg)
    if checkpoint is None or held.peft is not None or held.deepspeed is not None:
        return
    path = Path(checkpoint)
    if not any(
        (path / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")
    ):
        return
    saved = type(model).from_pretrained(path, dtype=model.dtype)
    model.load_state_dict(saved.state_dict(), strict=True)
    log.info(
        "restored the weights of %s (the Trainer's 'missing keys' warning that follows is expected)",
        path,
    )


class SaveOnSigterm(TrainerCallback):
    """On SIGTERM (SLURM preemption, scancel, a time limit) or Ctrl-C, finish the step, save,
    stop; a second Ctrl-C exits at once.

    All ranks must stop at the same step (a ZeRO checkpoint is a collective), so the flag
    is agreed on with an all-reduce after every optimizer step: one integer per step.

    A step that cannot finish (a hung collective, a reward blocked in C code) must not keep
    the run alive: the first signal arms a watchdog that, `shutdown_timeout` seconds later,
    says where the main thread is stuck and exits with 128 + the signal number. Checkpoints
    are written aside and renamed whole (`recipe.checkpoints`), so the last one published is
    intact whatever the watchdog cuts short. The watchdog fires at 90% of the timeout, so a
    rank speaks before torch's agent SIGKILLs it at the full timeout.
    """

    def __init__(self, run_dir: Path, shutdown_timeout: float = 100.0) -> None:
        self.run_dir = Path(run_dir)
        self.shutdown_timeout = float(shutdown_timeout)
        self.signalled = False
        self.signum = signal.SIGTERM
        self.step = 0
        self.stopped_at: int | None = None
        self._previous: dict[int, Any] = {}
        self._watchdog: threading.Thread | None = None
        self._disarmed = threading.Event()

    def _handle(self, signum, _frame) -> None:
        if self.signalled and signum == signal.SIGINT:
            _leave(
                128 + signum,
                f"vlexp: second Ctrl-C: exiting at once, without saving step {self.step}; "
                f"{_last_checkpoint(self.run_dir)}",
            )
        if not self.signalled:
            self.signum = signum
        self.signalled = True
        again = " (Ctrl-C again exits at once)" if signum == signal.SIGINT else ""
        log.warning(
            "%s: saving a checkpoint after this step, then stopping%s",
            signal.Signals(signum).name,
            again,
        )
        self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        if self._watchdog is not None:
            return
        main = threading.main_thread().ident
        self._watchdog = threading.Thread(
            target=self._watch, args=(main,), name="vlexp-shutdown", daemon=True
        )
        self._watchdog.start()

    def _watch(self, main_thread: int | None) -> None:
        if self._disarmed.wait(0.9 * self.shutdown_timeout):
            return  # the run stopped in time (on_train_end)
        frame = sys._current_frames().get(main_thread)
        stack = traceback.format_stack(frame)[-5:] if frame is not None else []
        where = "".join(stack).rstrip() or "  (no Python frame: inside native code)"
        _leave(
            128 + self.signum,
            f"vlexp: {signal.Signals(self.signum).name} at step {self.step}: the run did not "
            f"stop within launcher.shutdown_timeout={self.shutdown_timeout:g} s, so the "
            f"unfinished step is abandoned; {_last_checkpoint(self.run_dir)}. The main thread "
            f"was stuck in:\n{where}",
        )

    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        if state.is_world_process_zero:  # from step 0 too: a run killed before checkpoint-1
            trim_metrics(self.run_dir / "metrics.jsonl", state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        if _any_rank(self.signalled, args.device):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        # Stopped in time: the watchdog must not outlive training (it would end, 90 s later,
        # whatever the process does next: an evaluation, the next run of a sweep, a test).
        self._disarmed.set()
        for signum, previous in self._previous.items():
            if previous is not None:
                signal.signal(signum, previous)
        self._previous = {}


def _last_checkpoint(run_dir: Path) -> str:
    newest = checkpoints.newest_complete(run_dir)
    if newest is None:
        return f"no checkpoint in {run_dir} yet"
    return (
        f"the last good checkpoint is {newest}: continue with the same command plus "
        f"resume=auto hydra.run.dir={run_dir}"
    )


def _leave(code: int, message: str) -> None:
    """Exit now, from any thread, without Python's shutdown (which could hang as well)."""
    print(message, file=sys.stderr, flush=True)
    os._exit(code)


def exit_preempted(trainer, run_dir: Path, step: int, signum: int = signal.SIGTERM) -> None:
    """Leave with 128 + the signal (143 for SIGTERM, what schedulers expect; no final/: the
    run is not finished)."""
    if trainer.is_world_process_zero():
        print(
            f"vlexp: stopped by {signal.Signals(signum).name} at step {step}, checkpoint saved in "
            f"{run_dir}; continue with the same command plus resume=auto hydra.run.dir={run_dir}",
            flush=True,
        )
    raise SystemExit(128 + signum)


def _any_rank(flag: bool, device) -> bool:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def trim_metrics(path: Path, step: int) -> None:
    """Drop metrics rows logged after the resumed checkpoint: the resumed run logs them anew.

    The end-of-training summary row (`train_runtime`, ...) of a stopped earlier attempt goes
    too: the resumed run writes its own at its end. A row cut off mid-write is dropped."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if _keep_row(line, step)]
    if len(kept) != len(lines):
        log.warning(
            "resuming at step %d: replacing %d rows of %s logged after that checkpoint",
            step,
            len(lines) - len(kept),
            path,
        )
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _keep_row(line: str, step: int) -> bool:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and row.get("step", 0) <= step and "train_runtime" not in row
