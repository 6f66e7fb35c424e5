"""LLaVA-OneVision: the tiny build and AnyRes token counting.

The real `LlavaOnevisionForConditionalGeneration` (SigLIP tower, 2-layer projector, Qwen2
language model, a learned `image_newline`), `LlavaOnevisionProcessor` and the chat template
transformers' conversion script writes into the llava-hf checkpoints
(`models/llava_onevision/convert_llava_onevision_weights_to_hf.py`), at toy size: 32x32 px
tiles in 16x16 patches (4 tokens per tile), hidden 64, two text layers.

AnyRes: a lone image in a prompt is resized to the best of the processor's grid resolutions
(`image_grid_pinpoints`), cut into tiles, and costs its tiles' features (unpadded to the image's
aspect ratio, one `image_newline` per row, capped by `vision_aspect_ratio`) plus one base tile of
the whole image; each image of several costs only the base tile plus a newline. The counts here
are the processor's own (`LlavaOnevisionProcessor._get_number_of_features`), so they cannot drift
from what it writes into `input_ids`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from vlexp.families import Family, toy

TILE = 32  # px: the vision tower's image_size, one AnyRes tile
PATCH = 16  # px: SigLIP patch side -> (32 / 16)^2 = 4 tokens per tile
# Tile grids the processor picks from (height, width): 1x1 to 2x2, and 1x3 / 3x1 strips.
GRID = [[32, 32], [32, 64], [64, 32], [64, 64], [32, 96], [96, 32]]
TEXT = dict(
    toy.TEXT,
    model_type="qwen2",
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
)
VISION = dict(
    toy.VIT_VISION,
    model_type="siglip_vision_model",
    image_size=TILE,
    patch_size=PATCH,
    vision_use_head=False,
)
# transformers' convert_llava_onevision_weights_to_hf.py `chat_template` (ChatML, images and
# videos first in a turn), the one the llava-hf checkpoints carry; {% generation %} marks the
# assistant's text for TRL's assistant-only loss.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{# Render all images first #}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tiny_llava_onevision(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny LLaVA-OneVision for `tokenizer`, weights seeded."""
    return _processor(tokenizer), _model(tokenizer, seed)


def _processor(tokenizer: Any) -> Any:
    from transformers import (
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    size = {"height": TILE, "width": TILE}
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=GRID),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tokenizer,
        num_image_tokens=(TILE // PATCH) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )


def _model(tokenizer: Any, seed: int) -> Any:
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    config = LlavaOnevisionConfig(
        text_config=toy.chatml_text_config(tokenizer, TEXT),
        vision_config=VISION,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=GRID,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    return toy.seeded_model(
        LlavaOnevisionForConditionalGeneration, config, seed, **toy.chatml_stops(tokenizer)
    )


def image_tokens(family: Family, processor: Any) -> Callable[..., int]:
    """`(width, height, images_in_prompt=1) -> tokens`: `<image>` tokens the processor writes
    for one image (AnyRes for a lone image, the base tile and a newline for one of several)."""
    image_processor = processor.image_processor
    return _counter(
        image_processor.image_grid_pinpoints,
        int(image_processor.size["height"]),
        processor.num_image_tokens,
        processor.vision_aspect_ratio,
        processor.vision_feature_select_strategy,
    )


def config_image_tokens(model_cfg: Any, config: Any, width: int, height: int) -> int:
    """The planner's count for a lone image, from config.json alone (the processor's rule with
    the config's grid, tile and patch sizes, aspect cap and feature selection)."""
    vision = config.vision_config
    count = _counter(
        config.image_grid_pinpoints,
        vision.image_size,
        (vision.image_size // vision.patch_size) ** 2,
        config.vision_aspect_ratio,
        config.vision_feature_select_strategy,
    )
    return count(width, height)


def _counter(
    grid: list, tile: int, tile_tokens: int, aspect: str, strategy: str
) -> Callable[..., int]:
    """transformers' own LlavaOnevisionProcessor counting (`replace_image_token`) on these
    numbers (`tile`: the tile side in px, `tile_tokens`: tokens per tile):
    `_get_number_of_features` for a lone image, `num_image_tokens + 1` for one of several, one
    token less each with the "default" (CLS-dropping) feature selection."""
    from transformers import LlavaOnevisionProcessor

    class Counting(SimpleNamespace):
        """The processor attributes its counting methods read, nothing else loaded."""

        def _get_unpadded_features(self, *args: Any) -> Any:
            return LlavaOnevisionProcessor._get_unpadded_features(self, *args)

    state = Counting(
        image_processor=SimpleNamespace(image_grid_pinpoints=grid),
        num_image_tokens=tile_tokens,
        vision_aspect_ratio=aspect,
    )

    def count(width: int, height: int, images_in_prompt: int = 1) -> int:
        if images_in_prompt > 1:
            tokens = tile_tokens + 1
        else:
            tokens = LlavaOnevisionProcessor._get_number_of_features(
                state, height, width, tile, tile
            )
        return tokens - 1 if strategy == "default" else tokens

    return count


def resize(family: Family, processor: Any) -> Callable[[int, int], tuple[int, int]]:
    """`(width, height) -> (width, height)` of the tile grid a lone image is resized and padded
    to (transformers' `select_best_resolution` over the processor's grid); the base tile of
    the whole image is `image_size` square besides."""
    from transformers.image_processing_utils import select_best_resolution

    grid = processor.image_processor.image_grid_pinpoints

    def size(width: int, height: int) -> tuple[int, int]:
        best_height, best_width = select_best_resolution((height, width), grid)
        return best_width, best_height

    return size
