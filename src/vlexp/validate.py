"""Checks that need no model: run before anything heavy is imported or loaded."""

from __future__ import annotations

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A config that cannot run; the message names the keys and the fix."""


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first combination that cannot work."""
    if cfg.algo.kind == "grpo":
        _check_grpo(cfg)
    if cfg.model.min_pixels > cfg.model.max_pixels:
        raise ConfigError(
            f"model.min_pixels ({cfg.model.min_pixels}) > model.max_pixels ({cfg.model.max_pixels})"
        )


def _check_grpo(cfg: DictConfig) -> None:
    funcs = (cfg.get("reward") or {}).get("funcs") or {}
    if not funcs:
        raise ConfigError("GRPO needs at least one reward: add e.g. reward=[think_format,accuracy]")
    generations = cfg.algo.args.num_generations
    batch = (
        cfg.train.per_device_train_batch_size
        * cfg.train.gradient_accumulation_steps
        * cfg.launcher.get("num_processes", 1)
    )
    if batch % generations:
        raise ConfigError(
            f"train.per_device_train_batch_size x train.gradient_accumulation_steps x "
            f"launcher.num_processes = {batch} is not a multiple of algo.args.num_generations "
            f"= {generations}: change one so that it divides"
        )
