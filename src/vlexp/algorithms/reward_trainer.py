"""Train a VLM reward model on preference pairs with the Bradley-Terry loss.

TRL 1.16's `RewardTrainer` tokenises text only (no images reach its collator) and loads
models through `AutoModelForSequenceClassification`, which has no Qwen2-VL/Qwen2.5-VL
mapping; this is the same loss and the same metrics (`accuracy`, `margin`, `min/mean/
max_reward`) on transformers' `Trainer`, with a collator that runs the processor on the images.

    python -m vlexp algo=reward_model            # prompt/chosen/rejected (+ images) records
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from vlexp.algorithms import moe
from vlexp.algorithms.reward_model import encode_conversations, from_causal_lm, is_value_model


@dataclass
class RewardModelConfig(TrainingArguments):
    """`TrainingArguments` plus the reward-model knobs."""

    center_rewards_coefficient: float | None = field(
        default=None,
        metadata={"help": "Weight of mean((r_chosen + r_rejected)^2), keeping scores near 0."},
    )
    # MoE models: weight of the router's load-balancing loss; None = the model config's own
    # (TRL's rule, vlexp.algorithms.moe), 0.0 = off.
    router_aux_loss_coef: float | None = None
    remove_unused_columns: bool = False  # the collator needs prompt/chosen/rejected/images


class PairCollator:
    """Rows of prompt/chosen/rejected/images -> one batch: B chosen rows, then B rejected."""

    def __init__(self, processor) -> None:
        self.processor = processor

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        conversations = [r["prompt"] + r["chosen"] for r in rows]
        conversations += [r["prompt"] + r["rejected"] for r in rows]
        images = [r.get("images") or [] for r in rows] * 2
        return dict(encode_conversations(self.processor, conversations, images))


def bradley_terry(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected), averaged over pairs."""
    return -nn.functional.logsigmoid(chosen - rejected).mean()


class RewardModelTrainer(Trainer):
    """Trains `score` (and the backbone, or its LoRA adapter) so chosen outscores rejected."""

    # Its checkpoints keep the value-head class's own key names, which the Trainer's resume
    # loads as saved: the full-weight fix of vlexp.recipe.resume does not apply here.
    vlexp_restores_own_weights = True

    def __init__(
        self,
        model,
        args: RewardModelConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        peft_config=None,
        callbacks=None,
    ) -> None:
        if not is_value_model(model):
            from transformers import set_seed

            set_seed(args.seed)  # the new head's initial weights are then reproducible
            model = from_causal_lm(model)
        if peft_config is not None:
            from peft import get_peft_model

            # A generic PeftModel (CAUSAL_LM would expect generate()); the head is new: train
            # it whole next to the adapter, and save it with it.
            peft_config.task_type = None
            peft_config.modules_to_save = list(
                dict.fromkeys([*(peft_config.modules_to_save or []), "score"])
            )
            model = get_peft_model(model, peft_config)
        super().__init__(
            model=model,
            args=args,
            data_collator=PairCollator(processing_class),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
        )
        self.router_aux_loss_coef = moe.aux_loss_coef(self.model, args.router_aux_loss_coef)
        self._metrics: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        route = self.router_aux_loss_coef != 0.0
        outputs = model(**inputs, output_router_logits=True) if route else model(**inputs)
        scores = outputs.logits.squeeze(-1)  # (2B,): chosen rows first
        chosen, rejected = scores.chunk(2)
        loss = bradley_terry(chosen, rejected)
        if self.args.center_rewards_coefficient:
            loss = loss + self.args.center_rewards_coefficient * ((chosen + rejected) ** 2).mean()
        if route:  # MoE: keep the router balanced, as TRL's trainers do
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
        mode = "train" if model.training else "eval"
        with torch.no_grad():
            gather = self.accelerator.gather_for_metrics
            all_scores = gather(scores.detach())
            metrics = self._metrics[mode]
            if route:
                metrics["aux_loss"].append(gather(outputs.aux_loss.detach()).mean().item())
            metrics["accuracy"].append(gather((chosen > rejected).float()).mean().item())
            metrics["margin"].append(gather((chosen - rejected).detach()).mean().item())
            metrics["min_reward"].append(all_scores.min().item())
            metrics["mean_reward"].append(all_scores.mean().item())
            metrics["max_reward"].append(all_scores.max().item())
        return (loss, scores) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for key, values in self._metrics[mode].items():
            if values:
                logs[prefix + key] = sum(values) / len(values)
        self._metrics[mode].clear()
        super().log(logs, start_time)
