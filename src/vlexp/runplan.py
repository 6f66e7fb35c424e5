"""The run plan: the composed config turned, once at start-up, into typed, frozen parts.

    plan = runplan.of(cfg)   # family, algorithm, data, memory, rewards, paths

Every entry point starts here (`python -m vlexp` through `validate`, `vlexp.recipe.run.build`
for each rank, `vlexp.plan`, `vlexp.check_data`, `vlexp.evaluate`), so they cannot disagree
about the model family, the record format or the data budgets. The modules below the recipe
(data/, models/, rewards/, environments/, algorithms/, evaluation/) take the part they need,
never the root config, and never resolve the family again: it is resolved here, once
(`vlexp.families.resolve`, recorded in `model.family`); a model no family claims stops here
with one message.

torchtune's recipes do the same in `setup()`: each part is built once from its config
section and the parts are passed down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlexp import environments, families
from vlexp.config import algo as algorithm
from vlexp.config import memory
from vlexp.config import reward as reward_config
from vlexp.data.boxes import BoxFrame, frame_of_family
from vlexp.data.spec import DataSpec
from vlexp.data.videos import Budget
from vlexp.evaluation import Evaluation


@dataclass(frozen=True)
class Paths:
    """Where the run reads from: the model, the data splits, vlexp's caches, the resume."""

    model: str
    train: str | None
    eval: str | None
    cache_dir: Path
    resume: str | None


@dataclass(frozen=True)
class RunPlan:
    """One run, resolved: what every part below the recipe is built from."""

    family: families.Family
    algorithm: algorithm.Algorithm
    data: DataSpec
    memory: memory.Memory
    rewards: reward_config.Rewards
    paths: Paths
    evaluation: Evaluation
    model: Any  # the `model` node: loading, pixel budget (model.family recorded)
    env: Any  # the `env` node of a run with tools (env=), else None

    def box_frame(self) -> BoxFrame:
        """The family's box frame with the run's pixel budget (ValueError without one, which
        `validate` reports first: model.min_pixels / max_pixels)."""
        return frame_of_family(self.family, self.model.min_pixels, self.model.max_pixels)

    def reward_functions(self) -> dict[str, Any]:
        """Reward name -> its guarded function (`vlexp.rewards.guard.guarded`), box rewards
        given this run's box frame (made only when one needs it)."""
        from vlexp.rewards.guard import guarded

        return guarded(self.rewards, self.box_frame)

    def tool_limits(self) -> environments.Limits | None:
        """What one rollout's tool calls may use (env=), in the model's units; None without
        an environment."""
        if self.env is None:
            return None
        return environments.limits(self.env, self.family, self.model)


def of(cfg: Any) -> RunPlan:
    """The run plan of a composed config. Raises `families.UnknownFamily` (one message naming
    `model.family`) for a model no family claims; the entry points report it as a config
    error before anything loads."""
    family = families.resolve(cfg.model)
    _record_box_family(cfg, family)
    algo = algorithm.of(cfg)
    return RunPlan(
        family=family,
        algorithm=algo,
        data=data_spec(cfg, algo, family),
        memory=memory.of(cfg),
        rewards=reward_config.of(cfg),
        paths=paths(cfg),
        evaluation=Evaluation(
            every=(cfg.get("train") or {}).get("eval_steps"),
            eval=cfg.get("eval"),
            bench=cfg.get("bench"),
            reward=cfg.get("reward"),
            model=cfg.model,
        ),
        model=cfg.model,
        env=environments.of(cfg.get("env")),
    )


def _record_box_family(cfg: Any, family: families.Family) -> None:
    """`data.boxes.family` follows `model.family` (`${model.family}` in conf/data); a data node
    given resolved without it (`vlexp.evaluate`'s data=... next to run=) gets the family here,
    so boxes are put in the frame of the model that reads them."""
    from omegaconf import DictConfig, open_dict

    boxes = (cfg.get("data") or {}).get("boxes")
    if isinstance(boxes, DictConfig) and boxes.get("family") is None:
        with open_dict(boxes):
            boxes.family = family.name


def data_spec(cfg: Any, algo: algorithm.Algorithm, family: families.Family) -> DataSpec:
    """The data part: the `data` node with what the data side reads of the rest of the run."""
    return DataSpec(
        node=cfg.data,
        algorithm=algo,
        family=family,
        video=Budget.for_family(cfg.data.get("video"), family),
        reward_funcs=reward_config.nodes(cfg),
        cache_dir=_cache_dir(cfg),
        model_name=str(cfg.model.get("name", cfg.model.name_or_path)),
        model_path=str(cfg.model.name_or_path),
        trust_remote_code=bool(cfg.model.get("trust_remote_code", False)),
        seed=int(cfg.get("seed", 0) or 0),
    )


def paths(cfg: Any) -> Paths:
    return Paths(
        model=str(cfg.model.name_or_path),
        train=_given(cfg, "data.train"),
        eval=_given(cfg, "data.eval"),
        cache_dir=_cache_dir(cfg),
        resume=_given(cfg, "resume"),
    )


def _given(cfg: Any, key: str) -> str | None:
    """The value at `key` as text; None when unset or left `???` (evaluation needs no
    `data.train`)."""
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    return None if value is None or value == "???" else str(value)


def _cache_dir(cfg: Any) -> Path:
    return Path(str(cfg.get("cache_dir", "~/.cache/vlexp"))).expanduser()
