"""Glue for the GRPO family: a one-line account of the algorithm the trainer actually runs."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("vlexp")


def reference_model(trainer: Any) -> str:
    """Where the KL term's reference log-probs come from in this trainer."""
    from accelerate.utils import is_peft_model

    if trainer.beta == 0.0:
        return "none (beta=0: no KL term, nothing loaded)"
    if trainer.ref_model is None and is_peft_model(trainer.model):
        return "the policy with its LoRA adapter disabled (no second copy)"
    if trainer.ref_model is not None:
        ref = getattr(trainer.ref_model, "module", trainer.ref_model)  # DeepSpeed's engine wraps it
        name = getattr(getattr(ref, "config", None), "_name_or_path", None) or type(ref).__name__
        return f"a separate copy of {name}"
    raise RuntimeError(f"beta={trainer.beta} but the trainer holds no reference model")


# Knobs only some losses read (from the trainer's args), logged with those losses.
LOSS_OWN_KNOBS = {
    "sapo": ("sapo_temperature_pos", "sapo_temperature_neg"),
    "vespo": ("vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg"),
}


def describe(trainer: Any) -> dict[str, Any]:
    """The loss-defining settings the GRPO trainer holds (not what the config asked for)."""
    own = {key: getattr(trainer.args, key) for key in LOSS_OWN_KNOBS.get(trainer.loss_type, ())}
    return {
        "trainer": type(trainer).__name__,
        "loss_type": trainer.loss_type,
        "importance_sampling_level": trainer.importance_sampling_level,
        "scale_rewards": trainer.scale_rewards,
        "beta": trainer.beta,
        "epsilon": [trainer.epsilon_low, trainer.epsilon_high],
        **own,
        "top_entropy_quantile": trainer.top_entropy_quantile,
        "mask_truncated_completions": trainer.mask_truncated_completions,
        "num_iterations": trainer.num_iterations,
        # Micro-batches per generation: above gradient_accumulation_steps the steps after the
        # first of a generation are off-policy (the ratio leaves 1).
        "steps_per_generation": trainer.args.steps_per_generation,
        "dynamic_sampling": _dynamic_sampling(trainer),
        "reference": reference_model(trainer),
        "generation": f"vllm ({trainer.vllm_mode})" if trainer.use_vllm else "transformers",
        "rewards": dict(
            zip(trainer.reward_func_names, trainer.reward_weights.tolist(), strict=True)
        ),
    }


def _dynamic_sampling(trainer: Any) -> str:
    sampling = getattr(trainer, "dynamic_sampling", None)  # vlexp.patches.DynamicSamplingMixin
    return f"on ({sampling.oversample}x prompts per generation)" if sampling else "off"


def describe_rloo(trainer: Any) -> dict[str, Any]:
    """The loss-defining settings an RLOO trainer holds: leave-one-out baseline, one clipped
    ratio per sequence, the KL as a penalty inside the reward."""
    return {
        "trainer": type(trainer).__name__,
        "baseline": "leave-one-out mean of the other completions of the prompt",
        "normalize_advantages": trainer.normalize_advantages,
        "beta (KL in the reward)": trainer.beta,
        "epsilon": [trainer.epsilon_low, trainer.epsilon_high],
        "reward_clip_range": trainer.reward_clip_range,
        "mask_truncated_completions": trainer.mask_truncated_completions,
        "num_iterations": trainer.num_iterations,
        "num_generations": trainer.num_generations,
        "reference": reference_model(trainer),
        "rewards": dict(
            zip(trainer.reward_func_names, trainer.reward_weights.tolist(), strict=True)
        ),
    }
