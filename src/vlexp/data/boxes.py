"""Boxes in the frame the model reads and writes them in, scaled once from the image it sees.

Qwen2.5-VL reads and writes boxes in absolute pixels of the *resized* image: the processor
resizes every image with `smart_resize` (sides rounded to multiples of 28, area clamped to
[min_pixels, max_pixels]); Qwen3-VL in 0-1000 coordinates relative to the image. Grounding
and document-parsing data usually carry boxes in the original image's pixels.

Gold columns of GRPO and evaluation records (`solution`, `box`: what the `iou` reward compares
with) are put in the model's frame by default (`data.boxes.gold=true`), so a perfect answer
in the model's own convention scores 1: `box` always, `solution` when it is boxes and nothing
else (`[x1, y1, x2, y2]` or a list of them, optionally inside `<answer>...</answer>`, as
VLM-R1 writes its REC solutions: `[226.99, 44.4, 352.0, 371.0]`, original pixels) or spells
boxes as below.

SFT/DPO targets are rescaled with `data.boxes.rescale=true` (off by default: targets may
already be written for the resized image). The spellings recognised are the HTML attribute
`data-bbox='x1 y1 x2 y2'` (QwenVL HTML), the JSON key `"bbox_2d": [x1, y1, x2, y2]` (Qwen
grounding) and Qwen2-VL's `<|box_start|>(x1,y1),(x2,y2)<|box_end|>`:

    <p data-bbox='100 40 500 80'>...   (1000x800 image, resized to 728x588)
    <p data-bbox='73 29 364 59'>...

Each box is rewritten once, in place (only its four numbers change): one scan finds every
box in whichever spelling holds it, so the list inside `"bbox_2d": [...]` is not met again
as a bare list.

The size boxes are scaled from is the image's size as the model receives it: the data set
decodes images with `datasets.Image`, which applies the EXIF orientation (a phone photo
taken upright is stored sideways with orientation 6 or 8), so that decode is measured
(`vlexp.data.image_size`), not the stored size.

The frame comes from the model family (`vlexp.families`, `box_frame`; `data.boxes.family`,
the family the run plan resolved at start-up, `vlexp.runplan`):
absolute pixels of the resized image for Qwen2.5-VL, 0-1000 relative coordinates for
Qwen2-VL, Qwen3-VL and Qwen3.5, the original pixels (no change) for Gemma 3. A model
whose family cannot be told has no frame: a record with boxes is then a bad record, never
scaled by a guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlexp.data.image_size import decoded_size
from vlexp.families import BOX_FRAMES

if TYPE_CHECKING:
    from vlexp.families import Family

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_FOUR = ",".join([_NUM] * 4)
# The spellings of a box in text; each has exactly four number groups (x1, y1, x2, y2).
SPELLED = (
    r"data-bbox=(?P<quote>['\"])" + r"\s".join([_NUM] * 4) + r"(?P=quote)",
    r"[\"']bbox_2d[\"']\s*:\s*\[" + _FOUR + r"\]",
    r"<\|box_start\|>\s*\(" + _NUM + "," + _NUM + r"\)\s*,\s*\(" + _NUM + "," + _NUM
    + r"\)\s*<\|box_end\|>",
    r"<\|box_start\|>\s*\[" + _FOUR + r"\]\s*<\|box_end\|>",
)  # fmt: skip
BARE = r"\[" + _FOUR + r"\]"
# One alternation per use: at each position the spellings are tried before the bare list, so
# a box is matched (and rescaled) once, by the spelling that holds it.
PATTERNS = re.compile("|".join(f"(?:{p})" for p in SPELLED))
WITH_BARE = re.compile("|".join(f"(?:{p})" for p in (*SPELLED, BARE)))
_ANSWER = re.compile(r"\s*(?:<answer>)?(.*?)(?:</answer>)?\s*", re.S)
GOLD_COLUMNS = ("solution", "box")
_QUOTE = PATTERNS.groupindex["quote"]  # data-bbox's quote: not a coordinate


@dataclass(frozen=True)
class BoxFrame:
    """How a model family writes boxes (`vlexp.families.BOX_FRAMES`), with the processor's
    resize for the "pixels" frame: `factor` px per image token side, the area budget."""

    kind: str
    factor: int = 0
    min_pixels: int = 0
    max_pixels: int = 0

    def __post_init__(self) -> None:
        if self.kind not in BOX_FRAMES:
            raise ValueError(f"box frame {self.kind!r} is not one of {', '.join(BOX_FRAMES)}")
        if self.kind == "pixels" and not (self.factor and self.min_pixels and self.max_pixels):
            raise ValueError(
                "boxes in the 'pixels' frame (absolute pixels of the resized image) need the "
                f"processor's resize, but factor={self.factor}, min_pixels={self.min_pixels}, "
                f"max_pixels={self.max_pixels}: set model.min_pixels and model.max_pixels"
            )

    def extent(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the frame for an image the model receives at `size`."""
        if self.kind == "relative_1000":
            return 1000, 1000
        if self.kind == "pixels":
            return resized_size(*size, self.min_pixels, self.max_pixels, self.factor)
        return size

    def to_record(self, box: list[float], size: tuple[int, int]) -> list[float]:
        """`box` as the model wrote it, in pixels of the `size` (width, height) image.

        >>> BoxFrame("relative_1000").to_record([250, 0, 500, 1000], (200, 100))
        [50.0, 0.0, 100.0, 100.0]
        """
        (width, height), (frame_w, frame_h) = size, self.extent(size)
        sx, sy = width / frame_w, height / frame_h
        return [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]


