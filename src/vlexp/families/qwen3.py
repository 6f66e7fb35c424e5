"""Qwen3-VL (dense and MoE) and Qwen3.5 (dense and MoE): the tiny builds.

The real architecture, processor (`Qwen3VLProcessor`: patch 16, 2x2 merge, text timestamps
for video frames) and chat template (TRL's copies of Qwen's), at toy size: hidden 64, two text
layers, two vision blocks. The MoE builds route every token to 2 of 4 experts; Qwen3.5 has one
Gated-DeltaNet (linear attention) layer and one full-attention layer, as its 3:1 pattern at
toy depth. Everything else about the families is data in `vlexp.families.FAMILIES`.
"""

from __future__ import annotations

from typing import Any

from vlexp.families import Family, toy
from vlexp.families.qwen2_vl import video_grid

TEXT = dict(toy.TEXT, head_dim=16)
VISION = dict(
    toy.QWEN_VISION,
    patch_size=16,
    spatial_merge_size=2,
    temporal_patch_size=2,
    num_position_embeddings=64,  # an 8x8 grid of learned positions, interpolated per image
)
# 4 experts, 2 active per token. output_router_logits stays off in the saved config: TRL asks
# for router logits per training forward, and transformers' Qwen3-VL-MoE breaks batched
# generate() when the config turns them on (vlexp.patches.moe_generate_without_router_logits).
MOE = dict(
    num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, router_aux_loss_coef=0.001
)
# M-RoPE over (time, height, width): head_dim/2 = 8 rotary pairs, interleaved as Qwen3-VL.
QWEN3_VL_ROPE = {
    "rope_type": "default",
    "rope_theta": 5_000_000.0,
    "mrope_section": [2, 3, 3],
    "mrope_interleaved": True,
}
# Qwen3.5 rotates part of each head (the real ones a quarter of 256); here half of 16 = 8 dims,
# 4 rotary pairs over (time, height, width).
QWEN3_5_ROPE = {
    "rope_type": "default",
    "rope_theta": 10_000_000.0,
    "mrope_section": [2, 1, 1],
    "mrope_interleaved": True,
    "partial_rotary_factor": 0.5,
}
QWEN3_5_LINEAR = dict(
    layer_types=["linear_attention", "full_attention"],
    linear_num_key_heads=2,
    linear_num_value_heads=4,
    linear_key_head_dim=16,
    linear_value_head_dim=16,
)


def chat_template(name: str) -> str:
    """A chat template as TRL ships it (`qwen3_vl`, `qwen3_5_nothink`, ...)."""
    from importlib.resources import files

    return (files("trl") / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")


def processor(tokenizer: Any, template: str) -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    # Pixel limits here are only defaults: model.min_pixels / model.max_pixels override them.
    pixels = {"min_pixels": 64 * 64, "max_pixels": 32 * 32 * 16}
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16, merge_size=2, **pixels),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=chat_template(template),
    )


def tiny_qwen3_vl(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny Qwen3-VL for `tokenizer`, weights seeded by `seed`."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    text = dict(TEXT, rope_parameters=QWEN3_VL_ROPE)
    vision = dict(VISION, deepstack_visual_indexes=[1])
    config = _config(Qwen3VLConfig, tokenizer, text, vision)
    return processor(tokenizer, "qwen3_vl"), _model(Qwen3VLForConditionalGeneration, config, seed)


def tiny_qwen3_vl_moe(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny Qwen3-VL-MoE: every layer 4 experts, 2 active."""
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    text = dict(TEXT, rope_parameters=QWEN3_VL_ROPE, decoder_sparse_step=1, **MOE)
    vision = dict(VISION, deepstack_visual_indexes=[1])
    config = _config(Qwen3VLMoeConfig, tokenizer, text, vision)
    model = _model(Qwen3VLMoeForConditionalGeneration, config, seed)
    return processor(tokenizer, "qwen3_vl"), model


def tiny_qwen3_5(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny Qwen3.5: one linear-attention and one full layer."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    text = dict(TEXT, rope_parameters=QWEN3_5_ROPE, **QWEN3_5_LINEAR)
    config = _config(Qwen3_5Config, tokenizer, text, VISION)
    # The instruct-style template (`<think>\n\n</think>` pre-filled): vlexp's think/answer
    # format then comes from training, as for the other families.
    return processor(tokenizer, "qwen3_5_nothink"), _model(
        Qwen3_5ForConditionalGeneration, config, seed
    )


def tiny_qwen3_5_moe(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny Qwen3.5-MoE: 4 routed experts (2 active) + a shared one."""
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration

    text = dict(
        TEXT,
        rope_parameters=QWEN3_5_ROPE,
        shared_expert_intermediate_size=64,
        **QWEN3_5_LINEAR,
        **MOE,
    )
    text.pop("intermediate_size")
    config = _config(Qwen3_5MoeConfig, tokenizer, text, VISION)
    model = _model(Qwen3_5MoeForConditionalGeneration, config, seed)
    return processor(tokenizer, "qwen3_5_nothink"), model


def _config(config_class: Any, tokenizer: Any, text: dict, vision: dict) -> Any:
    return config_class(
        text_config=toy.chatml_text_config(tokenizer, text),
        vision_config=vision,
        **toy.vision_token_ids(tokenizer),
    )


def _model(model_class: Any, config: Any, seed: int) -> Any:
    text = config.get_text_config()
    stops = dict(
        eos_token_id=[text.eos_token_id, text.pad_token_id], pad_token_id=text.pad_token_id
    )
    return toy.seeded_model(model_class, config, seed, **stops)


def video_tokens(family: Family, processor: Any, loaded: Any) -> int:
    """Tokens one video costs as `Qwen3VLProcessor` expands it: per temporal patch a
    `<t seconds>` text marker, vision start, the pads, vision end; the vision start/end the
    chat template wrote around the video's one placeholder are dropped."""
    groups, pads = video_grid(family, loaded)
    marks = [f"<{t:.1f} seconds>" for t in timestamps(loaded.metadata, family)]
    ids = processor.tokenizer(marks, add_special_tokens=False)["input_ids"] if marks else []
    return sum(map(len, ids)) + groups * (pads + 2) - 2


def timestamps(metadata: dict, family: Family) -> list[float]:
    """Seconds of each temporal patch: the mean time of its first and last frame, from the
    sampled frame indices and the video's frame rate (24 when unknown, as the processor)."""
    indices = list(metadata.get("frames_indices") or [])
    fps = 24 if metadata.get("fps") is None else metadata["fps"]
    if not fps:
        raise ValueError("the video's frame rate reads as 0 fps: its frame times are unknown")
    size = family.temporal_patch_size
    indices += indices[-1:] * (-len(indices) % size)  # the last frame fills the last patch
    times = [index / fps for index in indices]
    return [(times[i] + times[i + size - 1]) / 2 for i in range(0, len(times), size)]
