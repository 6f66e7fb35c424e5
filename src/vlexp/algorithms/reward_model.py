"""A VLM with a scalar value head: the reward model, the PPO critic, and a GRPO/PPO reward.

transformers 5 has no `AutoModelForSequenceClassification` mapping for Qwen2-VL or
Qwen2.5-VL, so vlexp builds one small class per family (`value_head_class`): the family's
backbone (`vlexp.families`: e.g. `Qwen2_5_VLModel`, vision tower included) plus `score`,
a bias-free linear layer from the
last hidden state to one number, exactly the layout of transformers' `*ForSequenceClassification`
heads. It saves and loads with `save_pretrained` / `from_pretrained` (`config.json` names the
class; `load_reward_model` picks it from `model_type`), and it loads a causal-LM checkpoint
too: the backbone weights match, `lm_head` is dropped, `score` starts fresh.

`forward` returns both the per-token values `token_values` `(B, T)` (the PPO critic reads
them) and the score at the last non-padding token `logits` `(B, 1)` (the reward model's output).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from vlexp import families, patches
from vlexp.algorithms import moe


@dataclass
class ValueHeadOutput(ModelOutput):
    logits: torch.Tensor | None = None  # (B, 1): the score at the last non-padding token
    # (B, T): the head applied at every position. Not `values`: that would hide the mapping's
    # values() method, which DeepSpeed's ZeRO-3 engine calls on every forward's output.
    token_values: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None  # MoE router load-balancing loss, when asked for


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding token of each row, for left or right padding.

    >>> last_token_index(torch.tensor([[1, 1, 0], [0, 1, 1]])).tolist()
    [1, 2]
    """
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(-1)


class _ValueHead:
    """Backbone + `score` (hidden -> 1); every family's value-head class derives from it."""

    backbone_class: type[nn.Module]

    def __init__(self, config) -> None:
        super().__init__(config)
        config.num_labels = 1
        self.model = self.backbone_class(config)
        self.score = nn.Linear(config.get_text_config().hidden_size, 1, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_router_logits: bool = False,
        **kwargs: Any,
    ) -> ValueHeadOutput:
        """`output_router_logits=True` (MoE backbones) also returns the router's
        load-balancing loss, as the family's causal-LM class does (vlexp.algorithms.moe)."""
        kwargs.pop("use_cache", None)
        if output_router_logits:
            kwargs["output_router_logits"] = True
        outputs = self.model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs
        )
        hidden = outputs.last_hidden_state  # (B, T, H)
        aux_loss = None
        if output_router_logits:
            aux_loss = moe.load_balancing_loss(self.config, outputs.router_logits, attention_mask)
        values = self.score(hidden).squeeze(-1)  # (B, T)
        if attention_mask is None:
            attention_mask = torch.ones_like(values, dtype=torch.long)
        rows = torch.arange(values.shape[0], device=values.device)
        score = values[rows, last_token_index(attention_mask)].unsqueeze(-1)  # (B, 1)
        return ValueHeadOutput(logits=score, token_values=values, aux_loss=aux_loss)


_CLASSES: dict[str, type[PreTrainedModel]] = {}  # family name -> its value-head class


def value_head_class(family: families.Family) -> type[PreTrainedModel]:
    """`<Family>ForRewardModel`: the family's backbone plus `score` (built once per family).

    The name follows the base class (`Qwen2_5_VLPreTrainedModel` -> `Qwen2_5_VLForRewardModel`),
    the name `config.json` records under `architectures`.
    """
    if family.name not in _CLASSES:
        base = family.load("pretrained_base")
        name = base.__name__.removesuffix("PreTrainedModel") + "ForRewardModel"
        cls = type(name, (_ValueHead, base), {"backbone_class": family.load("backbone")})
        cls.__module__ = __name__
        patches.experts_implementation_like(cls, cls.backbone_class)
        if family.weight_layout is not None:
            patches.share_checkpoint_conversion(cls.__name__, family.weight_layout)
        _CLASSES[family.name] = cls
    return _CLASSES[family.name]


def reward_class(model_type: str) -> type[PreTrainedModel]:
    """The value-head class for a `config.model_type` (UnknownFamily names the known ones)."""
    return value_head_class(families.of_model_type(model_type))


def is_value_model(model: nn.Module) -> bool:
    return any(
        isinstance(m, _ValueHead) for m in (getattr(model, "base_model", model), model)
    ) or any(isinstance(m, _ValueHead) for m in model.modules())


