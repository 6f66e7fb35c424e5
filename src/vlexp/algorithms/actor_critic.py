"""The two models PPO trains (vlexp.algorithms.ppo): actor + critic as one module, their loading and
the rollout's per-row bookkeeping."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from vlexp import families
from vlexp.algorithms.reward_model import load_reward_model, reward_class
from vlexp.models.loading import freeze_vision


class PolicyAndValue(nn.Module):
    """One module for the optimizer and the accelerator: actor logits and critic values."""

    def __init__(self, policy: nn.Module, critic: nn.Module) -> None:
        super().__init__()
        self.policy, self.critic = policy, critic
        self.config = policy.config

    def forward(self, logits_to_keep: int, output_router_logits: bool = False, **inputs):
        """(logits, values, aux_losses): `aux_losses` is None, or with `output_router_logits`
        (MoE models) the (policy, critic) router load-balancing losses."""
        route = {"output_router_logits": True} if output_router_logits else {}
        actor = self.policy(**inputs, logits_to_keep=logits_to_keep, use_cache=False, **route)
        critic = self.critic(**inputs, **route)
        aux_losses = (actor.aux_loss, critic.aux_loss) if output_router_logits else None
        return actor.logits, critic.token_values, aux_losses

    # Gradient checkpointing is switched on (Trainer) and off (generation) for both models.
    @property
    def is_gradient_checkpointing(self) -> bool:
        return getattr(self.policy, "is_activation_checkpointing", False)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None) -> None:
        for module in (self.policy, self.critic):
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs)

    def gradient_checkpointing_disable(self) -> None:
        for module in (self.policy, self.critic):
            module.gradient_checkpointing_disable()


def load_checkpoint(wrapper: nn.Module, checkpoint: Path) -> None:
    """Load the policy and the critic from where `PPOTrainer.save_model` put them.

    Full weights go through `from_pretrained` (it undoes the key renaming `save_pretrained`
    applies), then are copied in strictly; adapters through PEFT's own loader.
    """
    from peft import PeftModel, load_peft_weights, set_peft_model_state_dict

    for name, where in (("policy", checkpoint), ("critic", checkpoint / "critic")):
        part = getattr(wrapper, name)
        if isinstance(part, PeftModel):
            result = set_peft_model_state_dict(part, load_peft_weights(str(where)))
            problems = [k for k in result.missing_keys if "lora_" in k or "modules_to_save" in k]
            problems += list(result.unexpected_keys)
            if problems:
                raise ValueError(f"{where}: checkpoint does not match the {name}: {problems[:5]}")
        else:
            saved = type(part).from_pretrained(str(where), dtype=part.dtype)
            part.load_state_dict(saved.state_dict(), strict=True)


def load_critic(policy, critic_init: str | None):
    """Critic = backbone + value head: a trained reward model, or the policy's own weights."""

    if critic_init:
        critic = load_reward_model(critic_init, dtype=policy.dtype)
    else:
        cls = reward_class(policy.config.model_type)
        critic = cls.from_pretrained(policy.name_or_path, dtype=policy.dtype)
    vision = re.compile(families.of_model(policy).vision_modules)
    if any(
        not p.requires_grad and vision.fullmatch(n.rsplit(".", 1)[0])
        for n, p in policy.named_parameters()
    ):
        freeze_vision(critic)  # mirror model.freeze_vision
    return critic


def split_rows(
    batch: dict, grid: torch.Tensor | None, images: list[list], image_token_id: int | None = None
) -> dict:
    """Per-row views of the processor output: pixel_values is flat over all images."""
    out = {k: v for k, v in batch.items() if k not in ("pixel_values", "image_grid_thw")}
    if "pixel_values" not in batch:
        return out
    counts = [len(row) for row in images]
    if grid is None:
        # One pixel tensor per image (Gemma 3: (images, 3, H, W)). Dropping them here made
        # PPO's training forward see the image tokens without the images.
        pixel_rows = batch["pixel_values"].shape[0]
        if pixel_rows != sum(counts) and image_token_id is not None:
            # Tiles of varying count per image (InternVL), each tile the same number of image
            # tokens: a row's share of the tiles is its share of the image tokens.
            tokens = (batch["input_ids"] == image_token_id).sum(1)  # (B,)
            counts = (tokens * pixel_rows // tokens.sum()).tolist()
        out["pixel_values"] = list(batch["pixel_values"].split(counts))
        return out
    patches = grid.prod(-1).split(counts)  # per row: patches of each image
    out["pixel_values"] = list(batch["pixel_values"].split([int(p.sum()) for p in patches]))
    out["image_grid_thw"] = list(grid.split(counts))
    return out


def select_rows(rollout: dict, index: torch.Tensor) -> dict:
    """A mini-batch of rollout rows (tensors indexed, per-row lists concatenated)."""
    out = {}
    for key, value in rollout.items():
        if isinstance(value, list):
            out[key] = torch.cat([value[i] for i in index.tolist()])
        else:
            out[key] = value[index.to(value.device)]
    return out
