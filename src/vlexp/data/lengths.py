"""The token limits a record must fit: the trainer's `max_length`, the completion budget and the
model's context, with each image's tokens counted as the processor will expand them."""

from __future__ import annotations

from typing import Any

from vlexp.config import algo as algorithm
from vlexp.data.records import BadRecord, Record

_TARGET_KEYS = ("suffix", "completion", "chosen", "messages")


class LengthLimits:
    """The token limits the trainer enforces, from algo.args and the model's context."""

    def __init__(
        self, algo: algorithm.Algorithm, model_dir: str, trust_remote_code: bool = False
    ) -> None:
        # Trainers that generate never truncate prompts (TRL 1.16 has no max_prompt_length
        # for GRPO); the others cut at algo.args.max_length.
        self.generates = algo.generates
        self.max_length = None if algo.generates else algo.args.get("max_length")
        self.completion = algo.completion_budget()
        self.context, self.context_key = model_context(algo.args, model_dir, trust_remote_code)

    def problem(
        self, record: Record, prompt: int, total: int, image: int, video: int = 0
    ) -> BadRecord | None:
        also = f", {video} video tokens" if video else ""
        what = f"prompt is {prompt} tokens ({image} of them image tokens{also})"
        if self.max_length is not None and prompt >= self.max_length:
            detail = (
                f"{what}, not below algo.args.max_length={self.max_length}: truncation would "
                "cut image tokens or leave no completion; raise max_length or shorten the prompt"
                + (" (fewer frames: data.video.fps / max_frames / max_pixels)" if video else "")
            )
            return BadRecord(record.source, "prompt", "too long", detail)
        need = prompt + self.completion if self.generates else total
        if self.context and need > self.context and total > prompt and prompt <= self.context:
            # The prompt fits: it is the target (suffix / completion / chosen) that does not.
            detail = (
                f"the target is {total - prompt} tokens: with the {prompt}-token prompt that is "
                f"{total} tokens, over {self.context_key}={self.context}; shorten the target "
                "(suffix, completion, chosen or rejected)"
            )
            key = next((k for k in _TARGET_KEYS if k in record.fields), "suffix")
            return BadRecord(record.source, key, "target too long", detail)
        if self.context and need > self.context:
            plus = (
                f" + algo.args.max_completion_length={self.completion}" if self.completion else ""
            )
            detail = f"{what}{plus}: {need} tokens exceed {self.context_key}={self.context}; " + (
                "lower data.video.max_pixels, data.video.max_frames or data.video.fps"
                if video
                else "lower model.max_pixels or shorten the prompt"
            )
            return BadRecord(record.source, "prompt", "too long", detail)
        return None

    def truncates(self, total: int) -> bool:
        return self.max_length is not None and total > self.max_length


def model_context(
    args: Any, model_dir: str, trust_remote_code: bool = False
) -> tuple[int | None, str]:
    """The model's context length (text config), or vLLM's max_model_length (`algo.args`)
    when smaller."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    text = getattr(config, "text_config", None) or config
    context = getattr(text, "max_position_embeddings", None)
    key = "the model's max_position_embeddings"
    vllm = args.get("vllm_max_model_length") if args.get("use_vllm") else None
    if vllm and (context is None or vllm < context):
        return vllm, "algo.args.vllm_max_model_length"
    return context, key


def count_tokens(
    processor: Any, example: dict, image_tokens: list[int], tools: list | None = None
) -> tuple[int, int]:
    """(prompt, longest full sequence) in tokens, each image's and video's one placeholder
    replaced by the tokens it costs (`image_tokens`, in any order: only their sum counts);
    `tools` rendered into the prompt as the trainer renders them (env=)."""

    def length(messages: list, generation_prompt: bool) -> int:
        text = processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt, tools=tools or None
        )
        # verbose=False: a prompt over the model's length is reported here, not warned about.
        ids = processor.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return len(ids) - len(image_tokens) + sum(image_tokens)

    if "messages" in example:
        full = length(example["messages"], False)
        return full, full
    prompt = length(example["prompt"], True)
    answers = [example[k] for k in ("completion", "chosen", "rejected") if k in example]
    total = max((length(example["prompt"] + a, False) for a in answers), default=prompt)
    return prompt, total