def from_causal_lm(lm: PreTrainedModel) -> PreTrainedModel:
    """Wrap a loaded VLM's backbone with a fresh value head, sharing (not copying) its weights.

    The class is built on the meta device so no second backbone is allocated; the loaded
    backbone (possibly ZeRO-3 partitioned) is then put in its place. The meta shell is built
    with the ZeRO-3 config out of sight: transformers would otherwise initialise its
    sub-models' buffers as partitioned weights ("Cannot copy out of meta tensor").
    """
    cls = reward_class(lm.config.model_type)
    with torch.device("meta"), patches.zero3_init_off():
        model = cls(lm.config)
    model.model = lm.model
    hidden = lm.config.get_text_config().hidden_size
    model.score = nn.Linear(hidden, 1, bias=False, dtype=lm.dtype)
    nn.init.normal_(model.score.weight, std=1.0 / (hidden + 1) ** 0.5)
    model.config.architectures = [cls.__name__]
    model.name_or_path = lm.name_or_path
    return model


def resolve_model_dir(path: str | Path) -> Path:
    """A run dir means its `final/`; anything else is taken as the model dir itself."""
    path = Path(path).expanduser()
    model_dir = path / "final" if (path / "final").is_dir() else path
    if (
        not (model_dir / "config.json").exists()
        and not (model_dir / "adapter_config.json").exists()
    ):
        raise FileNotFoundError(
            f"{path}: no trained model here (expected config.json or adapter_config.json, or a "
            f"run dir with final/): pass the run dir of an `algo=reward_model` run"
        )
    return model_dir


def load_reward_model(path: str | Path, dtype: Any = None) -> PreTrainedModel:
    """Load a value-head model saved by vlexp (full weights, or a LoRA adapter merged in)."""
    from transformers import AutoConfig

    model_dir = resolve_model_dir(path)
    adapter = model_dir / "adapter_config.json"
    base_dir = (
        json.loads(adapter.read_text())["base_model_name_or_path"]
        if adapter.exists()
        else model_dir
    )
    config = AutoConfig.from_pretrained(base_dir)
    model = reward_class(config.model_type).from_pretrained(base_dir, dtype=dtype or "auto")
    if adapter.exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(model_dir)).merge_and_unload()
    return model


def encode_conversations(processor, conversations: list[list[dict]], images: list[list]) -> dict:
    """Chat-template and process full conversations (prompt + answer) into model inputs."""
    texts = [processor.apply_chat_template(c, tokenize=False) for c in conversations]
    # One image list per text: Gemma 3's processor insists, the Qwen ones accept it.
    nested = [list(row) for row in images]
    return processor(
        text=texts, images=nested if any(nested) else None, padding=True, return_tensors="pt"
    )


def model_reward(path: str, batch_size: int = 8):
    """A GRPO/PPO reward function that scores completions with a trained reward model.

    The model loads here, when the rewards are built (before training starts), onto this
    process's device, in eval mode, once per process however often the rewards are built
    (in-training evaluation builds them again). Loading on the first call put the load
    inside the reward deadline (`reward.timeout_s`): a slow load timed out, the abandoned
    thread kept loading, and the retry loaded again. Scoring runs under `torch.no_grad()` in
    batches of `batch_size`. The function is named `reward_model`, so TRL logs it as
    `rewards/reward_model/...`.
    """
    model, processor = _scorer(path)

    def reward_model(prompts: list, completions: list, images: list | None = None, **kwargs):
        scores: list[float] = []
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            conversations = [
                list(p) + _as_messages(c)
                for p, c in zip(prompts[chunk], completions[chunk], strict=True)
            ]
            batch_images = (
                list(images[chunk]) if images is not None else [[] for _ in conversations]
            )
            batch_images = [row or [] for row in batch_images]
            inputs = encode_conversations(processor, conversations, batch_images).to(model.device)
            with torch.no_grad():
                scores += model(**inputs).logits.squeeze(-1).float().tolist()
        return scores

    return reward_model


def _as_messages(completion: Any) -> list[dict]:
    if isinstance(completion, str):
        return [{"role": "assistant", "content": [{"type": "text", "text": completion}]}]
    return list(completion)


_SCORERS: dict[tuple[str, str], tuple[Any, Any]] = {}  # (model dir, device) -> model, processor


def _scorer(path: str) -> tuple[Any, Any]:
    """The frozen reward model and its processor on this process's device, loaded once."""
    from accelerate import PartialState
    from transformers import AutoProcessor

    model_dir = resolve_model_dir(path)
    device = PartialState().device
    key = (str(model_dir.resolve()), str(device))
    if key not in _SCORERS:
        with patches.zero3_init_off():
            model = load_reward_model(model_dir)
        model.to(device).eval().requires_grad_(False)
        processor = AutoProcessor.from_pretrained(model_dir)
        processor.tokenizer.padding_side = "left"
        _SCORERS[key] = (model, processor)
    return _SCORERS[key]
