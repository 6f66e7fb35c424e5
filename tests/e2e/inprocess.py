"""Run one GRPO-family experiment in this interpreter and keep the trainer to inspect.

The trainer class is swapped through the config (`algo.trainer._target_`), the way a user
would swap it: a `trl.GRPOTrainer` subclass that only remembers the last instance, so a test
can read what the trainer actually holds (loss type, reference model, reward names).
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import compose, read_metrics

RECORDER = "tests.e2e.inprocess.RecordingGRPOTrainer"


def _recording_class():
    from trl import GRPOTrainer

    class Recording(GRPOTrainer):
        last = None

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            Recording.last = self

    return Recording


def __getattr__(name: str):
    # Built on first access so importing this module does not import trl.
    if name == "RecordingGRPOTrainer":
        cls = _recording_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def train_in_process(overrides: list[str], run_dir: Path):
    """Compose `overrides`, validate, train into `run_dir`; return (trainer, metric rows)."""
    from vlexp.recipe.run import train
    from vlexp.validate import validate

    cfg = compose([*overrides, f"algo.trainer._target_={RECORDER}"])
    validate(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    train(cfg, run_dir)
    import tests.e2e.inprocess as me

    return me.RecordingGRPOTrainer.last, read_metrics(run_dir)