def frame_of_family(
    family: Family, min_pixels: int | None, max_pixels: int | None, factor: int | None = None
) -> BoxFrame:
    """The family's box frame with the run's pixel budget (`factor`: the family's own)."""
    if family.box_frame != "pixels":
        return BoxFrame(family.box_frame)
    return BoxFrame("pixels", factor or family.pixels_per_token, min_pixels or 0, max_pixels or 0)


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
    """Every box in `text`, mapped from `size` (w, h) to `new_size` (w, h), rounded, clamped;
    `bare`: lists of four numbers count as boxes too. Each box is rewritten once.

    >>> rescale_boxes("<p data-bbox='100 40 500 80'>", (1000, 800), (728, 588))
    "<p data-bbox='73 29 364 59'>"
    >>> rescale_boxes('[{"bbox_2d": [100, 40, 500, 80]}]', (1000, 800), (1000, 1000), bare=True)
    '[{"bbox_2d": [100, 50, 500, 100]}]'
    """
    (width, height), (new_width, new_height) = size, new_size
    scale, limit = (new_width / width, new_height / height), (new_width, new_height)

    def coordinate(value: str, axis: int) -> str:
        return str(min(max(round(float(value) * scale[axis]), 0), limit[axis]))

    def replace(match: re.Match) -> str:
        # the four number groups of the spelling that matched (the others did not take part)
        groups = range(1, len(match.groups()) + 1)
        numbers = [match.span(i) for i in groups if i != _QUOTE and match.start(i) >= 0]
        out, at = [], match.start()
        for axis, (start, end) in enumerate(numbers):
            out += [match.string[at:start], coordinate(match.string[start:end], axis % 2)]
            at = end
        return "".join(out) + match.string[at : match.end()]

    return (WITH_BARE if bare else PATTERNS).sub(replace, text)


def has_boxes(text: str) -> bool:
    return PATTERNS.search(text) is not None


def only_boxes(text: str) -> bool:
    """`text` is one box `[x1, y1, x2, y2]` or a list of them (optionally in `<answer>`)."""
    inner = _ANSWER.fullmatch(text).group(1)
    try:
        value = json.loads(inner) if inner.lstrip().startswith("[") else None
    except json.JSONDecodeError:
        return False

    def box(item: Any) -> bool:
        numbers = isinstance(item, list) and len(item) == 4
        return numbers and all(isinstance(v, int | float) and not isinstance(v, bool) for v in item)

    return box(value) or (isinstance(value, list) and bool(value) and all(map(box, value)))


