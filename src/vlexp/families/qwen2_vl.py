"""Qwen2-VL and Qwen2.5-VL: the tiny build (real architecture, processor and chat template at
toy size). Everything else about the family is data in `vlexp.families.FAMILIES`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlexp.families import Family
from vlexp.families.toy import (
    QWEN_VISION,
    TEXT,
    chatml_stops,
    chatml_text_config,
    seeded_model,
    vision_token_ids,
)

# Toy sizes (vlexp.families.toy): hidden 64, 2 text layers, 2 vision blocks (~0.37M parameters
# with the BPE).


def chat_template() -> str:
    """The real Qwen2.5-VL chat template, as TRL ships it."""
    from importlib.resources import files

    return (files("trl") / "chat_templates" / "qwen2_5_vl.jinja").read_text(encoding="utf-8")


def tool_chat_template() -> str:
    """Qwen2.5-VL's chat template with tool calls. Its own renders none, but the model family
    writes them as Qwen2.5 and Qwen3-VL do (`<tool_call>{"name": .., "arguments": ..}
    </tool_call>`, results in `<tool_response>` inside a user turn; DeepEyes trains
    Qwen2.5-VL-7B on this format): TRL's Qwen3-VL template, with Qwen2.5-VL's default system
    prompt when a conversation has none. TRL parses the calls with its Qwen3 response template."""
    from importlib.resources import files

    qwen3_vl = (files("trl") / "chat_templates" / "qwen3_vl.jinja").read_text(encoding="utf-8")
    default_system = (
        "{%- if messages[0].role != 'system' %}{%- set messages = "
        "[{'role': 'system', 'content': 'You are a helpful assistant.'}] + messages %}{%- endif %}"
    )
    return default_system + qwen3_vl


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
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    head_dim = TEXT["hidden_size"] // TEXT["num_attention_heads"]
    # M-RoPE splits head_dim/2 rotary pairs over (time, height, width).
    rope = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]}
    config = Qwen2_5_VLConfig(
        text_config=chatml_text_config(tokenizer, dict(TEXT, rope_parameters=rope)),
        vision_config=dict(
            **QWEN_VISION,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[1],
        ),
        **vision_token_ids(tokenizer),
    )
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    return seeded_model(Qwen2_5_VLForConditionalGeneration, config, seed, **chatml_stops(tokenizer))


def pixel_limits(processor: Any) -> tuple[int, int]:
    """(min_pixels, max_pixels) the image processor resizes within: its `size` (model.min_pixels
    and model.max_pixels, vlexp.models.loading), the only place transformers 5 reads them."""
    size = processor.image_processor.size
    low = size.get("shortest_edge") if hasattr(size, "get") else None
    high = size.get("longest_edge") if hasattr(size, "get") else None
    if not low or not high:
        raise ValueError(
            f"{type(processor.image_processor).__name__}.size is {size!r}: it needs "
            "shortest_edge and longest_edge (the pixel budget); set model.min_pixels and "
            "model.max_pixels"
        )
    return int(low), int(high)


def image_tokens(family: Family, processor: Any) -> Callable[..., int]:
    """`(width, height, images_in_prompt=1) -> tokens`: one image pad per merged patch of the
    image as the processor resizes it (`resize`); the same however many images the prompt has."""
    size = resize(family, processor)
    factor = family.pixels_per_token

    def count(width: int, height: int, images_in_prompt: int = 1) -> int:
        w, h = size(width, height)
        return (h // factor) * (w // factor)

    return count


def resize(family: Family, processor: Any) -> Callable[[int, int], tuple[int, int]]:
    """`(width, height) -> (width, height)` after the processor's resize: transformers'
    `smart_resize` to multiples of the family's pixels per token, within the pixel budget."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    factor = family.pixels_per_token
    low, high = pixel_limits(processor)

    def size(width: int, height: int) -> tuple[int, int]:
        h, w = smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=high)
        return w, h

    return size


def config_image_tokens(model_cfg: Any, config: Any, width: int, height: int) -> int:
    """Image tokens of a `width`x`height` image for the planner: `smart_resize` with the
    config's vision geometry and the run's pixel budget (`model.min_pixels` / `max_pixels`)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    vision = config.vision_config
    factor = vision.patch_size * vision.spatial_merge_size
    h, w = smart_resize(height, width, factor, model_cfg.min_pixels, model_cfg.max_pixels)
    return (h // factor) * (w // factor)


def video_tokens(family: Family, processor: Any, loaded: Any) -> int:
    """Video pads of one sampled, resized video (`vlexp.data.videos.Loaded`): one per merged
    patch of each temporal patch (the processor repeats the last frame to fill the last one)."""
    groups, pads = video_grid(family, loaded)
    return groups * pads


def video_grid(family: Family, loaded: Any) -> tuple[int, int]:
    """(temporal patches, pads per temporal patch) of a video's frames (T, C, H, W)."""
    count, _, height, width = loaded.frames.shape
    groups = -(-count // family.temporal_patch_size)
    patches = (height // family.patch_size) * (width // family.patch_size)
    return groups, patches // family.merge_size**2
