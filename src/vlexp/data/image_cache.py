"""Decode and resize each image once, into the pixels the processor would make; keep them on disk.

The Qwen-VL image processor decodes every image and resizes it to `smart_resize` dimensions
on every access, i.e. once per epoch (and per GRPO generation batch). With `data.image_cache`
each image is instead decoded once, resized with the processor's own `resize` (same kernel,
same uint8 rounding) and stored as a lossless PNG. The data set then points at the cached
file: the processor still runs as before, but its resize is now the identity, so
`pixel_values` and `image_grid_thw` are bit-for-bit those of the original image
(`tests/unit/test_image_cache.py` checks this), and later epochs and runs only decode a
small PNG.

Entries are keyed by the source path, its mtime and size, the pixel limits, the patch
factor, the resample filter and the torchvision version, so an edited image, a new
`model.max_pixels` or a different resize kernel never reads a stale file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vlexp.data.image_size import source_size_info
from vlexp.data.records import DataError
from vlexp.data.spec import DataSpec
from vlexp.paths import whole_png

log = logging.getLogger("vlexp")
VERSION = 2  # bump when the cached pixels change meaning (2: the source's size in the PNG)


def for_run(spec: DataSpec, processor: Any) -> Callable[[list[dict]], list[dict]] | None:
    """The row transform `load_split` applies, or None when the cache is off or cannot apply
    (`spec`: the run plan's data part)."""
    if not spec.node.get("image_cache"):
        return None
    image_processor = getattr(processor, "image_processor", None)
    if not _supported(image_processor):
        log.info(
            "data.image_cache: %s is not cacheable, images are read as they are",
            type(image_processor).__name__,
        )
        return None
    cache = ImageCache(image_processor, spec.cache_dir / "images")
    return cache.rows


def _supported(image_processor: Any) -> bool:
    # The torchvision backend resizes uint8 tensors to uint8, so the resized image can be
    # stored losslessly; smart_resize makes a second resize of it the identity. That image
    # processor serves Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5 in transformers 5.24 (the
    # PIL variant, a sibling class, does not qualify).
    from transformers import Qwen2VLImageProcessor

    return (
        isinstance(image_processor, Qwen2VLImageProcessor)
        and getattr(image_processor, "do_resize", False)
        and hasattr(image_processor, "process_image")
        and hasattr(image_processor, "merge_size")
    )


class ImageCache:
    def __init__(self, image_processor: Any, root: Path, workers: int | None = None) -> None:
        import torchvision

        self.processor = image_processor
        self.root = Path(root)
        self.workers = workers or min(8, os.cpu_count() or 1)
        size = image_processor.size
        self.min_pixels = int(size["shortest_edge"])
        self.max_pixels = int(size["longest_edge"])
        self.factor = int(image_processor.patch_size * image_processor.merge_size)
        self.settings = (
            f"v{VERSION}|{self.min_pixels}|{self.max_pixels}|{self.factor}|"
            f"{int(image_processor.resample)}|{image_processor.do_convert_rgb}|"
            f"tv{torchvision.__version__}"
        )

    def path_for(self, source: str) -> Path:
        """Where the resized copy of `source` lives (the key includes mtime and size)."""
        try:
            stat = os.stat(source)
        except FileNotFoundError:
            raise DataError(
                f"{source}: image file not found (check the record's image path)"
            ) from None
        key = f"{os.path.abspath(source)}|{stat.st_mtime_ns}|{stat.st_size}|{self.settings}"
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.png"

    def get(self, source: str) -> str:
        """The cached file for `source`, made now when missing (atomic, safe across ranks)."""
        target = self.path_for(source)
        # A file cut short (a kill, a full disk) is made again: the check reads its last chunk.
        if not whole_png(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            decoded = decode(source)
            image = self.resize(decoded)
            # Host and pid: ranks on other nodes share the folder on a cluster file system.
            partial = target.with_suffix(f".{socket.gethostname()}.{os.getpid()}.tmp")
            # The source's size goes along: boxes are written on the source, not on this copy.
            info = source_size_info(decoded.size)
            image.save(partial, format="PNG", compress_level=1, pnginfo=info)
            os.replace(partial, target)
        return str(target)

    def resize(self, image: Any) -> Any:
        """The processor's own RGB conversion and smart_resize, kept as 8-bit pixels."""
        from PIL import Image
        from transformers.image_utils import SizeDict

        tensor = self.processor.process_image(image, do_convert_rgb=self.processor.do_convert_rgb)
        size = SizeDict(shortest_edge=self.min_pixels, longest_edge=self.max_pixels)
        resized = self.processor.resize(
            images=tensor[None], size=size, resample=self.processor.resample, factor=self.factor
        )[0]  # (3, H', W') uint8, H' and W' multiples of `factor`
        return Image.fromarray(resized.permute(1, 2, 0).numpy(), mode="RGB")

    def rows(self, rows: list[dict]) -> list[dict]:
        """Rows with every image path replaced by its cached copy (made in parallel once)."""
        # Paths only: a data set's own image bytes (data=hf) are read as they are.
        sources = sorted({p for row in rows for p in row.get("images") or [] if isinstance(p, str)})
        with ThreadPoolExecutor(self.workers) as pool:
            cached = dict(zip(sources, pool.map(self.get, sources), strict=True))
        return [
            {
                **row,
                "images": [cached.get(p, p) if isinstance(p, str) else p for p in row["images"]],
            }
            if row.get("images")
            else row
            for row in rows
        ]


def decode(path: str) -> Any:
    """Decode exactly as the data set's `datasets.Image` feature does (EXIF orientation incl.)."""
    import datasets

    return datasets.Image().decode_example({"path": path, "bytes": None})
