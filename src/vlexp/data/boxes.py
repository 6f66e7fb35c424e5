"""Rescale absolute pixel boxes in target text to the image the model actually sees.

Qwen2.5-VL reads and writes boxes in absolute pixels of the *resized* image: the processor
resizes every image with `smart_resize` (sides rounded to multiples of 28, area clamped to
[min_pixels, max_pixels]). Document-parsing and grounding data usually carry boxes in the
original image's pixels, so without rescaling the targets point at the wrong place. With
`data.boxes.rescale=true` every box in a target is mapped from the original size to the
resized one:

    <p data-bbox='100 40 500 80'>...   (1000x800 image, resized to 728x588)
    <p data-bbox='73 29 364 59'>...

Two spellings are recognised: the HTML attribute `data-bbox='x1 y1 x2 y2'` (single or double
quotes, QwenVL HTML) and the JSON key `"bbox_2d": [x1, y1, x2, y2]` (Qwen grounding).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
PATTERNS = (
    re.compile(r"(data-bbox=)(['\"])" + _NUM + r"\s" + _NUM + r"\s" + _NUM + r"\s" + _NUM + r"\2"),
    re.compile(
        r'("bbox_2d"\s*:\s*\[)' + r"()" + _NUM + "," + _NUM + "," + _NUM + "," + _NUM + r"\]"
    ),
)


def resized_size(
    width: int, height: int, min_pixels: int, max_pixels: int, factor: int = 28
) -> tuple[int, int]:
    """(width, height) after the processor's resize: transformers' own `smart_resize`."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    new_height, new_width = smart_resize(
        height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels
    )
    return new_width, new_height


def rescale_boxes(text: str, size: tuple[int, int], new_size: tuple[int, int]) -> str:
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

    for pattern in PATTERNS:
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


def box_rescaler(boxes_cfg: object, image: object) -> Callable[[str], str]:
    """A text -> text function rescaling boxes from `image`'s size to its resized size."""
    size = image_size(image)
    new_size = resized_size(
        *size,
        min_pixels=boxes_cfg.min_pixels,
        max_pixels=boxes_cfg.max_pixels,
        factor=boxes_cfg.get("factor", 28),
    )
    return lambda text: rescale_boxes(text, size, new_size)
