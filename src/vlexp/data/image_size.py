"""The size of an image as the model receives it, and of the image a record's boxes are on.

The data set decodes images with `datasets.Image`, which applies the EXIF orientation: a
phone photo taken upright is stored sideways with orientation 6 or 8, and the model (and
the person who drew its boxes) sees it turned. Boxes are scaled from that size
(`vlexp.data.boxes`). A resized copy made by `data.image_cache` records the size of its
source, so rewards that map boxes onto the record's pixels can still find it.
"""

from __future__ import annotations

from typing import Any


def decoded_size(entry: object) -> tuple[int, int]:
    """(width, height) of an image path or a data set's `{"bytes", "path"}` entry as the data
    set decodes it for the model (`datasets.Image`, which applies the EXIF orientation).

    Without an orientation tag the header's size is the decoded size. With one, what the size
    becomes depends on the decoder (JPEG, PNG and WebP turn at `exif_transpose`; Pillow's TIFF
    reader reports the turned size at open and turns while loading), so the image is decoded
    exactly as the data set does it and measured."""
    import io

    from PIL import ExifTags, Image

    if isinstance(entry, dict):
        data, path = entry.get("bytes") or None, entry.get("path")
    else:
        data, path = None, str(entry)
    with Image.open(io.BytesIO(data) if data else path) as image:
        size = image.size
        try:
            orientation = image.getexif().get(ExifTags.Base.Orientation)
        except Exception as err:  # the data set's decode reads the same EXIF and would fail too
            raise OSError(f"its EXIF data does not parse ({err})") from None
    if orientation in (None, 1):
        return size
    import datasets

    with datasets.Image().decode_example({"path": path, "bytes": data}) as image:
        return image.size


# PNG text key of a resized copy (`data.image_cache`): "WxH" of the image it was made from.
SOURCE_SIZE = "vlexp-source-size"


def source_size_info(size: tuple[int, int]) -> Any:
    """PNG metadata recording the decoded size of the image a resized copy is made from."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(SOURCE_SIZE, f"{size[0]}x{size[1]}")
    return info


def record_size(image: Any) -> tuple[int, int]:
    """(width, height) of the image a record's boxes are written on, for a decoded image (as
    TRL hands rewards the `images` column), a path or a `{"bytes", "path"}` entry: the source
    of a resized cached copy (`data.image_cache`), else the image as the data set decodes it."""
    if hasattr(image, "size") and not isinstance(image, dict):
        text = getattr(image, "info", {}).get(SOURCE_SIZE)
        return _parse_size(text) if text else tuple(image.size)
    import io

    from PIL import Image

    data = image.get("bytes") if isinstance(image, dict) else None
    source = io.BytesIO(data) if data else (image["path"] if isinstance(image, dict) else image)
    with Image.open(source) as opened:
        text = opened.info.get(SOURCE_SIZE)
    return _parse_size(text) if text else decoded_size(image)


def _parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)
