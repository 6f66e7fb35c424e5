"""Will this run fit on my GPU? `python -m vlexp.plan <the same overrides as the run>`.

    python -m vlexp.plan model=qwen2_5_vl_7b algo=grpo plan.gpu_mem_gb=80
    python -m vlexp.plan model=qwen2_5_vl_3b algo=sft memory=lora train.per_device_train_batch_size=4

The model is built on the meta device (no weights, no download: the Qwen2.5-VL-3B/7B and
Qwen2-VL-2B configs ship with vlexp), then `vlexp.recipe.estimate` prices each part per GPU. Keys
under `plan.` are the planner's own (they never reach a run):

    plan.gpu_mem_gb=80        memory of one GPU, GiB
    plan.text_tokens=256      prompt (+ answer for SFT/DPO) text tokens per sample
    plan.image_height=1080    a typical image; smart_resize caps it at model.max_pixels
    plan.image_width=1920
    plan.images_per_sample=1

Exit status: 0 when the run fits, 1 when it does not, 2 for a config error.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from vlexp.config import algo as algorithm
from vlexp.paths import config_dir
from vlexp.recipe.estimate import (
    GIB,
    PLAN_DEFAULTS,
    USABLE,
    Estimate,
    estimate,
    gib,
    world_size,
)
from vlexp.runplan import RunPlan
from vlexp.validate import ConfigError, validate

# Presets to try when a run does not fit, least intrusive first (missing ones are skipped).
PREFERENCE = ("grad_ckpt", "liger", "zero2", "zero3", "lora", "zero3_offload", "qlora")


def split_args(argv: list[str]) -> tuple[list[str], dict[str, float]]:
    """Hydra overrides for the run, and the planner's own `plan.*` values."""
    plan = dict(PLAN_DEFAULTS)
    overrides = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.startswith("plan."):
            name = key[len("plan.") :]
            if name not in PLAN_DEFAULTS:
                raise ConfigError(
                    f"unknown planner key {key}: use one of plan.{', plan.'.join(plan)}"
                )
            plan[name] = float(value)
        else:
            overrides.append(arg)
    return overrides, plan


def compose(overrides: list[str]):
    """The config `python -m vlexp <overrides>` would run, without starting a run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def start(overrides: list[str]) -> tuple[Any, RunPlan]:
    """The composed config and its run plan (`vlexp.runplan`), as the run would start.
    Config logic only: the planner may run on a laptop for a GPU job, so machine checks
    (flash-attn or liger installed, CUDA present) are left to the run itself."""
    cfg = compose(overrides)
    return cfg, validate(cfg, machine=False)


def plan_run(overrides: list[str], plan: dict) -> tuple[Any, Estimate]:
    cfg, _ = start(overrides)
    return cfg, estimate(cfg, plan)


def fits(est: Estimate, plan: dict) -> bool:
    return est.total <= plan["gpu_mem_gb"] * GIB * USABLE


def alternatives(overrides: list[str], plan: dict, current: str) -> list[tuple[str, Estimate]]:
    """Memory settings that fit with the same overrides, least intrusive first.

    Tries gradient checkpointing on the current preset, then each available preset in
    PREFERENCE order, alone and with gradient checkpointing.
    """

    available = {p.stem for p in (config_dir() / "memory").glob("*.yaml")}
    base = [o for o in overrides if not o.lstrip("+~").startswith("memory")]
    ckpt = "memory.gradient_checkpointing=true"
    presets = [p for p in PREFERENCE if p in available and p != current]
    candidates = [[f"memory={current}", ckpt]]
    candidates += [[f"memory={p}"] for p in presets] + [[f"memory={p}", ckpt] for p in presets]
    found = []
    for extra in candidates:
        try:
            _, est = plan_run([*base, *extra], plan)
        except ConfigError:
            continue
        if fits(est, plan):
            found.append((" ".join(extra), est))
    return found


def memory_choice(overrides: list[str]) -> str:
    """The `memory=` option of the overrides as typed (`none`, `lora`, `[lora,zero3]`)."""
    chosen = [o.split("=", 1)[1] for o in overrides if o.lstrip("+~").startswith("memory=")]
    return chosen[-1] if chosen else "none"


def render(cfg: Any, est: Estimate, plan: dict, memory: str) -> str:
    counts = est.counts
    world = world_size(cfg.launcher)
    rows = cfg.train.per_device_train_batch_size
    lines = [
        f"vlexp plan: model={cfg.model.name} ({counts.total_numel / 1e9:.3g}B params"
        + (
            f", {counts.active_numel / 1e9:.3g}B active per token"
            if counts.active_numel < counts.total_numel
            else ""
        )
        + f", {counts.trainable_numel / 1e9:.3g}B trainable, {cfg.model.dtype}) "
        f"algo={cfg.algo.name} memory={memory}, {world} GPU(s)",
        f"sequence: {int(plan['text_tokens'])} text + {est.image_tokens} image tokens "
        + f"({int(plan['image_height'])}x{int(plan['image_width'])} px"
        # Gemma 3 and LLaVA-OneVision have no pixel budget: their family counts the tokens.
        + (f" at max_pixels={cfg.model.max_pixels})" if cfg.model.max_pixels is not None else ")")
        + f" = {est.seq_len} tokens per row"
        + (" incl. the completion" if algorithm.of(cfg).generates else "")
        + f"; micro-batch {rows} rows",
        "per GPU:",
    ]
    lines += [f"  {name:<30}{gib(size)}" for name, size in est.parts.items()]
    limit = plan["gpu_mem_gb"] * GIB
    verdict = "fits" if fits(est, plan) else "does NOT fit"
    lines.append(
        f"  {'total':<30}{gib(est.total)}  of {plan['gpu_mem_gb']:g} GiB "
        f"({USABLE:.0%} usable = {gib(limit * USABLE).strip()}): {verdict}"
    )
    if counts.active_numel < counts.total_numel:
        lines.append(
            "note: mixture of experts: memory holds every expert (total parameters); compute "
            f"per token follows the active ones (~{2 * counts.active_numel / 1e9:.3g} GFLOP "
            "forward per token)"
        )
    lines += [f"note: {note}" for note in est.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Meta-device builds make transformers/PEFT warn about things that never run here.
    warnings.filterwarnings("ignore")
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    from hydra.errors import HydraException

    from vlexp import overrides as checked

    try:
        overrides, plan = split_args(argv)
        # The one line `python -m vlexp` prints for the same overrides.
        line = checked.problem(overrides)
        if line is None:
            cfg, est = plan_run(overrides, plan)
    except ConfigError as err:
        line = f"vlexp: config error: {err}"
    except HydraException as err:
        line = checked.first_line(err)
    if line is not None:
        print(line, file=sys.stderr)
        return 2
    memory = memory_choice(overrides)
    print(render(cfg, est, plan, memory))
    if fits(est, plan):
        return 0
    options = alternatives(overrides, plan, memory)
    if options:
        name, best = options[0]
        others = ", ".join(f"{n} ({gib(e.total).strip()})" for n, e in options[1:4])
        print(f"switch to {name}: {gib(best.total).strip()} per GPU")
        if others:
            print(f"also fits: {others}")
    else:
        print(
            "no single memory preset fits: lower train.per_device_train_batch_size, "
            "model.max_pixels or algo.args.num_generations, or add GPUs with ZeRO-3"
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
