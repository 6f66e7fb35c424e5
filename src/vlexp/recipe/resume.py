"""Resume and preemption: which checkpoint to continue from, and a checkpoint on SIGTERM.

`resume=auto` continues from the newest `checkpoint-N` in the run dir (or starts fresh when
there is none, so one SLURM script serves the first start and every requeue);
`resume=PATH` continues from that checkpoint. The Trainer restores weights, optimizer,
scheduler, RNG states and the data order from it.
"""

from __future__ import annotations

import json
import logging
import re
import signal
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from vlexp.config import memory
from vlexp.recipe import checkpoints

log = logging.getLogger("vlexp")

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a terminated job
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


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
    """On SIGTERM (SLURM preemption, scancel, a time limit), finish the step, save, stop.

    All ranks must stop at the same step (a ZeRO checkpoint is a collective), so the flag
    is agreed on with an all-reduce after every optimizer step: one integer per step.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.signalled = False
        self.stopped_at: int | None = None
        self._previous: Any = None

    def _handle(self, signum, _frame) -> None:
        self.signalled = True
        log.warning("SIGTERM: saving a checkpoint after this step, then stopping")

    def on_train_begin(self, args, state, control, **kwargs):
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        if state.is_world_process_zero:  # from step 0 too: a run killed before checkpoint-1
            trim_metrics(self.run_dir / "metrics.jsonl", state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if _any_rank(self.signalled, args.device):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def exit_preempted(trainer, run_dir: Path, step: int) -> None:
    """Leave with the scheduler's SIGTERM code (no final/: the run is not finished)."""
    if trainer.is_world_process_zero():
        print(
            f"vlexp: stopped by SIGTERM at step {step}, checkpoint saved in {run_dir}; continue "
            f"with the same command plus resume=auto hydra.run.dir={run_dir}",
            flush=True,
        )
    raise SystemExit(PREEMPTED_EXIT_CODE)


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
