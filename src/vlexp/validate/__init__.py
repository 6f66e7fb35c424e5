"""Checks that need no model: run before anything heavy is loaded.

Each check is a small function `cfg -> list of problems` (an empty list when the config is
fine). `validate` runs them all and raises one ConfigError listing every problem, so a user
fixes a config in one round trip. Checks import torch only when the key they guard is set.

The checks live by subject: `training` (algorithm, data and train keys), `rewards`,
`distributed` (launch and DeepSpeed) and `machine` (what this machine has).
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from vlexp import runplan
from vlexp.config import algo as algorithm
from vlexp.config.reward import columns as reward_columns
from vlexp.validate.distributed import check_deepspeed, check_launcher
from vlexp.validate.machine import (
    check_attention,
    check_bench_machine,
    check_bf16,
    check_liger,
    check_model_source,
    check_optimizer,
    check_quantization,
    check_rollout_machine,
    check_torch_compile,
    check_video_backend,
    check_vllm,
)
from vlexp.validate.rewards import (
    check_grpo_reward,
    check_reward_model_paths,
    check_rewards,
)
from vlexp.validate.training import (
    check_available,
    check_choices,
    check_dynamic_sampling,
    check_environment,
    check_eval,
    check_generation_batch,
    check_generation_kwargs,
    check_model_family,
    check_padding_free,
    check_pixels,
    check_ppo,
    check_prompt_template,
    check_removed_args,
    check_resume,
    check_rollout,
    check_teacher,
    check_video,
)

__all__ = [
    "CHECKS",
    "MACHINE_CHECKS",
    "ConfigError",
    "check_deepspeed",
    "check_optimizer",
    "check_vllm",
    "reward_columns",
    "validate",
]


class ConfigError(ValueError):
    """A config that cannot run; the message names the keys and the fix."""


def validate(cfg: DictConfig, machine: bool = True) -> runplan.RunPlan:
    """The run plan of `cfg` (`vlexp.runplan`), or one ConfigError listing every combination
    that cannot work.

    `machine=False` skips the checks of this machine (packages, CUDA), e.g. when
    `python -m vlexp.plan` plans a GPU job on a laptop.
    """
    missing = missing_values(cfg)
    if missing:  # the checks below would read them: report only these
        raise ConfigError(missing[0] if len(missing) == 1 else "; ".join(missing))
    plan = plan_of(cfg)
    problems = [p for check in CHECKS if machine or check not in MACHINE_CHECKS for p in check(cfg)]
    problems += [
        p
        for check in PLAN_CHECKS
        if machine or check not in MACHINE_CHECKS
        for p in check(cfg, plan)
    ]
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("\n".join(["several problems:", *(f"  - {p}" for p in problems)]))
    return plan


def plan_of(cfg: DictConfig) -> runplan.RunPlan:
    """The run plan, with the model family resolved once for every check and everything
    after (recorded in `model.family`); a model no family claims stops here with that one
    message."""
    from vlexp import families

    try:
        return runplan.of(cfg)
    except families.UnknownFamily as err:
        raise ConfigError(str(err)) from None


# What a `???` value in conf/ looks like when given; other keys get a generic example.
EXAMPLES = {
    "data.train": "/data/train.jsonl",
    "data.eval": "/data/eval.jsonl",
    "data.name": "openbmb/RLAIF-V-Dataset",
    "reward.funcs.model.path": "<run dir of an algo=reward_model run>",
    "algo.args.critic_init": "<run dir of an algo=reward_model run>",
}


def missing_values(cfg: DictConfig) -> list[str]:
    """One line per mandatory value (`???`) left unset, naming the key with an example."""
    from omegaconf import OmegaConf

    return [
        f"{key} is required and not set: add it to the command, e.g. "
        f"{key}={EXAMPLES.get(key, 'VALUE')}"
        for key in sorted(OmegaConf.missing_keys(cfg))
    ]


CHECKS: list[Callable[[DictConfig], list[str]]] = [
    algorithm.problems,
    check_available,
    check_choices,
    check_prompt_template,
    check_grpo_reward,
    check_generation_batch,
    check_dynamic_sampling,
    check_rewards,
    check_quantization,
    check_optimizer,
    check_removed_args,
    check_generation_kwargs,
    check_bf16,
    check_vllm,
    check_rollout,
    check_rollout_machine,
    check_ppo,
    check_reward_model_paths,
    check_teacher,
    check_eval,
    check_launcher,
    check_deepspeed,
    check_resume,
    check_padding_free,
    check_attention,
    check_liger,
    check_torch_compile,
    check_video,
    check_video_backend,
    check_model_source,
]
# Checks that read the run plan (the model family, resolved once at start-up).
PLAN_CHECKS: list[Callable[[DictConfig, runplan.RunPlan], list[str]]] = [
    check_pixels,
    check_model_family,
    check_environment,
    check_bench_machine,
]
# What this machine has (packages, CUDA, a compiler), not what the config says.
MACHINE_CHECKS = {
    check_quantization,
    check_optimizer,
    check_bf16,
    check_vllm,
    check_rollout_machine,
    check_attention,
    check_liger,
    check_torch_compile,
    check_video_backend,
    check_model_source,
    check_bench_machine,
}
