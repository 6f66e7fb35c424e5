"""Reward checks: every reward imports and takes TRL's keyword arguments; trained reward
models exist; and which data columns each reward reads (used by the data check)."""

from __future__ import annotations

import inspect
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# Keyword arguments TRL's GRPOTrainer passes to every reward function itself; the others a
# reward names must be columns of the data set.
TRL_REWARD_KWARGS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"}
    | {"environments"}
)

_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})


def reward_funcs(cfg: DictConfig) -> dict:
    return dict((cfg.get("reward") or {}).get("funcs") or {})


def check_grpo_reward(cfg: DictConfig) -> list[str]:
    if cfg.algo.kind == "grpo" and not reward_funcs(cfg):
        return ["GRPO needs at least one reward: add e.g. reward=[think_format,accuracy]"]
    return []


def check_rewards(cfg: DictConfig) -> list[str]:
    """Every reward `_target_` imports; a `_partial_` one has TRL's reward signature."""
    if cfg.algo.kind != "grpo":
        return []
    problems = []
    for name, node in reward_funcs(cfg).items():
        key = f"reward.funcs.{name}._target_"
        target = node.get("_target_")
        try:
            func = _locate(target)
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
    if cfg.algo.kind == "grpo" and "model" in reward_funcs(cfg):
        places.append((cfg.reward.funcs.model, "path", "reward.funcs.model.path"))
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


def _locate(target: str | None):
    from hydra.utils import get_object

    if not target:
        raise ImportError("no _target_ given")
    return get_object(target)


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


def reward_columns(cfg: DictConfig) -> dict[str, list[str]]:
    """Data columns each `_partial_` reward needs: its keyword parameters without a default.

    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"algo": {"kind": "grpo"},
    ...     "reward": {"funcs": {"accuracy": {"_target_": "vlexp.rewards.accuracy", "_partial_": True}}}})
    >>> reward_columns(cfg)
    {'accuracy': ['solution']}
    """
    needs = {}
    for name, node in reward_funcs(cfg).items():
        if not node.get("_partial_"):
            continue
        try:
            params = inspect.signature(_locate(node.get("_target_"))).parameters.values()
        except Exception:
            continue  # check_rewards reports it
        bound = set(node) - _HYDRA_KEYS
        needs[name] = [
            p.name
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is p.empty
            and p.name not in TRL_REWARD_KWARGS
            and p.name not in bound
        ]
    return needs
