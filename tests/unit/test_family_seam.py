"""The family seam answers what callers used to guess, for every family with a tiny build
(issue 30): how its processor resizes an image, how many image tokens the planner counts from
the config alone, and which placeholder `check_data --show` prints with its count.

References are the family's real processor, as the trainer calls it: the size the vision
tower gets (Qwen: `image_grid_thw` x patch side; fixed-size processors: `pixel_values`; AnyRes:
transformers' `select_best_resolution` over the processor's own grid) and the number of the
config's image token in `processor(text=..., images=...)["input_ids"]`.
"""

from __future__ import annotations

import pytest

from tests.helpers import compose, tiny_families, tiny_preset
from vlexp.families import FAMILIES

# (width, height): square, 4:3, a tall and a wide strip, one far over the pixel budget.
SIZES = [(56, 56), (224, 168), (30, 200), (500, 40), (1000, 800)]


def _processor(family: str):
    """The tiny build's processor with the preset's pixel budget, as vlexp's loader sets it."""
    from vlexp.models import tiny
    from vlexp.models.loading import load_processor

    tiny.ensure(family)
    return load_processor(compose([f"model={tiny_preset(family)}"]).model, FAMILIES[family])


def _processed(processor, width: int, height: int) -> tuple[dict, list[int]]:
    """The processor's output for one image in a one-turn prompt, and its input ids."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (200, 40, 40))
    message = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]
    text = processor.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
    out = processor(text=[text], images=[[image]], return_tensors="pt")
    return out, out["input_ids"][0].tolist()


def _size_the_tower_sees(processor, out, width: int, height: int) -> tuple[int, int]:
    """(width, height) after the processor's resize, read from its own output."""
    if "image_grid_thw" in out:  # Qwen: patches per side x patch side
        _, rows, cols = out["image_grid_thw"][0].tolist()
        patch = processor.image_processor.patch_size
        return cols * patch, rows * patch
    if "image_sizes" in out:  # AnyRes: the grid resolution the image is tiled at
        from transformers.image_processing_utils import select_best_resolution

        grid = processor.image_processor.image_grid_pinpoints
        best_height, best_width = select_best_resolution((height, width), grid)
        return best_width, best_height
    if "target_sizes" in out:  # MiniCPM-V: the first piece is the whole image, in patches
        rows, cols = out["target_sizes"][0].tolist()
        patch = processor.image_processor.patch_size
        return cols * patch, rows * patch
    if hasattr(processor.image_processor, "max_patches"):  # InternVL's tiles + a thumbnail
        return _tiled_canvas(processor, out, width, height)
    return tuple(reversed(out["pixel_values"].shape[-2:]))


def _tiled_canvas(processor, out, width: int, height: int) -> tuple[int, int]:
    """The tile grid the image is resized onto: transformers' own `get_optimal_tiled_canvas`
    at the processor's limits, its tile count checked against the tiles the processor made
    (`pixel_values` rows: the grid's tiles, plus a thumbnail when more than one)."""
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    image_processor = processor.image_processor
    tile_height, tile_width = out["pixel_values"].shape[-2:]
    columns, rows = get_optimal_tiled_canvas(
        (height, width),
        (tile_height, tile_width),
        image_processor.min_patches,
        image_processor.max_patches,
    )
    grid = columns * rows
    assert out["pixel_values"].shape[0] == (grid + 1 if grid > 1 else 1)
    return columns * tile_width, rows * tile_height


@pytest.mark.parametrize("family", tiny_families())
def test_the_familys_resize_is_the_processors(family):
    processor = _processor(family)
    resize = FAMILIES[family].load("resize")(FAMILIES[family], processor)
    for width, height in SIZES:
        out, _ = _processed(processor, width, height)
        expected = _size_the_tower_sees(processor, out, width, height)
        assert resize(width, height) == tuple(expected), (family, width, height)


@pytest.mark.parametrize("family", tiny_families())
def test_the_planners_image_tokens_are_the_processors(family):
    """`vlexp.plan`'s image tokens (from config.json, no processor) == the config's image
    token in the processor's input ids, for images of several sizes and aspect ratios."""
    from transformers import AutoConfig

    from vlexp.models import tiny
    from vlexp.recipe.estimate import image_tokens

    processor = _processor(family)
    config = AutoConfig.from_pretrained(tiny.ensure(family))
    model_cfg = compose([f"model={tiny_preset(family)}"]).model
    token = getattr(config, "image_token_id", None) or config.image_token_index
    for width, height in SIZES:
        _, ids = _processed(processor, width, height)
        planned = image_tokens(model_cfg, config, height, width)
        assert planned == ids.count(token), (family, width, height)


@pytest.mark.parametrize("family", tiny_families())
def test_show_prints_the_familys_placeholder_with_its_count(family, capsys):
    """The rendered prompt shows the template's one image placeholder followed by what the
    processor expands it to (Gemma 3's `<start_of_image>` was printed bare: only Qwen's
    `<|image_pad|>` got its count)."""
    import re

    from vlexp.check_data import main

    preset = tiny_preset(family)
    assert main([f"model={preset}", "data.prepare.num_train=8", "--show", "1"]) == 0
    out = capsys.readouterr().out
    tokens = re.search(r"image 0: \d+x\d+ px, .*: (\d+) tokens", out).group(1)
    assert f"{FAMILIES[family].image_placeholder}x{tokens}" in out, out


@pytest.mark.parametrize("family", tiny_families())
def test_generation_keeps_out_the_placeholders_the_processor_writes(family):
    """The image (and video) token the family's processor expands is among the ids
    generation suppresses (`placeholder_token_ids` of the model's config)."""
    from transformers import AutoConfig

    from vlexp.families import placeholder_token_ids
    from vlexp.models import tiny

    processor = _processor(family)
    suppressed = placeholder_token_ids(AutoConfig.from_pretrained(tiny.ensure(family)))
    assert processor.image_token_id in suppressed
    if FAMILIES[family].video:
        assert processor.video_token_id in suppressed
