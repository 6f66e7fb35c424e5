"""PPO for VLMs (TRL 1.x ships none): actor + critic, KL-shaped rewards, GAE, clipped losses.

The loop, top to bottom, for each rollout (one batch of `per_device_train_batch_size` prompts):
1. the actor samples completions (HF `generate`, through TRL's `unwrap_model_for_generation`,
   which gathers ZeRO-3 weights);
2. one no-grad pass gives the actor's and the reference's log-probs (reference = LoRA adapter
   disabled, or a frozen copy) and the critic's per-token values; the rewards (rule-based
   functions with TRL's signature and/or `reward=model`) give one score per completion;
3. per-token reward = -kl_coef * (logp - ref_logp), plus the score on the last token;
   GAE(gamma, lam) gives advantages (whitened) and returns;
4. `ppo_epochs` passes over the rollout in `num_mini_batches` shuffled mini-batches, one
   Trainer step each: clipped policy loss + vf_coef * clipped value loss.

It is a transformers `Trainer`: accelerate/DeepSpeed preparation, the optimizer, checkpoints,
callbacks and `self.log` (hence metrics.jsonl) come from there. The dataloader repeats every
rollout batch `ppo_epochs * num_mini_batches` times (TRL's `RepeatSampler`, as GRPO does);
the first copy triggers the rollout, every step consumes the next mini-batch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, Trainer, TrainingArguments

from vlexp.algorithms import moe
from vlexp.algorithms.actor_critic import (
    PolicyAndValue,
    load_checkpoint,
    load_critic,
    select_rows,
    split_rows,
)


@dataclass
class PPOConfig(TrainingArguments):
    """`TrainingArguments` plus the PPO knobs (names as in TRL 0.x's PPOConfig)."""

    max_completion_length: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    kl_coef: float = 0.05  # weight of the per-token KL penalty inside the reward
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    ppo_epochs: int = 4
    num_mini_batches: int = 1  # per rollout and per epoch; must divide the batch size
    critic_init: str | None = None  # a reward-model run dir; None = the policy's weights
    reward_weights: list[float] | None = None
    # Extra GenerationConfig keys for the rollouts (as GRPOConfig's); vlexp adds the vision
    # placeholders to suppress_tokens (recipe.run.keep_placeholders_out).
    generation_kwargs: dict | None = None
    # MoE models: weight of the router's load-balancing loss, added for the actor and the
    # critic; None = the model config's own (TRL's rule, vlexp.algorithms.moe), 0.0 = off.
    router_aux_loss_coef: float | None = None
    remove_unused_columns: bool = False


# ---------------------------------------------------------------- pure math (tested alone)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def gae(rewards, values, mask, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns, all (B, T); positions where mask is 0 are past the end."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    return advantages * mask, (advantages + values) * mask


def policy_loss(logp, old_logp, advantages, mask, cliprange: float):
    """Clipped surrogate; returns (loss, clip fraction, approx KL 0.5 * E[(log ratio)^2])."""
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac, 0.5 * masked_mean(log_ratio**2, mask)


def value_loss(values, old_values, returns, mask, cliprange_value: float):
    """0.5 * E[max((v - R)^2, (clip(v, v_old +- c) - R)^2)]; returns (loss, clip fraction)."""
    clipped_values = old_values + torch.clamp(
        values - old_values, -cliprange_value, cliprange_value
    )
    unclipped, clipped = (values - returns) ** 2, (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask)


# ---------------------------------------------------------------- trainer


def with_completions(prompt: dict, completion_ids: torch.Tensor, mask: torch.Tensor) -> dict:
    """The prompt's model inputs with the completions appended: the per-token fields
    (input_ids, attention_mask, mm_token_type_ids) grow by the completion; the rest (pixel
    values, grids) stay."""
    length = prompt["input_ids"].shape[1]
    tails = {"input_ids": completion_ids, "attention_mask": mask.long()}
    return {
        k: torch.cat([v, tails.get(k, torch.zeros_like(completion_ids))], 1)
        if k not in ("pixel_values", "image_grid_thw") and v.dim() == 2 and v.shape[1] == length
        else v
        for k, v in prompt.items()
    }


class PPOTrainer(Trainer):
    # Restores actor and critic from its own checkpoint files on resume (vlexp.config.algo).
    vlexp_restores_own_weights = True

    def __init__(
        self, model, args: PPOConfig, train_dataset=None, eval_dataset=None,
        processing_class=None, peft_config=None, callbacks=None, reward_funcs=(),
    ) -> None:  # fmt: skip
        from trl.trainer.utils import disable_dropout_in_model, identity

        if not reward_funcs:
            raise ValueError("PPO needs at least one reward: e.g. reward=[think_format,accuracy]")
        self.reward_funcs = list(reward_funcs)
        self.reward_weights = torch.tensor(args.reward_weights or [1.0] * len(self.reward_funcs))
        critic = load_critic(model, args.critic_init)
        self.ref_model = None
        if peft_config is None:  # a frozen copy; with LoRA the reference is the adapter-off policy
            self.ref_model = type(model).from_pretrained(model.name_or_path, dtype=model.dtype)
        else:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
            critic_peft = type(peft_config)(**peft_config.to_dict())
            critic_peft.task_type, critic_peft.modules_to_save = None, ["score"]
            critic = get_peft_model(critic, critic_peft)
        for module in (model, critic):
            disable_dropout_in_model(module)
        super().__init__(
            model=PolicyAndValue(model, critic), args=args, data_collator=identity,
            train_dataset=train_dataset, processing_class=processing_class, callbacks=callbacks,
        )  # fmt: skip
        if self.ref_model is not None:
            self.ref_model = self._prepare_frozen(self.ref_model)
        tokenizer = processing_class.tokenizer
        gen = model.generation_config
        self.generation_config = GenerationConfig(
            max_new_tokens=args.max_completion_length, do_sample=True,
            temperature=args.temperature, top_p=args.top_p, top_k=0,
            eos_token_id=gen.eos_token_id or tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **(args.generation_kwargs or {}),
        )  # fmt: skip
        eos = self.generation_config.eos_token_id
        self.eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos])
        self.steps_per_rollout = args.ppo_epochs * args.num_mini_batches
        self.router_aux_loss_coef = moe.aux_loss_coef(model, args.router_aux_loss_coef)
        self._micro_step, self._rollout = 0, None
        self._metrics: dict[str, list[float]] = defaultdict(list)

    def _prepare_frozen(self, model):
        model.eval().requires_grad_(False)
        if self.is_deepspeed_enabled:
            from trl.models.utils import prepare_deepspeed

            return prepare_deepspeed(model, self.accelerator)
        return model.to(self.accelerator.device)

    def _get_train_sampler(self, train_dataset=None):
        from trl.trainer.utils import RepeatSampler

        return RepeatSampler(
            train_dataset or self.train_dataset, mini_repeat_count=1,
            batch_size=self.args.per_device_train_batch_size * self.accelerator.num_processes,
            repeat_count=self.steps_per_rollout, seed=self.args.seed,
        )  # fmt: skip

    def _prepare_inputs(self, rows: list[dict]) -> dict:
        k = self._micro_step % self.steps_per_rollout
        self._micro_step += 1
        if k == 0:
            self._rollout = self.make_rollout(rows)
            size = len(rows)
            self._orders = [torch.randperm(size) for _ in range(self.args.ppo_epochs)]
        epoch, part = divmod(k, self.args.num_mini_batches)
        size = len(self._orders[0]) // self.args.num_mini_batches
        return select_rows(self._rollout, self._orders[epoch][part * size : (part + 1) * size])

    @torch.no_grad()
    def make_rollout(self, rows: list[dict]) -> dict:
        """Generate, score, and compute the advantages for one batch of prompts."""
        device, processor = self.accelerator.device, self.processing_class
        prompts = [row["prompt"] for row in rows]
        images = [row.get("images") or [] for row in rows]
        prompt = self._prompt_inputs(prompts, images)
        P = prompt["input_ids"].shape[1]
        completion_ids, mask = self._sample(prompt)
        batch = with_completions(prompt, completion_ids, mask)
        logits, values, _ = self.model_wrapped(logits_to_keep=mask.shape[1] + 1, **batch)
        logp, entropy = self._logp(logits, completion_ids)  # (B, C) each
        values = values[:, P - 1 : -1]  # value of the state before each completion token
        ref_logp = self._ref_logp(batch, completion_ids)

        completions = processor.batch_decode(completion_ids, skip_special_tokens=True)
        scores = self._score(rows, prompts, completions, completion_ids, mask).to(device)  # (B,)
        kl = (logp - ref_logp) * mask  # (B, C), k1 estimator
        rewards = -self.args.kl_coef * kl
        last = mask.sum(1).long() - 1
        rewards[torch.arange(len(rows), device=device), last] += scores
        advantages, returns = gae(rewards, values, mask, self.args.gamma, self.args.lam)
        advantages = masked_whiten(advantages, mask)

        self._record(
            {
                "objective/kl": kl.sum(1).mean(),
                "objective/entropy": masked_mean(entropy, mask),
                "objective/non_score_reward": (-self.args.kl_coef * kl).sum(1).mean(),
                "objective/scores": scores.mean(),
                "objective/rlhf_reward": (scores - self.args.kl_coef * kl.sum(1)).mean(),
                "val/mean": masked_mean(values, mask),
                "completions/mean_length": mask.sum(1).mean(),
            }
        )
        return {
            **split_rows(
                batch, prompt.get("image_grid_thw"), images, getattr(processor, "image_token_id", None)
            ),
            "completion_ids": completion_ids, "mask": mask, "logp": logp,
            "values": values, "advantages": advantages, "returns": returns,
        }  # fmt: skip

    def _prompt_inputs(self, prompts: list, images: list[list]) -> dict:
        """The prompts through the chat template and the processor, left-padded."""
        processor = self.processing_class
        texts = [processor.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]  # fmt: skip
        return processor(  # one image list per text (Gemma 3 insists, Qwen accepts)
            text=texts,
            images=images if any(images) else None,
            padding=True,
            padding_side="left",
            return_tensors="pt",
        ).to(self.accelerator.device)

    def _sample(self, prompt: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(completion ids, mask), each (B, C): the policy's completions, padded after their
        first EOS, which the mask keeps."""
        from trl.models.utils import unwrap_model_for_generation

        with unwrap_model_for_generation(self.model_wrapped, self.accelerator) as unwrapped:
            out = unwrapped.policy.generate(**prompt, generation_config=self.generation_config)
        completion_ids = out[:, prompt["input_ids"].shape[1] :]  # (B, C)
        # Keep the first EOS, mask everything after it.
        is_eos = torch.isin(completion_ids, self.eos_ids.to(completion_ids.device)).int()
        after_eos = (is_eos.cumsum(1) - is_eos) > 0
        mask = (~after_eos).float()  # (B, C)
        pad = self.processing_class.tokenizer.pad_token_id
        return completion_ids.masked_fill(after_eos, pad), mask

    def _logp(self, logits, completion_ids):
        from trl.trainer.utils import entropy_from_logits, selective_log_softmax

        logits = logits[:, :-1] / self.args.temperature  # (B, C, V): position t predicts token t
        return selective_log_softmax(logits, completion_ids), entropy_from_logits(logits)

    def _ref_logp(self, batch, completion_ids):
        keep = completion_ids.shape[1] + 1
        if self.ref_model is not None:
            logits = self.ref_model(**batch, logits_to_keep=keep, use_cache=False).logits
        else:
            policy = self.accelerator.unwrap_model(self.model_wrapped).policy
            with policy.disable_adapter():
                logits = policy(**batch, logits_to_keep=keep, use_cache=False).logits
        return self._logp(logits, completion_ids)[0]

    def _score(self, rows, prompts, completions, completion_ids, mask) -> torch.Tensor:
        """Weighted sum of the reward functions (TRL's signature; columns as kwargs)."""
        from trl.trainer.utils import get_callable_name

        columns = {k: [row[k] for row in rows] for k in rows[0] if k not in ("prompt",)}
        completions = [[{"role": "assistant", "content": text}] for text in completions]
        ids = [c[m.bool()].tolist() for c, m in zip(completion_ids, mask, strict=True)]
        table = torch.zeros(len(rows), len(self.reward_funcs))
        for i, func in enumerate(self.reward_funcs):
            values = func(prompts=prompts, completions=completions, completion_ids=ids, **columns)
            table[:, i] = torch.tensor([float("nan") if v is None else v for v in values])
            self._metrics[f"rewards/{get_callable_name(func)}/mean"].append(
                table[:, i].mean().item()
            )
        return (table * self.reward_weights).nansum(1)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mask, C = inputs["mask"], inputs["mask"].shape[1]
        rollout_only = ("completion_ids", "mask", "logp", "values", "advantages", "returns")
        batch = {k: v for k, v in inputs.items() if k not in rollout_only}
        route = self.router_aux_loss_coef != 0.0
        logits, values, aux_losses = model(
            logits_to_keep=C + 1, output_router_logits=route, **batch
        )
        logp, entropy = self._logp(logits, inputs["completion_ids"])
        values = values[:, -C - 1 : -1]
        pg, clipfrac, approxkl = policy_loss(logp, inputs["logp"], inputs["advantages"], mask, self.args.cliprange)  # fmt: skip
        vf, vf_clipfrac = value_loss(values, inputs["values"], inputs["returns"], mask, self.args.cliprange_value)  # fmt: skip
        recorded = {
            "policy/clipfrac": clipfrac,
            "policy/approxkl": approxkl,
            "policy/entropy": masked_mean(entropy, mask),
            "loss/policy": pg,
            "loss/value": vf,
            "val/clipfrac": vf_clipfrac,
        }
        loss = pg + self.args.vf_coef * vf
        if route:  # MoE: keep both routers balanced, as TRL's trainers do for one model
            actor_aux, critic_aux = aux_losses
            loss = loss + self.router_aux_loss_coef * (actor_aux + critic_aux)
            recorded |= {"aux_loss": actor_aux, "val/aux_loss": critic_aux}
        self._record(recorded)
        return loss

    def _record(self, values: dict[str, torch.Tensor]) -> None:
        """Average each scalar over the processes (every rank calls this in lockstep)."""
        stacked = self.accelerator.gather(
            torch.stack([v.detach().float() for v in values.values()])[None]
        )
        for name, value in zip(values, stacked.mean(0).tolist(), strict=True):
            self._metrics[name].append(value)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs.update({k: sum(v) / len(v) for k, v in self._metrics.items() if v})
        self._metrics.clear()
        super().log(logs, start_time)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The policy at `output_dir` (from_pretrained-loadable), the critic in `critic/`."""
        output_dir = Path(output_dir or self.args.output_dir)
        wrapper = self.accelerator.unwrap_model(self.model_wrapped)
        if self.is_deepspeed_enabled:  # gathers ZeRO-3 shards on every rank
            state = self.accelerator.get_state_dict(self.deepspeed)
        else:
            state = wrapper.state_dict()
        if state is None:  # ZeRO-3: only the main process receives the gathered weights
            return
        for name, where in (("policy", output_dir), ("critic", output_dir / "critic")):
            part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
            getattr(wrapper, name).save_pretrained(
                str(where), state_dict=part, is_main_process=self.args.should_save
            )
        if self.args.should_save and self.processing_class is not None:
            self.processing_class.save_pretrained(str(output_dir))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # Without DeepSpeed (which restores its own engine state) Trainer expects one file.
        load_checkpoint(model or self.model, Path(resume_from_checkpoint))
