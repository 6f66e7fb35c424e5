"""MiniCPM-V 4.6 (`minicpmv4_6`): the tiny build and the token counts.

The real `MiniCPMV4_6ForConditionalGeneration` (SigLIP tower with a window-attention merger
after layer `insert_layer_id`, an MLP merger, a Qwen3.5 language model with Gated-DeltaNet and
full-attention layers), `MiniCPMV4_6Processor` with its image processor's slicing, at toy size:
14-px patches, a 112-px source image (8x8 patches merged 2x2 twice: 4 tokens) and up to 4
slices. The real ones: 448-px sources (64 tokens) and up to 9 slices.

Slicing (`MiniCPMV4_6ImageProcessor`): the whole image is resized to about
`scale_resolution`^2 px (multiples of 4 patches: one token per 56x56 px) and, when it is larger
than that, also cut into a grid of up to `max_slice_nums` slices of about that size each. The
chat template writes one `<|image_pad|>` per image; the processor replaces it with
`<image_id>N</image_id><image>` + the source's tokens + `</image>` and one
`<slice>` + tokens + `</slice>` per slice, rows joined by a newline. The counts here call the
image processor's own `get_sliced_grid`, `find_best_resize` and `get_refine_size`.

The chat template is TRL's Qwen3.5 one (`qwen3_5_nothink`): MiniCPM-V 4.6's language model is
Qwen3.5-0.8B and its tokenizer carries the same ChatML and vision tokens (the checkpoint's
tokenizer.json); the real checkpoints ship their own template.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlexp.families import Family, toy

PATCH = 14
SOURCE = 112  # px: the toy `scale_resolution` (448 for the real models)
MAX_SLICES = 4  # the real processors: 9
# openbmb/MiniCPM-V-4.6's preprocessor_config.json (bundled beside its config.json).
HUB_SLICING = {"scale_resolution": 448, "max_slice_nums": 9}
# Named tokens MiniCPMV4_6Processor reads from its tokenizer (`tokenizer.image_token`, ...),
# as the checkpoint's tokenizer_config.json declares them.
NAMED = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "image_start_token": "<image>",
    "image_end_token": "</image>",
    "slice_start_token": "<slice>",
    "slice_end_token": "</slice>",
    "image_id_start_token": "<image_id>",
    "image_id_end_token": "</image_id>",
}
# Qwen3.5 text (vlexp.families.qwen3's tiny): one linear-attention and one full layer, a quarter
# of each head rotated in the real model (here half of 16), tied embeddings as MiniCPM-V 4.6.
VISION = dict(toy.VIT_VISION, image_size=SOURCE, patch_size=PATCH)


def tiny_minicpmv(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny MiniCPM-V 4.6 for `tokenizer`, weights seeded by `seed`."""
    from transformers import (
        MiniCPMV4_6ImageProcessor,
        MiniCPMV4_6Processor,
        MiniCPMV4_6VideoProcessor,
    )

    from vlexp.families.qwen3 import chat_template

    tokenizer = toy.named_tokenizer(tokenizer, NAMED)
    slicing = dict(scale_resolution=SOURCE, max_slice_nums=MAX_SLICES, patch_size=PATCH)
    half = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])  # the checkpoint's
    processor = MiniCPMV4_6Processor(
        image_processor=MiniCPMV4_6ImageProcessor(**slicing, **half),
        video_processor=MiniCPMV4_6VideoProcessor(**slicing, **half),
        tokenizer=tokenizer,
        chat_template=chat_template("qwen3_5_nothink"),
    )
    return processor, _model(tokenizer, seed)


def _model(tokenizer: Any, seed: int) -> Any:
    from transformers import MiniCPMV4_6Config, MiniCPMV4_6ForConditionalGeneration

    from vlexp.families.qwen3 import QWEN3_5_LINEAR, QWEN3_5_ROPE

    text = dict(toy.TEXT, model_type="qwen3_5_text", head_dim=16, **QWEN3_5_LINEAR)
    text = dict(text, rope_parameters=QWEN3_5_ROPE, tie_word_embeddings=True)
    config = MiniCPMV4_6Config(
        text_config=toy.chatml_text_config(tokenizer, text),
        vision_config=VISION,
        insert_layer_id=0,  # the window merger after the first of 2 layers (real: 6 of 27)
        # The processor's slicing, recorded for the planner (config_image_tokens); the hub
        # configs have none and their processors slice at HUB_SLICING.
        scale_resolution=SOURCE,
        max_slice_nums=MAX_SLICES,
        image_token_id=tokenizer.image_token_id,
        video_token_id=tokenizer.video_token_id,
        tie_word_embeddings=True,
    )
    return toy.seeded_model(
        MiniCPMV4_6ForConditionalGeneration, config, seed, **toy.chatml_stops(tokenizer)
    )


