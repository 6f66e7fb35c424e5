"""Build the trainer exactly as `vlexp.run.train` does, without training (for inspection)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import compose


def build_trainer(overrides: list[str], run_dir: Path, **trainer_kwargs):
    """(trainer, cfg): run.train's steps up to the trainer, with its own functions."""
    from vlexp.data import build_datasets, fit_loss_mask
    from vlexp.models import load_model, load_processor
    from vlexp.run import build_args, make_trainer
    from vlexp.validate import validate

    cfg = compose(overrides)
    validate(cfg)
    args = build_args(cfg, run_dir)
    processor = load_processor(cfg.model)
    model = load_model(cfg.model, cfg.memory)
    train_set, eval_set = build_datasets(cfg.data, cfg.algo.kind)
    fit_loss_mask(args, train_set)
    trainer = make_trainer(cfg, model, processor, args, train_set, eval_set, **trainer_kwargs)
    return trainer, cfg
