"""Qwen2-VL and Qwen2.5-VL: the tiny build (real architecture, processor and chat template at
toy size). Everything else about the family is data in `vlexp.families.FAMILIES`."""

from __future__ import annotations

from typing import Any

from vlexp.families import FAMILIES

# Toy sizes: hidden 64, 2 text layers, 2 vision blocks (~0.37M parameters with the BPE).
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64)


def chat_template() -> str:
    """The real Qwen2.5-VL chat template, as TRL ships it."""
    from importlib.resources import files

    return (files("trl") / "chat_templates" / "qwen2_5_vl.jinja").read_text(encoding="utf-8")


def tiny_qwen2_5_vl(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny Qwen2.5-VL for `tokenizer`, weights seeded by `seed`."""
    return _processor(tokenizer), _model(tokenizer, seed)


def _processor(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    # Pixel limits here are only defaults: model.min_pixels / model.max_pixels override them.
    pixels = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=chat_template(),
    )


def _model(tokenizer: Any, seed: int) -> Any:
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in FAMILIES["qwen2_5_vl"].special_tokens}
    head_dim = TEXT["hidden_size"] // TEXT["num_attention_heads"]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            **TEXT,
            vocab_size=len(tokenizer),
            num_key_value_heads=2,
            max_position_embeddings=4096,
            # M-RoPE splits head_dim/2 rotary pairs over (time, height, width).
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": [2, 3, 3],
            },
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            **VISION,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=True,
        temperature=1.0,
    )
    return model
