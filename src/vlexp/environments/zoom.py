"""`env=zoom`: the model looks closer at part of its image ("thinking with images").

The tool is verl's `ImageZoomInTool` (the DeepEyes recipe) in TRL's environment protocol:
same name and arguments (`image_zoom_in_tool(bbox_2d, label)`), same box rules (clamped to
the image, a box smaller than one image token grown about its centre, aspect ratio at most
100), and the crop comes from the ORIGINAL image, not the downscaled copy the model saw. vlexp
adds the family's box frame (the model writes boxes as it was trained to: pixels of the
resized image for Qwen2.5-VL, 0..1000 for Qwen3-VL/Qwen3.5, the image's pixels for Gemma 3)
and returns the crop enlarged to fill one turn's pixel budget, so small things become legible.
"""

from __future__ import annotations

import json
import math
from typing import Any

from vlexp.data.boxes import BoxFrame
from vlexp.environments import Limits, ToolCalls

MAX_ASPECT = 100  # verl's ImageZoomInTool rejects boxes longer than 100x their width


class ZoomEnv:
    """One rollout's image and its zoom tool (TRL `environment_factory` protocol)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self._calls = ToolCalls(limits or Limits())
        self._image: Any = None

    def reset(self, images: list | None = None, **row: Any) -> None:
        """Start a rollout on the row's first image (TRL passes the data set row)."""
        self._calls.reset()
        self._image = images[0] if images else None

    @property
    def limits(self) -> Limits:
        """The limits this rollout's calls obey (the box frame among them)."""
        return self._calls.limits

    @property
    def failures(self) -> int:
        """Calls of this rollout that ended in an error message (vlexp.patches counts them)."""
        return self._calls.failures

    @property
    def turns(self) -> list[dict]:
        """What each call of this rollout returned, in order (tests, inspection)."""
        return self._calls.turns

    def image_zoom_in_tool(self, bbox_2d: list[float], label: str = "") -> list[dict] | str:
        """Zoom in on a region of the image: returns that region enlarged, as a new image.

        Args:
            bbox_2d: The region as [x1, y1, x2, y2] (top-left, bottom-right), in the coordinates you use for boxes.
            label: What the region shows (optional).
        """
        return self._calls.run("image_zoom_in_tool", self._zoom, bbox_2d, label)

    def _zoom(self, bbox_2d: Any, label: str = "") -> list[dict] | str:
        if self._image is None:
            raise ValueError("no image to zoom into")
        box = _four_numbers(bbox_2d)
        size = self._image.size
        crop_box = grown(clamped(self._calls.limits.frame.to_record(box, size), size), size)
        if crop_box is None:
            raise ValueError(f"box {bbox_2d} is empty or outside the image")
        crop = self._image.crop(tuple(crop_box))
        return [{"type": "image", "image": crop}]

    def _example_call(self, target_box: list | None = None, **row: Any) -> dict | None:
        """A call this environment can show on a record (`check_data --show`): a zoom on the
        half-image window around the record's `target_box` (shapes_zoom), else its middle."""
        if self._image is None:
            return None
        width, height = self._image.size
        if isinstance(target_box, str):  # a list column the data set keeps as JSON text
            target_box = json.loads(target_box)
        target = target_box or [width // 2, height // 2, width // 2 + 1, height // 2 + 1]
        box = window(list(target), (width, height), self.limits.frame)
        return {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": box}}


class RewardedZoomEnv(ZoomEnv):
    """`ZoomEnv` that also rewards looking: `bonus` for a rollout with at least one zoom that
    returned an image (DeepEyes' tool bonus, without its condition on a right answer, which
    the environment does not see). TRL adds `get_reward` as one more reward column, weight 1,
    logged as rewards/RewardedZoomEnv/mean, beside `reward=`'s functions.

        python -m vlexp env=zoom env.factory._target_=vlexp.environments.zoom.RewardedZoomEnv
    """

    def __init__(self, limits: Limits | None = None, bonus: float = 0.1) -> None:
        super().__init__(limits)
        self._bonus = bonus

    def get_reward(self) -> float:
        """`bonus` when this rollout zoomed successfully at least once, else 0."""
        looked = any("parts" in turn for turn in self.turns)
        return self._bonus if looked else 0.0


def _four_numbers(value: Any) -> list[float]:
    """The box as four floats, or a ValueError saying what was wrong with it."""
    if isinstance(value, str):  # some models quote the list
        value = value.strip("[]() ").replace(",", " ").split()
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise ValueError(f"bbox_2d needs 4 numbers, got {value!r}"[:60])
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"bbox_2d needs numbers, got {value!r}"[:60]) from None
    if not all(math.isfinite(v) for v in box):
        raise ValueError("bbox_2d needs finite numbers")
    return box


def clamped(box: list[float], size: tuple[int, int]) -> list[float] | None:
    """`box` (original pixels) cut to the image; None when nothing of it is left."""
    width, height = size
    left, top = max(0.0, box[0]), max(0.0, box[1])
    right, bottom = min(float(width), box[2]), min(float(height), box[3])
    if (
        right <= left
        or bottom <= top
        or max(right - left, bottom - top) / min(right - left, bottom - top) > MAX_ASPECT
    ):
        return None
    return [left, top, right, bottom]


def grown(box: list[float] | None, size: tuple[int, int], minimum: int = 28) -> list[int] | None:
    """`box` with each side at least `minimum` px (grown about its centre, shifted inside
    the image), as integer pixels: verl's `_maybe_resize_bbox` rule."""
    if box is None:
        return None
    width, height = size
    left, top, right, bottom = box
    side_w = min(float(width), max(right - left, minimum))
    side_h = min(float(height), max(bottom - top, minimum))
    x0 = min(max(0.0, (left + right - side_w) / 2), width - side_w)
    y0 = min(max(0.0, (top + bottom - side_h) / 2), height - side_h)
    out = [math.floor(x0), math.floor(y0), math.ceil(x0 + side_w), math.ceil(y0 + side_h)]
    return out if out[2] > out[0] and out[3] > out[1] else None


def window(target_box: list[int], size: tuple[int, int], frame: BoxFrame) -> list[int]:
    """The half-image window (one of 3 x 3, overlapping) whose middle is nearest the centre of
    `target_box` (original pixels), in the model's box frame: a shape of at most 1/8 of the
    image side lies inside it whole. `check_data --show`'s example call zooms on it.

    >>> from vlexp.data.boxes import BoxFrame
    >>> window([301, 77, 318, 94], (448, 448), BoxFrame("relative_1000"))
    [500, 0, 1000, 500]
    """
    extent = frame.extent(size)
    out = []
    for axis in (0, 1):
        centre = (target_box[axis] + target_box[axis + 2]) / 2 / size[axis]  # 0..1
        start = min(2, max(0, round(centre * 4) - 1)) / 4  # 0, 1/4 or 1/2 of the image
        out.append((round(start * extent[axis]), round((start + 0.5) * extent[axis])))
    return [out[0][0], out[1][0], out[0][1], out[1][1]]
