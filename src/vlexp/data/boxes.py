"""Rescale absolute pixel boxes in target text to the image the model actually sees.

Qwen2.5-VL reads and writes boxes in absolute pixels of the *resized* image: the processor
resizes every image with `smart_resize` (sides rounded to multiples of 28, area clamped to
[min_pixels, max_pixels]). Document-parsing and grounding data usually carry boxes in the
original image's pixels, so without rescaling the targets point at the wrong place. With
`data.boxes.rescale=true` every box in a target is mapped from the original size to the
resized one:

    <p data-bbox='100 40 500 80'>...   (1000x800 image, resized to 728x588)
    <p data-bbox='73 29 364 59'>...

Two spellings are recognised in targets: the HTML attribute `data-bbox='x1 y1 x2 y2'` (single
or double quotes, QwenVL HTML) and the JSON key `"bbox_2d": [x1, y1, x2, y2]` (Qwen grounding).
Gold columns of GRPO and evaluation records (`solution`, `box`: what the `iou` reward compares
with) are rescaled too, so a perfect answer scores 1: there any `[x1, y1, x2, y2]` counts, as
VLM-R1 writes its REC solutions (`[226.99, 44.4, 352.0, 371.0]`, original pixels).

The frame comes from the model family (`vlexp.families`, `box_frame`): absolute pixels of the
resized image for Qwen2-VL and Qwen2.5-VL, 0-1000 relative coordinates for Qwen3-VL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
PATTERNS = (
    re.compile(r"(data-bbox=)(['\"])" + _NUM + r"\s" + _NUM + r"\s" + _NUM + r"\s" + _NUM + r"\2"),
    re.compile(
        r'("bbox_2d"\s*:\s*\[)' + r"()" + _NUM + "," + _NUM + "," + _NUM + "," + _NUM + r"\]"
    ),
)
BARE = re.compile(r"(\[)()" + _NUM + "," + _NUM + "," + _NUM + "," + _NUM + r"\]")
GOLD_COLUMNS = ("solution", "box")


def resized_size(
    width: int, height: int, min_pixels: int, max_pixels: int, factor: int = 28
) -> tuple[int, int]:
    """(width, height) after the processor's resize: transformers' own `smart_resize`."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    new_height, new_width = smart_resize(
        height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels
    )
    return new_width, new_height


def rescale_boxes(
    text: str, size: tuple[int, int], new_size: tuple[int, int], bare: bool = False
) -> str:
    """Every box in `text`, mapped from `size` (w, h) to `new_size` (w, h), rounded, clamped.

    >>> rescale_boxes("<p data-bbox='100 40 500 80'>", (1000, 800), (728, 588))
    "<p data-bbox='73 29 364 59'>"
    >>> rescale_boxes('{"bbox_2d": [0, 0, 1000, 800]}', (1000, 800), (728, 588))
    '{"bbox_2d": [0, 0, 728, 588]}'
    """
    (width, height), (new_width, new_height) = size, new_size
    scale = (new_width / width, new_height / height)
    limit = (new_width, new_height)

    def coordinate(value: str, axis: int) -> int:
        return min(max(round(float(value) * scale[axis]), 0), limit[axis])

    def replace(match: re.Match) -> str:
        x1, y1, x2, y2 = (coordinate(match.group(3 + i), i % 2) for i in range(4))
        head, quote = match.group(1), match.group(2)
        if quote:
            return f"{head}{quote}{x1} {y1} {x2} {y2}{quote}"
        return f"{head}{x1}, {y1}, {x2}, {y2}]"

    for pattern in (*PATTERNS, BARE) if bare else PATTERNS:
        text = pattern.sub(replace, text)
    return text


def has_boxes(text: str) -> bool:
    return any(pattern.search(text) for pattern in PATTERNS)


def image_size(entry: object) -> tuple[int, int]:
    """(width, height) of an image path or a data set's `{"bytes", "path"}` entry (header only)."""
    import io

    from PIL import Image

    if isinstance(entry, dict):
        source = io.BytesIO(entry["bytes"]) if entry.get("bytes") else entry["path"]
    else:
        source = entry
    with Image.open(source) as image:
        return image.size


def frame_of(boxes_cfg: Any) -> tuple[str, int]:
    """(box frame, pixels per token) of the model in `data.boxes.model` (its family)."""
    from vlexp.families import UnknownFamily, of_model_cfg

    family = None
    if boxes_cfg.get("model"):
        try:
            family = of_model_cfg(SimpleNamespace(name_or_path=boxes_cfg.get("model")))
        except UnknownFamily:
            family = None
    factor = boxes_cfg.get("factor") or (family.pixels_per_token if family else 28)
    return (family.box_frame if family else "pixels"), factor


def box_rescaler(boxes_cfg: Any, image: object, bare: bool = False) -> Callable[[str], str]:
    """A text -> text function mapping boxes from `image`'s pixels to the model's frame."""
    size = image_size(image)
    frame, factor = frame_of(boxes_cfg)
    if frame == "relative_1000":
        new_size = (1000, 1000)
    else:
        low, high = boxes_cfg.get("min_pixels"), boxes_cfg.get("max_pixels")
        new_size = resized_size(*size, min_pixels=low, max_pixels=high, factor=factor)
    return lambda text: rescale_boxes(text, size, new_size, bare)


def target_edit(source: str, images: list, boxes_cfg: Any, bare: bool = False):
    """text -> text for targets (`bare`: gold columns): the rescaler when data.boxes.rescale
    is on, else the identity. Boxes need exactly one image to be unambiguous."""
    if not boxes_cfg or not boxes_cfg.get("rescale"):
        return lambda text: text
    from vlexp.data.records import DataError

    if len(images) != 1:

        def single_image_only(text: str) -> str:
            if has_boxes(text) or (bare and BARE.search(text)):
                raise DataError(
                    f"{source}: data.boxes.rescale needs exactly one image per record with "
                    f"boxes (this one has {len(images)}): boxes would be ambiguous"
                )
            return text

        return single_image_only
    try:
        return box_rescaler(boxes_cfg, images[0], bare)
    except OSError as err:
        raise DataError(f"{source}: cannot read the image size ({err})") from None


def rescale_gold(columns: dict, source: str, images: list, boxes_cfg: Any) -> dict:
    """The record's gold columns (`solution`, `box`) with their boxes in the model's frame."""
    present = [c for c in GOLD_COLUMNS if isinstance(columns.get(c), str | list)]
    if not present or not boxes_cfg or not boxes_cfg.get("rescale"):
        return columns
    edit = target_edit(source, images, boxes_cfg, bare=True)
    out = dict(columns)
    for column in present:
        value = out[column]
        if isinstance(value, list):
            out[column] = json.loads(edit(json.dumps(value)))
        else:
            out[column] = edit(value)
    return out
