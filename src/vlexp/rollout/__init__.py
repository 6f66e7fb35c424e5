"""The generation seam: how algorithms that generate (GRPO family, RLOO, online DPO, PPO) and
evaluation get their completions, chosen by the `rollout=` group (conf/rollout/).

    rollout=hf             HF generate as TRL calls it (the default on CPU)
    rollout=hf_fast        merged LoRA, static KV cache + torch.compile in buckets, one
                           generate per unique prompt (vlexp.rollout.fast; default on CUDA)
    rollout=vllm_colocate  TRL's vLLM modes (vlexp.rollout.vllm): the trainer args TRL reads
    rollout=vllm_server

Every trainer and the evaluation callback call their policy's `generate`. The policy is loaded
as `policy_class(ModelClass, seam)`: the model's own class with `PolicyGenerate` in front, whose
`generate` goes through the run's `GenerateSeam` (the engine, `FastGenerate`, and the phase
clock that times `timing_s/generate`). A TRL trainer, vlexp's PPO and a user's subclass all
go through it without knowing, and nothing is assigned onto the model. Importing this module
is cheap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("vlexp")

ENGINES = ("hf", "vllm")


@dataclass(frozen=True)
class Rollout:
    """The settings of `cfg.rollout` (see conf/rollout/hf.yaml for each key)."""

    name: str = "hf"
    engine: str = "hf"
    merge_lora: bool = False
    static_cache: bool = False
    compile: bool | str = False
    cuda_graphs: bool = False
    compile_backend: str = "inductor"
    buckets: bool = False
    min_bucket: int = 64
    share_images: bool = False
    micro_batch: int | str | None = None
    vllm: dict | None = None

    @property
    def fast(self) -> bool:
        """Whether the HF engine changes anything about plain `generate`."""
        return self.engine == "hf" and any(
            (self.merge_lora, self.static_cache, self.buckets, self.share_images)
        )

    @property
    def fast_rows(self) -> bool:
        """Whether generate calls are cut into rows (shared prompts, batch buckets)."""
        return self.share_images or self.buckets

    def compiles(self, cuda: bool) -> bool:
        """Whether the decode step is compiled on this machine (`auto`: on CUDA only)."""
        if not self.static_cache:
            return False
        return cuda if self.compile == "auto" else bool(self.compile)


def of(cfg: Any) -> Rollout:
    """The rollout settings of a run config (`hf` where the config has no `rollout` node)."""
    from omegaconf import OmegaConf

    node = cfg.get("rollout") if hasattr(cfg, "get") else None
    if node is None:
        return Rollout()
    plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    known = set(Rollout.__dataclass_fields__)
    return Rollout(**{k: v for k, v in plain.items() if k in known})


def resolve_auto(cfg: Any, cuda: bool | None = None) -> str | None:
    """Turn `rollout=auto` into `hf_fast` (CUDA visible) or `hf`, in place, before the config
    is saved: config.resolved.yaml and the run's log then name the engine that ran. Returns the
    name chosen, or None when the config names an engine itself."""
    from omegaconf import OmegaConf, open_dict

    from vlexp.paths import config_dir

    node = cfg.get("rollout")
    if node is None or node.get("name") != "auto":
        return None
    if cuda is None:
        cuda = cuda_visible()
    chosen = "hf_fast" if cuda else "hf"
    own = OmegaConf.load(config_dir() / "rollout" / f"{chosen}.yaml")
    own.pop("defaults", None)
    with open_dict(cfg):
        cfg.rollout = OmegaConf.merge(node, own)
    log.info("rollout=auto: %s (%s)", chosen, "CUDA visible" if cuda else "no CUDA device")
    return chosen


def cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


def trainer_args(cfg: Any, fields: set[str], planned_share: float | None = None) -> dict:
    """TRL config arguments the rollout sets (vLLM's, for `engine: vllm`), restricted to the
    `fields` the algorithm's config class has; `planned_share` fills a `gpu_memory_utilization`
    of `auto` (vlexp.rollout.vllm.planned_share)."""
    settings = of(cfg)
    if settings.engine != "vllm":
        return {}
    from vlexp.rollout import vllm

    return vllm.trainer_args(settings.vllm or {}, fields, planned_share)


class GenerateSeam:
    """The policy's `generate` as the run makes it: the rollout engine (`rollout=hf_fast`:
    vlexp.rollout.fast.FastGenerate, made for the first model that calls) inside the phase
    clock (vlexp.recipe.perf.PhaseClock: timing_s/generate, LoRA merge included)."""

    def __init__(self, settings: Rollout, clock: Any = None) -> None:
        self.settings = settings
        self.clock = clock
        self.engine: Any = None

    def __call__(self, model: Any, inner: Any, *args: Any, **kwargs: Any) -> Any:
        call = inner
        if self.settings.fast:
            if self.engine is None:
                self.engine = self.make_engine(model, inner)
            call = self.engine
        if self.clock is not None:
            return self.clock.timed_generate(call, *args, **kwargs)
        return call(*args, **kwargs)

    def make_engine(self, model: Any, inner: Any) -> Any:
        from vlexp.rollout.fast import FastGenerate

        engine = FastGenerate(model, self.settings, inner)
        log.info("rollout=%s: %s", self.settings.name, engine.describe())
        return engine

    def recompiles(self) -> float:
        """`perf/recompiles`: the engine's graphs compiled for generation (0 before it ran)."""
        return 0.0 if self.engine is None else self.engine.recompiles()


