"""InternVL (3 / 3.5, transformers' native `internvl`): the tiny build and the token counts.

The real `InternVLForConditionalGeneration` (InternViT tower, pixel-shuffle 0.5 + MLP
projector, a Qwen3 language model as in InternVL3.5), `InternVLProcessor` with its
`GotOcr2ImageProcessor` (dynamic tiling: the image is cut into up to `max_patches` square tiles
on the grid closest to its aspect ratio, plus one thumbnail tile when there is more than one)
and the chat template transformers' converter writes into the `-HF` checkpoints, at toy size:
56-px tiles of 4x4 patches of 14 px, pixel-shuffled to 4 tokens a tile (the real ones: 448-px
tiles, 256 tokens). The tile count is the budget (`max_patches`), not a pixel range, so
`model.min_pixels` / `max_pixels` do not apply (the family's `pixel_budget` is False).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlexp.families import Family, toy

TILE = 56  # tile side in px: the vision tower's image_size (448 for the real models)
PATCH = 14
TILE_TOKENS = 4  # (56 / 14)^2 patches, pixel-shuffled 2x2 into one token each
MAX_TILES = 12  # as the hub processors (preprocessor_config.json: max_patches 12)
# Named tokens InternVLProcessor reads from the tokenizer (transformers' converter,
# `write_tokenizer`: `extra_special_tokens`), and the grounding tokens it adds after them.
NAMED = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
GROUNDING = ("<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>")
TEXT = dict(toy.TEXT, model_type="qwen3", head_dim=16)
VISION = dict(
    toy.VIT_VISION,
    image_size=TILE,
    patch_size=PATCH,
    attention_bias=True,  # InternViT-300M's qkv_bias
)
# The chat template of the `-HF` checkpoints (transformers' convert_internvl_weights_to_hf.py,
# `chat_template`): one `<IMG_CONTEXT>` per image and `<video>` per video, each on its own line,
# which the processor expands to `<img>` + 256 x `<IMG_CONTEXT>` per tile + `</img>`.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n' }}{% endif %}"
)


def tiny_internvl(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny InternVL for `tokenizer`, weights seeded by `seed`."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokenizer = toy.named_tokenizer(tokenizer, NAMED)
    tile = {"height": TILE, "width": TILE}
    imagenet = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(
            size=tile, crop_to_patches=True, min_patches=1, max_patches=MAX_TILES, **imagenet
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=tile, **imagenet),
        image_seq_length=TILE_TOKENS,
        chat_template=CHAT_TEMPLATE,
    )
    return processor, _model(tokenizer, seed)


def _model(tokenizer: Any, seed: int) -> Any:
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    config = InternVLConfig(
        text_config=toy.chatml_text_config(tokenizer, TEXT),
        vision_config=VISION,
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=TILE_TOKENS,
        downsample_ratio=0.5,
        tie_word_embeddings=False,  # InternVL3.5's Qwen3 LMs keep their own head (8B)
    )
    return toy.seeded_model(
        InternVLForConditionalGeneration, config, seed, **toy.chatml_stops(tokenizer)
    )


def tiles(processor: Any, width: int, height: int) -> tuple[int, int, int]:
    """(columns, rows, tiles fed to the tower) of one image, as the processor tiles it: its own
    `get_optimal_tiled_canvas` with the processor's merged image kwargs (`crop_to_patches`
    is on by default in InternVLProcessor, whatever the image processor's config says)."""
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    image_processor = processor.image_processor
    kwargs = image_processor._merge_and_standardize_kwargs(
        **processor._merge_kwargs()["images_kwargs"]
    )
    if not kwargs["crop_to_patches"] or kwargs["max_patches"] <= 1:
        return 1, 1, 1
    size = kwargs["size"]
    columns, rows = get_optimal_tiled_canvas(
        (height, width), (size.height, size.width), kwargs["min_patches"], kwargs["max_patches"]
    )
    count = columns * rows
    return columns, rows, count + 1 if count > 1 else 1  # + the thumbnail


def image_tokens(family: Family, processor: Any) -> Callable[..., int]:
    """`(width, height, images_in_prompt=1) -> tokens`: what the chat template's one
    `<IMG_CONTEXT>` becomes, `<img>` + `image_seq_length` context tokens per tile + `</img>`
    (InternVLProcessor.replace_image_token)."""
    per_tile = int(processor.image_seq_length)

    def count(width: int, height: int, images_in_prompt: int = 1) -> int:
        return tiles(processor, width, height)[2] * per_tile + 2

    return count


def resize(family: Family, processor: Any) -> Callable[[int, int], tuple[int, int]]:
    """`(width, height) -> (width, height)`: the tile grid the image is resized onto before it
    is cut (the thumbnail is one more tile of the same size)."""
    size = processor.image_processor.size

    def canvas(width: int, height: int) -> tuple[int, int]:
        columns, rows, _ = tiles(processor, width, height)
        return columns * int(size["width"]), rows * int(size["height"])

    return canvas


def config_image_tokens(model_cfg: Any, config: Any, width: int, height: int) -> int:
    """The planner's image tokens from the config alone: the hub processors' tiling (1 to
    `MAX_TILES` tiles of `vision_config.image_size`, plus a thumbnail when more than one)
    times `image_seq_length` context tokens."""
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    side = config.vision_config.image_size
    side = side[0] if isinstance(side, list | tuple) else side
    columns, rows = get_optimal_tiled_canvas((height, width), (side, side), 1, MAX_TILES)
    count = columns * rows
    return (count + 1 if count > 1 else 1) * int(config.image_seq_length)
