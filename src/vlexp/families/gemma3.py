"""Gemma 3: the tiny build, the non-Qwen family that shows the seam is generic.

The real `Gemma3ForConditionalGeneration` (SigLIP vision tower, average-pooling projector,
sliding-window + global attention), `Gemma3Processor` and TRL's Gemma 3 chat template, at toy
size: 64x64 px images in 8x8 patches pooled to 16 image tokens, hidden 64, two text layers.
Gemma 3 resizes every image to one fixed size, so `model.min_pixels` / `max_pixels` do not
apply (the family's `pixel_budget` is False).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlexp.families import Family, toy

IMAGE_SIZE = 64
IMAGE_TOKENS = 16  # mm_tokens_per_image: (64 / 8)^2 patches pooled 2x2
# The toy text sizes, plus Gemma's head size, attention scale and sliding window.
TEXT = dict(toy.TEXT, head_dim=16, query_pre_attn_scalar=16, sliding_window=64)
VISION = dict(
    toy.VIT_VISION,
    image_size=IMAGE_SIZE,
    patch_size=8,
    vision_use_head=False,
)


def chat_template() -> str:
    """The real Gemma 3 chat template, as TRL ships it."""
    from importlib.resources import files

    return (files("trl") / "chat_templates" / "gemma3.jinja").read_text(encoding="utf-8")


def tiny_tokenizer(corpus: list[str], special_tokens: tuple[str, ...], vocab_size: int) -> Any:
    """A BPE trained on `corpus` inside Gemma's own pipeline (spaces as `▁`, byte fallback),
    so `GemmaTokenizer.from_pretrained` rebuilds exactly this tokenizer."""
    from tokenizers import trainers
    from transformers import GemmaTokenizer

    empty = GemmaTokenizer(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    backend = empty.backend_tokenizer
    # Byte tokens first: characters the corpus lacks still encode (byte fallback), never <unk>.
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(byte_tokens),
        special_tokens=list(special_tokens) + byte_tokens,
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    tokenizer = GemmaTokenizer(
        vocab=backend.get_vocab(),
        merges=_merges(backend),
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
        model_max_length=4096,
    )
    # Already in the vocabulary (same ids); registering them makes text like `<end_of_turn>`
    # encode as the one control token, as Gemma's own tokenizer does.
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    return tokenizer


def _merges(backend: Any) -> list[tuple[str, str]]:
    import json

    return [tuple(m) for m in json.loads(backend.to_str())["model"]["merges"]]


def tiny_gemma3(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny Gemma 3 for `tokenizer` (`tiny_tokenizer`'s), seeded."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    from vlexp.families import FAMILIES

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in FAMILIES["gemma3"].special_tokens}
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer,
        chat_template=chat_template(),
        image_seq_length=IMAGE_TOKENS,
    )
    config = Gemma3Config(
        text_config=dict(
            TEXT,
            vocab_size=len(tokenizer),
            pad_token_id=ids["<pad>"],
            eos_token_id=ids["<end_of_turn>"],
            bos_token_id=ids["<bos>"],
        ),
        vision_config=VISION,
        mm_tokens_per_image=IMAGE_TOKENS,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    stops = dict(
        eos_token_id=[ids["<end_of_turn>"], ids["<eos>"]],
        pad_token_id=ids["<pad>"],
        bos_token_id=ids["<bos>"],
    )
    return processor, toy.seeded_model(Gemma3ForConditionalGeneration, config, seed, **stops)


def image_tokens(family: Family, processor: Any) -> Callable[..., int]:
    """`(width, height, images_in_prompt=1) -> tokens`: the same for every image, `Gemma3Processor`'s
    `full_image_sequence` (blank lines, start, `image_seq_length` soft tokens, end), which
    replaces the chat template's image placeholder whatever the image's size."""
    if getattr(processor.image_processor, "do_pan_and_scan", False):
        raise ValueError(
            f"{family.name}: the image processor has do_pan_and_scan on, which adds crops per "
            "image that vlexp does not count; turn it off in the processor config"
        )
    sequence = processor.tokenizer(
        processor.full_image_sequence, add_special_tokens=False, verbose=False
    )["input_ids"]
    return lambda width, height, images_in_prompt=1: len(sequence)


def resize(family: Family, processor: Any) -> Callable[[int, int], tuple[int, int]]:
    """`(width, height) -> (width, height)`: every image to the image processor's one size."""
    size = processor.image_processor.size
    return lambda width, height: (int(size["width"]), int(size["height"]))


def config_image_tokens(model_cfg: Any, config: Any, width: int, height: int) -> int:
    """The planner's image tokens: the config's fixed `mm_tokens_per_image` (256 for the real
    models), whatever the image's size."""
    return int(config.mm_tokens_per_image)
