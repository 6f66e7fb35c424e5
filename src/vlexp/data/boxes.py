"""Rescale absolute pixel boxes to the frame the model reads and writes boxes in.

Qwen2.5-VL reads and writes boxes in absolute pixels of the *resized* image: the processor
resizes every image with `smart_resize` (sides rounded to multiples of 28, area clamped to
[min_pixels, max_pixels]); Qwen3-VL in 0-1000 coordinates relative to the image. Grounding
and document-parsing data usually carry boxes in the original image's pixels.

Gold columns of GRPO and evaluation records (`solution`, `box`: what the `iou` reward compares
with) are put in the model's frame by default (`data.boxes.gold=true`), so a perfect answer
in the model's own convention scores 1: `box` always, `solution` when it is one box (`[x1,
y1, x2, y2]`, optionally inside `<answer>...</answer>`, as VLM-R1 writes its REC solutions:
`[226.99, 44.4, 352.0, 371.0]`, original pixels) or spells boxes as below.

SFT/DPO targets are rescaled with `data.boxes.rescale=true` (off by default: targets may
already be written for the resized image). Two spellings are recognised in them: the HTML
attribute `data-bbox='x1 y1 x2 y2'` (single or double quotes, QwenVL HTML) and the JSON key
`"bbox_2d": [x1, y1, x2, y2]` (Qwen grounding):

    <p data-bbox='100 40 500 80'>...   (1000x800 image, resized to 728x588)
    <p data-bbox='73 29 364 59'>...

The frame comes from the model family (`vlexp.families`, `box_frame`; `data.boxes.model`):
absolute pixels of the resized image for Qwen2-VL and Qwen2.5-VL, 0-1000 relative
coordinates for Qwen3-VL and Qwen3.5, the original pixels (no change) for Gemma 3. For a model
no family claims, gold boxes stay as written (the `iou` reward compares them as written too)
and targets are rescaled as for Qwen2.5-VL.
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
# A gold `solution` that is one box and nothing else (a list answer of a math task is not
# rescaled unless it is the whole answer: data.boxes.gold=false keeps every gold as written).
ONE_BOX = re.compile(r"\s*(?:<answer>)?\s*" + BARE.pattern + r"\s*(?:</answer>)?\s*")
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


def frame_of(boxes_cfg: Any) -> tuple[str | None, int]:
    """(box frame, pixels per token) of the model in `data.boxes.model` (its family); the
    frame is None for a model no family claims."""
    from vlexp.families import UnknownFamily, of_model_cfg

    family = None
    if boxes_cfg.get("model"):
        try:
            family = of_model_cfg(SimpleNamespace(name_or_path=boxes_cfg.get("model")))
        except UnknownFamily:
            family = None
    factor = boxes_cfg.get("factor") or (family.pixels_per_token if family else 28)
    return (family.box_frame if family else None), factor


def box_rescaler(
    boxes_cfg: Any, image: object, bare: bool = False, unknown: str = "pixels"
) -> Callable[[str], str]:
    """A text -> text function mapping boxes from `image`'s pixels to the model's frame
    (`unknown`: the frame for a model no family claims)."""
    frame, factor = frame_of(boxes_cfg)
    frame = frame or unknown
    if frame == "original":
        return lambda text: text
    size = image_size(image)
    if frame == "relative_1000":
        new_size = (1000, 1000)
    else:
        low, high = boxes_cfg.get("min_pixels"), boxes_cfg.get("max_pixels")
        new_size = resized_size(*size, min_pixels=low, max_pixels=high, factor=factor)
    return lambda text: rescale_boxes(text, size, new_size, bare)


def target_edit(source: str, images: list, boxes_cfg: Any) -> Callable[[str], str]:
    """text -> text for SFT/DPO targets: the rescaler when data.boxes.rescale is on, else
    the identity."""
    if not boxes_cfg or not boxes_cfg.get("rescale"):
        return lambda text: text
    return _editor(source, images, boxes_cfg, bare=False, unknown="pixels")


def _editor(source: str, images: list, boxes_cfg: Any, bare: bool, unknown: str):
    """The rescaler for the record's one image. Boxes need exactly one image to be
    unambiguous: with another count, text holding a box is a bad record."""
    from vlexp.data.errors import DataError

    if len(images) != 1:
        key = "gold" if bare else "rescale"

        def single_image_only(text: str) -> str:
            if has_boxes(text) or (bare and BARE.search(text)):
                raise DataError(
                    f"{source}: boxes need exactly one image per record (this one has "
                    f"{len(images)}) to be put in the model's frame: they would be ambiguous "
                    f"(data.boxes.{key}=false keeps them as written)"
                )
            return text

        return single_image_only
    try:
        return box_rescaler(boxes_cfg, images[0], bare, unknown)
    except OSError as err:
        raise DataError(f"{source}: cannot read the image size ({err})") from None


def gold_in_model_frame(boxes_cfg: Any) -> bool:
    """data.boxes.gold: gold boxes (`solution`, `box`) are put in the model's frame."""
    return bool(boxes_cfg and boxes_cfg.get("gold"))


def rescale_gold(columns: dict, source: str, images: list, boxes_cfg: Any) -> dict:
    """The record's gold columns (`box`; `solution` when it is a box) in the model's frame."""
    if not gold_in_model_frame(boxes_cfg):
        return columns
    out = dict(columns)
    edit = None
    for column in GOLD_COLUMNS:
        value = out.get(column)
        text = json.dumps(value) if isinstance(value, list) else value
        if not isinstance(text, str):
            continue
        box = column == "box" or ONE_BOX.fullmatch(text) or has_boxes(text)
        if not box:
            continue
        edit = edit or _editor(source, images, boxes_cfg, bare=True, unknown="original")
        out[column] = json.loads(edit(text)) if isinstance(value, list) else edit(text)
    return out
