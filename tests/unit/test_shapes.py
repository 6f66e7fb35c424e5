"""The shapes generator: deterministic, and every answer is true of the pixels drawn."""

from __future__ import annotations

import hashlib
import json
from collections import deque

from PIL import Image

from vlexp.data import shapes


def _records(directory, split="train"):
    return [json.loads(line) for line in (directory / f"{split}.jsonl").read_text().splitlines()]


def _components(image: Image.Image, rgb: tuple[int, int, int]) -> int:
    """Number of 4-connected blobs of exactly this colour."""
    width, height = image.size
    pixels = image.load()
    seen = set()
    blobs = 0
    for y in range(height):
        for x in range(width):
            if (x, y) in seen or pixels[x, y] != rgb:
                continue
            blobs += 1
            queue = deque([(x, y)])
            seen.add((x, y))
            while queue:
                cx, cy = queue.popleft()
                for nx, ny in ((cx + 1, cy), (cx - 1, cy), (cx, cy + 1), (cx, cy - 1)):
                    inside = 0 <= nx < width and 0 <= ny < height
                    if inside and (nx, ny) not in seen and pixels[nx, ny] == rgb:
                        seen.add((nx, ny))
                        queue.append((nx, ny))
    return blobs


def test_answers_match_the_pixels(shapes_dir):
    checked = {"count": 0, "colour": 0}
    for record in _records(shapes_dir)[:80]:
        image = Image.open(shapes_dir / record["image"]).convert("RGB")
        assert image.size == (record["width"], record["height"])
        counts = {name: _components(image, rgb) for name, rgb in shapes.COLOURS.items()}
        assert sum(counts.values()) == len(record["shapes"])
        if record["task"] == "count":
            colour = record["prefix"].split()[2]
            assert counts[colour] == int(record["solution"])
        else:
            kind = record["prefix"].rstrip("?").split()[-1]
            (shape,) = [s for s in record["shapes"] if s["kind"] == kind]
            x0, y0, x1, y1 = shape["box"]
            # The colour named is the colour at the shape's centre.
            centre = image.getpixel(
                ((x0 + x1) // 2, (y0 + y1 * 3) // 4 if kind == "triangle" else (y0 + y1) // 2)
            )
            assert centre == shapes.COLOURS[record["solution"]]
        checked[record["task"]] += 1
    assert checked["count"] > 10 and checked["colour"] > 10


def test_records_carry_every_algorithm_format(shapes_dir):
    for record in _records(shapes_dir, "eval"):
        assert record["suffix"].endswith(f"<answer>{record['solution']}</answer>")
        assert record["rejected"] != record["suffix"] and record["rejected"].startswith("<think>")


def test_generation_is_deterministic(tmp_path):
    a = shapes.generate(tmp_path / "a", num_train=12, num_eval=4, seed=3)
    b = shapes.generate(tmp_path / "b", num_train=12, num_eval=4, seed=3)
    c = shapes.generate(tmp_path / "c", num_train=12, num_eval=4, seed=4)
    digest = lambda d: hashlib.sha256(  # noqa: E731
        b"".join(p.read_bytes() for p in sorted(d.rglob("*.png")))
        + (d / "train.jsonl").read_bytes()
    ).hexdigest()
    assert digest(a) == digest(b) != digest(c)
    assert len(_records(a)) == 12 and len(_records(a, "eval")) == 4


def test_sizes_straddle_the_tiny_pixel_budget(shapes_dir):
    areas = {r["width"] * r["height"] for r in _records(shapes_dir)}
    assert min(areas) <= 3136 and max(areas) > 12544


def test_generate_is_idempotent(tmp_path):
    out = shapes.generate(tmp_path, num_train=3, num_eval=1, seed=0)
    stamp = (out / "train.jsonl").stat().st_mtime_ns
    shapes.generate(tmp_path, num_train=3, num_eval=1, seed=0)
    assert (out / "train.jsonl").stat().st_mtime_ns == stamp
