"""Image checks for the data check: where an image may come from, whether it decodes, its tokens.

Each check raises BadImage(reason, detail); the caller turns it into a BadRecord naming the
record. Token counts come from the model's family (`token_counter`): transformers' own
`smart_resize` for the Qwen processors, the fixed image sequence for Gemma 3, so they equal
what the processor will produce (tests/unit/test_lengths.py holds them to it).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlexp.families import Family
from vlexp.paths import private_temp, whole_png

REMOTE = ("http://", "https://")
MAX_ASPECT_RATIO = 200  # smart_resize raises above this (transformers and qwen-vl-utils alike)


class BadImage(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def is_remote(item: str) -> bool:
    return item.startswith(REMOTE)


def local_path(item: str, image_dir: Path, allowed_roots: list[Path]) -> Path:
    """The image's path, if it lies inside the data folder or an allowed root.

    Containment is lexical (no symlink resolution): a data folder whose `images/` is a link
    to a bigger disk is fine; `../../etc/x.png` or an absolute path elsewhere is not.
    """
    path = Path(os.path.normpath(image_dir / Path(item).expanduser()))
    roots = [image_dir, *allowed_roots]
    if not any(path.is_relative_to(os.path.normpath(root)) for root in roots):
        raise BadImage(
            "image outside the data folder",
            f"{item} is outside {image_dir}: move it there, or add its folder to "
            "data.allowed_image_roots (or set data.image_root)",
        )
    return path


def fetch(url: str, cache: Path, timeout: float = 30.0) -> Path:
    """Download `url` once into `cache` (named by its hash); later runs reuse the file."""
    suffix = Path(url.split("?")[0]).suffix[:8]
    target = cache / (hashlib.sha256(url.encode()).hexdigest()[:32] + suffix)
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http/https only)
            body = response.read()
    except OSError as err:  # URLError, HTTPError, timeouts
        raise BadImage("remote image not fetched", f"{url}: cannot fetch ({err})") from None
    # Every rank (and node, on a shared cache) may fetch the same URL at once: each writes
    # its own file and renames it whole onto the target.
    partial = private_temp(target)
    try:
        partial.write_bytes(body)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


# Modes PIL gives 16- and 32-bit grayscale images; its RGB conversion clips them at 255.
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
PIL_PIXEL_LIMIT = 89_478_485  # PIL's own Image.MAX_IMAGE_PIXELS (a decompression-bomb guard)


def set_pixel_limit(limit: int | None) -> None:
    """`data.max_image_pixels`: PIL's decompression-bomb limit for this process (null: PIL's
    default; 0: no limit). PIL refuses images above twice the limit and warns above it."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = PIL_PIXEL_LIMIT if limit is None else (int(limit) or None)


def eight_bit(path: Path, cache: Path) -> Path:
    """`path`, or for a 16/32-bit grayscale image an 8-bit copy scaled to 0-255 (kept in
    `cache`, named by the source's path, size and mtime): the processor's RGB conversion
    would clip its values at 255 and the model would see an almost white image."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode not in HIGH_DEPTH_MODES:
                return path
            stat = path.stat()
            key = f"{os.path.abspath(path)}|{stat.st_mtime_ns}|{stat.st_size}"
            target = cache / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".png")
            if whole_png(target):
                return target
            image.load()
            scaled = to_eight_bit(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return path  # `inspect` reports why it cannot be read
    partial = private_temp(target)
    try:
        scaled.save(partial, format="PNG")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def to_eight_bit(image):
    """A grayscale image of any depth as mode "L", its value range mapped onto 0-255.

    16-bit modes span 0-65535; 32-bit integer images (PIL reads many 16-bit PNGs as "I")
    are taken as 16-bit when a value exceeds 255; float images as 0-1 when none exceeds 1."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    top = values.max(initial=0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and top > 255):
        full = 65535.0
    elif image.mode == "F" and top <= 1.0:
        full = 1.0
    else:
        full = 255.0
    scaled = np.clip(np.rint(values * (255.0 / full)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)  # uint8, 2-D: mode "L"


def inspect(path: Path | dict, min_side: int) -> tuple[int, int]:
    """(width, height) of an image that exists, is non-empty, decodes and fits smart_resize.

    `path` may also be a data set's `{"bytes", "path"}` image (data=hf).
    """
    import io

    from PIL import Image, UnidentifiedImageError

    if isinstance(path, dict):
        data, named = path.get("bytes"), path.get("path")
        if not data:
            return inspect(Path(named), min_side)
        source = lambda: io.BytesIO(data)  # noqa: E731
        size, path = len(data), Path(named or "<image bytes>")
    else:
        source = lambda: path  # noqa: E731
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise BadImage("image not found", f"{path}: no such file") from None
        except OSError as err:
            raise BadImage("image unreadable", f"{path}: {err.strerror or err}") from None
    if size == 0:
        raise BadImage("image unreadable", f"{path}: empty file (0 bytes)")
    try:
        with Image.open(source()) as image:
            width, height = image.size
            image.verify()  # structure and checksums, without decoding the pixels
        with Image.open(source()) as image:
            image.load()  # the pixels themselves: catches truncated files
    except UnidentifiedImageError:
        raise BadImage("image unreadable", f"{path}: not an image PIL can identify") from None
    except Image.DecompressionBombError as err:
        raise BadImage(
            "image too large",
            f"{path}: {err} If the image is genuine, raise the limit with "
            "data.max_image_pixels=N (0: no limit).",
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImage("image unreadable", f"{path}: does not decode ({err})") from None
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise BadImage(
            "image aspect ratio",
            f"{path}: {width}x{height} px, aspect ratio {ratio:.0f}:1 exceeds "
            f"{MAX_ASPECT_RATIO}:1 (the processor's smart_resize rejects it): crop or pad it",
        )
    if min(width, height) < min_side:
        raise BadImage(
            "image too small",
            f"{path}: {width}x{height} px, below data.min_image_side={min_side} "
            "(less than one image token of pixels)",
        )
    return width, height


def image_tokens(width: int, height: int, factor: int, min_pixels: int, max_pixels: int) -> int:
    """Image pad tokens the processor emits for one image (one per `factor`x`factor` px).

    >>> image_tokens(224, 168, factor=28, min_pixels=3136, max_pixels=12544)  # -> 112x84 px
    12
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return (h // factor) * (w // factor)


def token_counter(processor: Any, family: Family) -> Callable[..., int]:
    """`(width, height, images_in_prompt=1) -> tokens` one image adds to the prompt, as
    `processor` expands it. The family answers (`Family.image_tokens`): Qwen-style processors
    resize within a pixel budget (`smart_resize`), fixed-size ones (Gemma 3) expand every image
    to one sequence, LLaVA-OneVision tiles a lone image (AnyRes) and not one of several.
    """
    return family.load("image_tokens")(family, processor)


def processor_geometry(processor: Any, family: Family) -> tuple[int, int, int]:
    """(factor, min_pixels, max_pixels) a pixel-budget (Qwen-style) processor resizes with:
    the family's pixels per token and the processor's pixel limits (the "pixels" box frame)."""
    from vlexp.families.qwen2_vl import pixel_limits

    return (family.pixels_per_token, *pixel_limits(processor))
