"""Reward checks: every reward imports and takes TRL's keyword arguments, and trained reward
models exist. Which rewards, and the columns they read, come from `vlexp.config.reward`."""

from __future__ import annotations

import inspect
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vlexp.config import algo as algorithm
from vlexp.config import reward as reward_config


def check_grpo_reward(cfg: DictConfig) -> list[str]:
    algo = algorithm.of(cfg)
    if algo.rewards and not reward_config.nodes(cfg):
        who = "GRPO" if algo.groups else f"algo={algo.name} (it generates completions)"
        return [f"{who} needs at least one reward: add e.g. reward=[think_format,accuracy]"]
    return []


def check_rewards(cfg: DictConfig) -> list[str]:
    """Every reward `_target_` imports; a `_partial_` one has TRL's reward signature."""
    if not algorithm.of(cfg).rewards:
        return []
    problems = []
    for name, node in reward_config.nodes(cfg).items():
        key = f"reward.funcs.{name}._target_"
        target = node.get("_target_")
        try:
            func = reward_config.locate(target)
        except Exception as err:  # any import failure is the user's to see, named
            problems.append(f"{key}={target} does not import: {err}")
            continue
        if node.get("_partial_"):
            problem = _signature_problem(func)
            if problem:
                problems.append(f"{key}={target}: {problem}")
    return problems


def check_reward_model_paths(cfg: DictConfig) -> list[str]:
    """reward=model and algo.args.critic_init name a trained reward model that exists."""
    places = []
    funcs = reward_config.nodes(cfg)
    if algorithm.of(cfg).rewards and "model" in funcs:
        places.append((funcs["model"], "path", "reward.funcs.model.path"))
    if cfg.algo.args.get("critic_init"):
        places.append((cfg.algo.args, "critic_init", "algo.args.critic_init"))
    problems = []
    for node, key, where in places:
        if OmegaConf.is_missing(node, key):
            problems.append(f"reward=model needs {where}=<run dir of an algo=reward_model run>")
            continue
        path = Path(str(node[key])).expanduser()
        model_dir = path / "final" if (path / "final").is_dir() else path
        if not any((model_dir / f).exists() for f in ("config.json", "adapter_config.json")):
            problems.append(
                f"{where}={node[key]}: no trained model there (expected a run dir with final/, "
                "or a dir with config.json or adapter_config.json)"
            )
    return problems


def _signature_problem(func) -> str | None:
    if not callable(func):
        return f"is a {type(func).__name__}, not a function"
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None  # builtins without a signature: nothing to check
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return (
            "a reward must accept **kwargs (TRL passes prompts, completions, completion_ids and "
            "every data column as keywords): def my_reward(completions, **kwargs) -> list[float]"
        )
    return None
