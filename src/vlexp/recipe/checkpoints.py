"""Checkpoints that are complete or absent: written aside, synced, then renamed into place.

transformers 5.24 writes `checkpoint-N` in place, file by file, without fsync: a kill leaves
a folder that looks like a checkpoint, and after a power loss even a present
`trainer_state.json` may hold zeros. Here every checkpoint is written under
`RUN_DIR/.partial-checkpoint-N/checkpoint-N`, every file and folder is fsynced, and only
then is it renamed to `RUN_DIR/checkpoint-N` (a rename is atomic on POSIX file systems).
A disk that fills during the save stops the run with a message saying so; the partial
folder is removed and the previous checkpoint is untouched.

`problem(path)` tells whether a checkpoint can be resumed from (its JSON parses, its
safetensors headers and torch zip archives are whole); `resume=auto` uses it to skip a
damaged newest checkpoint.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

log = logging.getLogger("vlexp")

STAGING_PREFIX = ".partial-"
ARGS_FILE = "training_args.bin"
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# torch.save reports a full disk as RuntimeError("... file write failed") in older releases;
# torch 2.11 as "basic_ios::clear: iostream error" chained to "unexpected pos N vs M" (seen
# on a lent H200 when 65 GB of optimizer state met 43 GB of free disk); safetensors as its
# own error with the OS message. Recognised by text when no errno travels with them.
_FULL_TEXTS = (
    "No space left on device",
    "Disk quota exceeded",
    "file write failed",
    "basic_ios::clear: iostream error",
    "] . unexpected pos ",
)


class AtomicCheckpoints:
    """The trainer's checkpoints written aside and published whole (see the module doc).

    transformers 5.24's `Trainer._save_checkpoint` (and TRL 1.16's overrides, which call it
    and then write more files) write into `self._get_output_dir(trial)/checkpoint-N` in place,
    with no fsync. For the length of one `_save_checkpoint` call `_get_output_dir` answers the
    staging folder, which moves every file, the Trainer's own rotation included, there; then
    `publish` syncs and renames it. Contract: tests/unit/test_patches.py."""

    _vlexp_staging: str | None = None  # the staging folder while a save runs

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.should_save:
            run_dir = Path(self.args.output_dir)
            for stale in run_dir.glob(f"{STAGING_PREFIX}checkpoint-*"):
                shutil.rmtree(stale, ignore_errors=True)  # cut off by a kill: never complete

    def _get_output_dir(self, trial: Any = None) -> str:
        if self._vlexp_staging is not None:
            return self._vlexp_staging
        return super()._get_output_dir(trial=trial)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        step = self.state.global_step
        run_dir = self._get_output_dir(trial=trial)
        self._vlexp_staging = staging_for(run_dir, step)
        try:
            super()._save_checkpoint(model, trial)
        except BaseException as err:
            replacement = failed(self, run_dir, step, err)
            if replacement is not None:
                raise replacement from err
            raise
        finally:
            self._vlexp_staging = None
        publish(self, run_dir, step)


def staging_for(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, f"{STAGING_PREFIX}checkpoint-{step}")


def publish(trainer: Any, run_dir: str | Path, step: int) -> None:
    """After every rank wrote its part: redact, sync, rename into place, rotate (main rank)."""
    from transformers.trainer_utils import rotate_checkpoints

    run_dir = Path(run_dir)
    trainer.accelerator.wait_for_everyone()  # rank files (rng states, ZeRO shards) are written
    if trainer.args.should_save:
        name = f"checkpoint-{step}"
        staging = Path(staging_for(str(run_dir), step))
        written, final = staging / name, run_dir / name
        best = trainer.state.best_model_checkpoint
        if best and str(best).startswith(str(staging)):  # the Trainer named the staging path
            trainer.state.best_model_checkpoint = str(final)
            trainer.state.save_to_json(str(written / "trainer_state.json"))
        redact_training_args(written, trainer.args)
        sync_tree(written)
        replace_dir(written, final)
        sync_dir(run_dir)
        shutil.rmtree(staging, ignore_errors=True)
        rotate_checkpoints(
            output_dir=str(run_dir),
            save_total_limit=trainer.args.save_total_limit,
            best_model_checkpoint=trainer.state.best_model_checkpoint,
            use_mtime=True,
        )
    trainer.accelerator.wait_for_everyone()  # nobody reads checkpoint-N before it exists


def failed(
    trainer: Any, run_dir: str | Path, step: int, err: BaseException
) -> BaseException | None:
    """Clean up a save that raised; a full disk becomes a TrainingStopped that says so."""
    from vlexp.recipe.stops import TrainingStopped

    run_dir = Path(run_dir)
    if trainer.args.should_save:
        shutil.rmtree(staging_for(str(run_dir), step), ignore_errors=True)
    if not disk_full(err):
        return None
    previous = newest_complete(run_dir)
    kept = (
        f"{previous} is intact: continue from it with resume=auto"
        if previous
        else "no earlier checkpoint exists"
    )
    free = shutil.disk_usage(run_dir).free / 2**20
    return TrainingStopped(
        f"disk full while saving checkpoint-{step} in {run_dir}: free space ({free:.0f} MiB "
        "free now) or lower train.save_total_limit, or choose a run dir on a bigger disk "
        f"(hydra.run.dir=DIR); {kept}"
    )


def disk_full(err: BaseException | None) -> bool:
    """Whether `err`, or an error it was raised from, reports a full disk or quota."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if any(text in str(err) for text in _FULL_TEXTS):
            return True
        err = err.__cause__ or err.__context__
    return False


