"""The router's load-balancing loss for vlexp's own trainers (reward model, PPO) on MoE models.

TRL 1.16's SFT, DPO, GRPO and RLOO trainers add `router_aux_loss_coef * aux_loss` to the loss
of a mixture-of-experts model and log `aux_loss`; vlexp's reward-model and PPO trainers do
the same with these two functions, with TRL's rule for the coefficient: `None` takes the
architecture's own (`text_config.router_aux_loss_coef`, 0.001 for Qwen3-VL-MoE), `0.0` turns
the loss off, and a non-zero value on a dense model is an error.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from vlexp import families

if TYPE_CHECKING:
    import torch


def aux_loss_coef(model: Any, requested: float | None) -> float:
    """The weight of the router loss for `model` (0.0: off; dense models have none).

    A model is MoE when its text config has `output_router_logits`, as TRL decides.
    """
    text = model.config.get_text_config()
    if not hasattr(text, "output_router_logits"):
        if requested:
            raise ValueError(
                f"algo.args.router_aux_loss_coef={requested} but {type(model).__name__} is not a "
                "mixture-of-experts model: drop the key"
            )
        return 0.0
    return float(getattr(text, "router_aux_loss_coef", 0.0) if requested is None else requested)


def load_balancing_loss(
    config: Any, router_logits: tuple[torch.Tensor, ...], attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """Switch-Transformer load-balancing loss (a scalar) from a backbone's router logits,
    computed by the family's own modeling module, as its `*ForConditionalGeneration` does.

    `router_logits`: one (B*T, num_experts) tensor per MoE layer; padding is masked out.
    """
    module, _, _ = families.of_model_type(config.model_type).backbone.partition(":")
    text = config.get_text_config()
    loss_func = import_module(module).load_balancing_loss_func
    return loss_func(router_logits, text.num_experts, text.num_experts_per_tok, attention_mask)