class PolicyGenerate:
    """A model class whose `generate` goes through the run's GenerateSeam (`vlexp_generate`,
    a class attribute set by `policy_class`). PEFT's wrapper calls down to it."""

    vlexp_generate: GenerateSeam | None = None

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.vlexp_generate(self, super().generate, *args, **kwargs)


def policy_class(model_cls: type, seam: GenerateSeam) -> type:
    """`model_cls` with `PolicyGenerate` in front, under the same name and module: transformers
    finds its checkpoint conversions by class name and its experts/attention support in the
    class's module source, and `final/` records the architecture by name."""
    namespace = {"vlexp_generate": seam, "__module__": model_cls.__module__}
    return type(model_cls.__name__, (PolicyGenerate, model_cls), namespace)


def seam(cfg: Any, clock: Any = None) -> GenerateSeam | None:
    """The run's GenerateSeam, or None when nothing goes around plain generate (no engine,
    no clock)."""
    settings = of(cfg)
    if not settings.fast and clock is None:
        return None
    return GenerateSeam(settings, clock)


def share_images(model: Any, cfg: Any) -> None:
    """`rollout.share_images`: the log-prob and loss passes encode each image once."""
    if of(cfg).share_images:
        from vlexp.rollout.images import share_image_features

        share_image_features(model)


def micro_batch(cfg: Any, gpu_bytes: int | None) -> dict[str, int]:
    """`rollout.micro_batch`: the optimizer's micro-batch decoupled from the generation batch.

    The rows one optimizer step learns from (train.per_device_train_batch_size x
    train.gradient_accumulation_steps, which TRL generates in one batch) stay as configured:
    the same algorithm, on-policy. Only the rows of each forward/backward shrink, with
    gradient accumulation making up the difference. `auto` takes the largest divisor of the
    configured micro-batch whose planner estimate (vlexp.recipe.estimate) fits `gpu_bytes`
    (no change without a GPU, or when the configured one fits); an int sets it. Returns the
    train.* / algo.args values to change (none when nothing changes)."""
    wanted = (cfg.get("rollout") or {}).get("micro_batch")
    if wanted is None or (wanted == "auto" and gpu_bytes is None):
        return {}
    rows = int(cfg.train.per_device_train_batch_size)
    try:
        chosen = _fitting_micro_batch(cfg, rows, gpu_bytes) if wanted == "auto" else int(wanted)
    except Exception as err:  # a model the planner cannot price: train as configured
        if wanted != "auto":
            raise
        log.warning("rollout.micro_batch=auto: the planner failed (%s); keeping %d rows", err, rows)
        return {}
    if chosen == rows:
        return {}
    if chosen < 1 or rows % chosen:
        raise ValueError(
            f"rollout.micro_batch={wanted}: must divide train.per_device_train_batch_size={rows}"
        )
    factor = rows // chosen
    out = {
        "per_device_train_batch_size": chosen,
        "gradient_accumulation_steps": int(cfg.train.gradient_accumulation_steps) * factor,
    }
    steps = (cfg.algo.get("args") or {}).get("steps_per_generation")
    if steps is not None:  # keep the rows each generation makes
        out["steps_per_generation"] = int(steps) * factor
    log.info(
        "rollout.micro_batch=%s: %d rows per forward x %d accumulation steps (generation batch "
        "unchanged: %d rows)",
        wanted,
        chosen,
        out["gradient_accumulation_steps"],
        rows * int(cfg.train.gradient_accumulation_steps),
    )
    return out


def _fitting_micro_batch(cfg: Any, rows: int, gpu_bytes: int) -> int:
    from omegaconf import OmegaConf

    from vlexp.recipe.estimate import GIB, PLAN_DEFAULTS, USABLE, estimate

    plan = {**PLAN_DEFAULTS, "gpu_mem_gb": gpu_bytes / GIB}
    accumulate = int(cfg.train.gradient_accumulation_steps)
    divisors = [m for m in range(rows, 0, -1) if rows % m == 0]
    for m in divisors:
        trial = OmegaConf.merge(
            cfg,
            {
                "train": {
                    "per_device_train_batch_size": m,
                    "gradient_accumulation_steps": accumulate * rows // m,
                }
            },
        )
        if estimate(trial, plan).total <= USABLE * gpu_bytes:
            return m
    log.warning("rollout.micro_batch=auto: even 1 row per forward does not fit the planner")
    return 1