def sync_tree(folder: Path) -> None:
    """fsync every file, then every folder (deepest first), under `folder`."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            descriptor = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        sync_dir(Path(root))


def sync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_dir(source: Path, target: Path) -> None:
    """Rename `source` to `target`; an existing `target` (a damaged one, or the same step
    saved again after a resume) is moved aside first and removed after."""
    old = None
    if target.exists():
        old = source.parent / f"replaced-{target.name}"
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def redact_training_args(folder: Path, args: Any) -> None:
    """Rewrite `training_args.bin` (a pickle of the args) with secret fields redacted."""
    path = folder / ARGS_FILE
    if not path.is_file():
        return
    import torch

    from vlexp.recipe import redact

    clean = redact.redacted_args(args)
    if clean is not args:
        torch.save(clean, path)


# --- is a checkpoint usable? --------------------------------------------------------------


def problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None. Reads headers only: JSON parses,
    each safetensors file's header covers the file, each torch archive (.pt/.pth/.bin) has
    its zip directory."""
    checkpoint = Path(checkpoint)
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json (the save was cut off)"
    for path in sorted(checkpoint.rglob("*")):
        if not path.is_file():
            continue
        where = path.relative_to(checkpoint)
        reason = _file_problem(path)
        if reason:
            return f"{where}: {reason}"
    if "global_step" not in json.loads(state.read_text(encoding="utf-8")):
        return "trainer_state.json: no global_step"
    return None


def _file_problem(path: Path) -> str | None:
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    suffix = path.suffix
    try:
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        elif suffix in (".pt", ".pth", ".bin"):
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
    except Exception as err:  # JSON, zip, OS and safetensors' own SafetensorError
        return f"damaged ({type(err).__name__}: {err})"
    return None


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every `checkpoint-N` folder in `run_dir`, newest step first."""
    found = []
    for path in Path(run_dir).glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and path.is_dir():
            found.append((int(step), path))
    return sorted(found, reverse=True)


def newest_complete(run_dir: Path) -> Path | None:
    """The newest checkpoint that `problem` finds nothing wrong with; warns about the others."""
    for _step, path in checkpoints(run_dir):
        reason = problem(path)
        if reason is None:
            return path
        log.warning("%s cannot be resumed from: %s; trying the one before", path, reason)
    return None