def _slicing(image_processor: Any, width: int, height: int) -> tuple[tuple[int, int], list]:
    """((source height, width), [(slice height, width)] * slices) in px, as
    `MiniCPMV4_6ImageProcessor._preprocess` resizes and cuts one image (its own methods)."""
    ip, size = image_processor, (height, width)
    geometry = dict(patch_size=ip.patch_size, downsample_mode=ip.downsample_mode)
    grid = (
        ip.get_sliced_grid(size, ip.max_slice_nums, ip.scale_resolution) if ip.slice_mode else None
    )
    source = ip.find_best_resize(size, ip.scale_resolution, allow_upscale=grid is None, **geometry)
    if grid is None:
        return source, []
    refine = ip.get_refine_size(size, grid, ip.scale_resolution, allow_upscale=True, **geometry)
    rows, columns = grid
    return source, [(refine[0] // rows, refine[1] // columns)] * (rows * columns) + [grid]


def _counter(image_processor: Any, marks: dict[str, int]) -> Callable[..., int]:
    """`(width, height, images_in_prompt=1) -> tokens` of one image: `marks` holds what the
    processor's text around the pads costs (`prefix`: `<image_id>N</image_id>`, `piece`: the
    start and end markers of the image and of each slice, `newline`: between slice rows)."""
    ip = image_processor
    divisor = 4 if ip.downsample_mode == "4x" else 16  # MiniCPMV4_6Processor.image_token_divisor

    def tokens(side: tuple[int, int]) -> int:
        return (side[0] // ip.patch_size) * (side[1] // ip.patch_size) // divisor

    def count(width: int, height: int, images_in_prompt: int = 1) -> int:
        source, slices = _slicing(ip, width, height)
        total = marks["prefix"] + marks["piece"] + tokens(source)  # <image> pads </image>
        if slices:
            rows = slices.pop()[0]
            total += sum(marks["piece"] + tokens(s) for s in slices)
            total += (rows - 1) * marks["newline"]
        return total

    return count


def image_tokens(family: Family, processor: Any) -> Callable[..., int]:
    """`(width, height, images_in_prompt=1) -> tokens`: what the chat template's one
    `<|image_pad|>` becomes (MiniCPMV4_6Processor.replace_image_token and _prepend_local_ids).
    The `<image_id>N</image_id>` prefix is counted with N = 0: exact for the first 10 images of
    a prompt (one digit), one token short per further digit."""
    tokenizer = processor.tokenizer

    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    use_id = processor.default_use_image_id
    prefix = length(f"{tokenizer.image_id_start_token}0{tokenizer.image_id_end_token}")
    marks = {"prefix": prefix if use_id else 0, "piece": 2, "newline": length("\n")}
    return _counter(processor.image_processor, marks)


def resize(family: Family, processor: Any) -> Callable[[int, int], tuple[int, int]]:
    """`(width, height) -> (width, height)` of the whole-image (source) view; the slices are
    cut from the image resized to about that size per slice."""

    def source(width: int, height: int) -> tuple[int, int]:
        (h, w), _ = _slicing(processor.image_processor, width, height)
        return w, h

    return source


def config_image_tokens(model_cfg: Any, config: Any, width: int, height: int) -> int:
    """The planner's image tokens from config.json alone, the image token's pads as for every
    family (no markers): the processor's slicing (the tiny build records it in its config; the
    hub processors' is HUB_SLICING) at the config's patch size and downsampling."""
    from transformers import MiniCPMV4_6ImageProcessor

    image_processor = MiniCPMV4_6ImageProcessor(
        scale_resolution=getattr(config, "scale_resolution", HUB_SLICING["scale_resolution"]),
        max_slice_nums=getattr(config, "max_slice_nums", HUB_SLICING["max_slice_nums"]),
        patch_size=config.vision_config.patch_size,
        downsample_mode=config.downsample_mode,
    )
    return _counter(image_processor, {"prefix": 0, "piece": 0, "newline": 0})(width, height)