def family_frame(boxes_cfg: Any) -> BoxFrame:
    """The box frame of the model's family in `data.boxes` (`family`: the one the run plan
    resolved at start-up, `vlexp.runplan.of`, recorded in `model.family`) with its pixel
    budget. Raises ValueError when no family is recorded: boxes are never scaled by a guess,
    and the family is never resolved a second time here."""
    from vlexp import families

    name = boxes_cfg.get("family")
    family = families.FAMILIES.get(str(name)) if name else None
    if family is None:
        raise ValueError(
            f"boxes are written in the model family's frame, and data.boxes.family={name} "
            f"names none of {', '.join(families.FAMILIES)}: the family is resolved at start-up "
            "(vlexp.runplan.of records it in model.family); set model.family"
        )
    limits = tuple(boxes_cfg.get(k) for k in ("min_pixels", "max_pixels", "factor"))
    return frame_of_family(family, *limits)


def box_rescaler(frame: BoxFrame, image: object, bare: bool = False) -> Callable[[str], str]:
    """A text -> text function mapping boxes from `image`'s pixels (as the model receives
    the image) to `frame`."""
    if frame.kind == "original":
        return lambda text: text
    size = decoded_size(image)
    new_size = frame.extent(size)
    return lambda text: rescale_boxes(text, size, new_size, bare)


def target_edit(source: str, images: list, boxes_cfg: Any) -> Callable[[str], str]:
    """text -> text for SFT/DPO targets: the rescaler when data.boxes.rescale is on, else
    the identity."""
    if not boxes_cfg or not boxes_cfg.get("rescale"):
        return lambda text: text
    return _lazy_editor(source, images, boxes_cfg, bare=False)


def _lazy_editor(source: str, images: list, boxes_cfg: Any, bare: bool) -> Callable[[str], str]:
    """The editor of `_editor`, made at the first text that holds a box (texts without boxes
    need neither the model's family nor the image)."""
    made: list[Callable[[str], str]] = []

    def edit(text: str) -> str:
        if not (has_boxes(text) or (bare and WITH_BARE.search(text))):
            return text
        if not made:
            made.append(_editor(source, images, boxes_cfg, bare))
        return made[0](text)

    return edit


def _editor(source: str, images: list, boxes_cfg: Any, bare: bool) -> Callable[[str], str]:
    """The rescaler for the record's one image. Boxes need exactly one image to be
    unambiguous: with another count, text holding a box is a bad record."""
    from vlexp.data.errors import DataError

    key = "gold" if bare else "rescale"
    if len(images) != 1:
        raise DataError(
            f"{source}: boxes need exactly one image per record (this one has {len(images)}) "
            f"to be put in the model's frame: they would be ambiguous (data.boxes.{key}=false "
            "keeps them as written)"
        )
    try:
        return box_rescaler(family_frame(boxes_cfg), images[0], bare)
    except OSError as err:
        raise DataError(f"{source}: cannot read the image size ({err})") from None
    except ValueError as err:
        raise DataError(f"{source}: {err}") from None


def gold_in_model_frame(boxes_cfg: Any) -> bool:
    """data.boxes.gold: gold boxes (`solution`, `box`) are put in the model's frame."""
    return bool(boxes_cfg and boxes_cfg.get("gold"))


def rescale_gold(columns: dict, source: str, images: list, boxes_cfg: Any) -> dict:
    """The record's gold columns (`box`; `solution` when it is boxes) in the model's frame."""
    if not gold_in_model_frame(boxes_cfg):
        return columns
    out = dict(columns)
    for column in GOLD_COLUMNS:
        value = out.get(column)
        text = json.dumps(value) if isinstance(value, list) else value
        if not isinstance(text, str):
            continue
        bare = column == "box" or only_boxes(text)
        if not (bare or has_boxes(text)):
            continue
        edit = _lazy_editor(source, images, boxes_cfg, bare)
        out[column] = json.loads(edit(text)) if isinstance(value, list) else edit(text)
    return out
