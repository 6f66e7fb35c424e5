"""The one reader of the `reward` config node: which functions, their weights, what happens
when one raises, and which data columns they read.

Training (`recipe.run`), evaluation, the config checks, the data check and the run naming all
ask here, so a reward means the same thing everywhere (`reward.on_error` included);
`of(cfg)` is the reward part of the run plan (`vlexp.runplan`); `vlexp.rewards.guard.guarded`
builds the functions from it.

    reward:
      funcs: {accuracy: {_target_: vlexp.rewards.accuracy, _partial_: true}, ...}
      weights: {accuracy: 1.0}
      on_error: raise          # or zero: a raising reward scores 0.0, counted per call
      timeout_s: null          # per-call deadline (null: 60 s for vlexp's rewards, none else)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

ON_ERROR = ("raise", "zero")

# Keyword arguments TRL's GRPOTrainer passes to every reward function itself; the others a
# reward names must be columns of the data set.
TRL_REWARD_KWARGS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"}
    | {"environments"}
)
_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})


@dataclass(frozen=True)
class Rewards:
    """The `reward` node as the reward side reads it (`of`): the functions' nodes in
    `reward.funcs` order, their weights, `on_error`, `timeout_s`, and whether the data loader
    put gold boxes in the model's frame (`data.boxes.gold`)."""

    funcs: dict[str, Any]
    weights: dict[str, float]
    on_error: str = "raise"
    timeout_s: float | None = None  # as given; `deadline` applies the default
    gold_rescaled: bool = False

    def deadline(self, qualified_name: str) -> float | None:
        """The per-call deadline of the reward `qualified_name` (module.function), or None."""
        if self.timeout_s is None:
            return DEFAULT_TIMEOUT_S if qualified_name.startswith("vlexp.") else None
        return float(self.timeout_s) or None  # 0: no deadline


def of(cfg: Any) -> Rewards:
    """The reward part of a run (`cfg.reward`, and `data.boxes.gold`)."""
    boxes = (cfg.get("data") or {}).get("boxes") or {}
    return Rewards(
        funcs=nodes(cfg),
        weights=weights(cfg),
        on_error=on_error(cfg),
        timeout_s=(cfg.get("reward") or {}).get("timeout_s"),
        gold_rescaled=bool(boxes.get("gold")),
    )


def nodes(cfg: Any) -> dict[str, Any]:
    """Reward name -> its config node, in `reward.funcs` order (the order TRL receives)."""
    return dict((cfg.get("reward") or {}).get("funcs") or {})


def names(cfg: Any) -> list[str]:
    return list(nodes(cfg))


def weights(cfg: Any) -> dict[str, float]:
    """Reward name -> weight (1.0 unless `reward.weights` says otherwise), in funcs order."""
    given = (cfg.get("reward") or {}).get("weights") or {}
    return {name: float(given.get(name, 1.0)) for name in nodes(cfg)}


def on_error(cfg: Any) -> str:
    return (cfg.get("reward") or {}).get("on_error", "raise")


# reward.timeout_s: null gives vlexp's own rewards (math-verify inside `accuracy` can hang on
# a pathological expression) this deadline per call, and other rewards none.
DEFAULT_TIMEOUT_S = 60.0


def timeout_s(cfg: Any, qualified_name: str) -> float | None:
    """The per-call deadline of the reward `qualified_name` (module.function), or None."""
    return of(cfg).deadline(qualified_name)


def locate(target: str | None) -> Any:
    """The callable a `_target_` names (ImportError/AttributeError when it does not import)."""
    from hydra.utils import get_object

    if not target:
        raise ImportError("no _target_ given")
    return get_object(target)


def columns(cfg: Any, optional: bool = False) -> dict[str, list[str]]:
    """Data columns each `_partial_` reward needs: its keyword parameters without a default
    (`optional`: with a default too, e.g. `iou`'s `box` and `solution`: what it may read).

    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create(
    ...     {"reward": {"funcs": {"accuracy": {"_target_": "vlexp.rewards.accuracy", "_partial_": True}}}})
    >>> columns(cfg)
    {'accuracy': ['solution']}
    """
    return columns_of(nodes(cfg), optional)


def columns_of(funcs: Any, optional: bool = False) -> dict[str, list[str]]:
    """`columns` of the `reward.funcs` node itself (the data check holds only that node)."""
    needs = {}
    for name, node in dict(funcs or {}).items():
        if not node.get("_partial_"):
            continue
        try:
            params = inspect.signature(locate(node.get("_target_"))).parameters.values()
        except Exception:
            continue  # validate.rewards.check_rewards reports it
        bound = set(node) - _HYDRA_KEYS
        needs[name] = [
            p.name
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and (optional or p.default is p.empty)
            and p.name not in TRL_REWARD_KWARGS
            and p.name not in bound
        ]
    return needs
