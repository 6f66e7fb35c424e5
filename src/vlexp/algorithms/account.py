"""One log line per run: the algorithm as the trainer holds it (not what the config asked).

Each TRL trainer class (or any subclass of it) has its describer; trainers without one
(vlexp's PPO and reward model log their own settings) are left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from vlexp.algorithms import grpo

log = logging.getLogger("vlexp")


def describe_kto(trainer: Any) -> dict[str, Any]:
    """KTO's loss as the trainer holds it: unpaired desirable/undesirable completions."""
    return _held_by(
        trainer,
        loss_type=trainer.loss_type,
        beta=trainer.beta,
        desirable_weight=trainer.desirable_weight,
        undesirable_weight=trainer.undesirable_weight,
        kl_estimate=trainer.calculate_KL,  # batch-mismatched completions estimate z_ref
        train_sampling_strategy=trainer.args.train_sampling_strategy,
        reference=_reference(trainer),
    )


def describe_distillation(trainer: Any) -> dict[str, Any]:
    """On-policy distillation as the trainer holds it: the divergence and the teacher."""
    teacher = trainer.accelerator.unwrap_model(trainer.teacher_model)
    return _held_by(
        trainer,
        divergence={0.0: "forward KL", 1.0: "reverse KL"}.get(trainer.beta, "generalised JSD"),
        beta=trainer.beta,
        temperature=trainer.temperature,
        teacher=teacher.config._name_or_path,
        teacher_dtype=str(next(teacher.parameters()).dtype),
        max_completion_length=trainer.args.max_completion_length,
    )


def describe_online_dpo(trainer: Any) -> dict[str, Any]:
    """Online DPO as the trainer holds it: two sampled completions judged by the rewards."""
    judge = zip(trainer.reward_func_names, trainer.reward_weights.tolist(), strict=True)
    return _held_by(
        trainer,
        loss_type=trainer.args.loss_type,
        beta=trainer.beta,
        completions_per_prompt=2,
        max_new_tokens=trainer.args.max_new_tokens,
        judge=dict(judge),
        reference=_reference(trainer),
    )


def describe_orpo(trainer: Any) -> dict[str, Any]:
    """ORPO as the trainer holds it: NLL plus beta x the log odds ratio, no reference."""
    return _held_by(
        trainer,
        loss="nll + beta x log odds ratio",
        beta=trainer.beta,
        nll_tokens="prompt and chosen answer",  # TRL's ORPO takes the NLL over both
        images=_takes_images(trainer),
        reference=_reference(trainer),
    )


def describe_cpo(trainer: Any) -> dict[str, Any]:
    """CPO / SimPO as the trainer holds it (one TRL trainer, `loss_type` picks the loss)."""
    settings = dict(loss_type=trainer.loss_type, beta=trainer.beta, cpo_alpha=trainer.cpo_alpha)
    if trainer.loss_type == "simpo":
        settings["simpo_gamma"] = trainer.simpo_gamma
    settings |= dict(label_smoothing=trainer.label_smoothing, alpha=trainer.alpha)
    return _held_by(
        trainer, **settings, images=_takes_images(trainer), reference=_reference(trainer)
    )


def _takes_images(trainer: Any) -> bool:
    from vlexp.algorithms.preference import ImagePreferenceMixin

    return isinstance(trainer, ImagePreferenceMixin)


def _held_by(trainer: Any, **settings: Any) -> dict[str, Any]:
    """The trainer's class name, then the settings it holds, in the order given."""
    return {"trainer": type(trainer).__name__, **settings}


def _reference(trainer: Any) -> str:
    from accelerate.utils import is_peft_model

    if getattr(trainer, "ref_model", None) is not None:
        return "a separate frozen copy of the starting policy"
    if is_peft_model(trainer.model):
        return "the policy with its LoRA adapter disabled (no second copy)"
    return "none"


def describers() -> list[tuple[type, Any]]:
    """(trainer class, describer), most specific first."""
    from trl import DistillationTrainer, GRPOTrainer, KTOTrainer, RLOOTrainer
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.online_dpo import OnlineDPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    return [
        (GRPOTrainer, grpo.describe),
        (RLOOTrainer, grpo.describe_rloo),
        (KTOTrainer, describe_kto),
        (DistillationTrainer, describe_distillation),
        (OnlineDPOTrainer, describe_online_dpo),
        (ORPOTrainer, describe_orpo),
        (CPOTrainer, describe_cpo),
    ]


def log_algorithm(trainer: Any) -> None:
    """Log what the trainer holds, for the trainer classes vlexp knows (and subclasses)."""
    for cls, describe in describers():
        if isinstance(trainer, cls):
            log.info("algorithm (as the trainer holds it): %s", describe(trainer))
            return
