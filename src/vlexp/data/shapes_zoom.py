"""`shapes_zoom`: questions a model can answer only by looking closer (env=zoom).

A large plain canvas (448 px a side) holds one small shape (14 to 20 px) at a random place.
At the tiny models' pixel budget (112 to 128 px a side, 16 image tokens) the canvas shrinks
about 4x: the shape's colour survives as a faint blob, its kind (circle, square, triangle)
does not. Zoomed in (`image_zoom_in_tool` on a box around it, the crop enlarged to the same
budget), the shape fills about a quarter of the image and its kind is plain. The question
names the colour (where to look) and asks the kind (what only a zoom shows).

Drawn without anti-aliasing like `shapes`, so the answer can be checked by its pixels. Each
record keeps the shape's box in original pixels (`target_box`) for tests and warm-ups::

    {"id": "train-00003", "image": "images/train-00003.png",
     "prefix": "What shape is the small red mark?", "solution": "circle",
     "suffix": "<think>I zoom in on the red mark.</think><answer>circle</answer>",
     "task": "zoom_kind", "target_box": [301, 77, 318, 94], "width": 448, "height": 448}
"""

from __future__ import annotations

import random
from pathlib import Path

from vlexp.data.shapes import BACKGROUNDS, COLOURS, KINDS, write_once

CANVAS = 448  # px a side: 4x the tiny Qwen2.5-VL's 112 px budget, 3.5x the Qwen3-VL's 128
SIDES = (14, 20)  # target shape side in px: 3.5 to 5 px after the downscale
MARGIN = 8
VERSION = 1  # bump when the drawing or the record format changes: it names the cache dir


def draw_target(rng: random.Random) -> tuple[object, dict]:
    """The canvas and its one shape (kind, colour, box in pixels)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (CANVAS, CANVAS), rng.choice(BACKGROUNDS))
    side = rng.randint(*SIDES)
    x0 = rng.randint(MARGIN, CANVAS - side - MARGIN)
    y0 = rng.randint(MARGIN, CANVAS - side - MARGIN)
    box = [x0, y0, x0 + side, y0 + side]
    kind, colour = rng.choice(KINDS), rng.choice(list(COLOURS))
    draw = ImageDraw.Draw(image)
    if kind == "circle":
        draw.ellipse(box, fill=COLOURS[colour])
    elif kind == "square":
        draw.rectangle(box, fill=COLOURS[colour])
    else:
        draw.polygon(
            [(x0 + side // 2, y0), (x0, y0 + side), (x0 + side, y0 + side)], fill=COLOURS[colour]
        )
    return image, {"kind": kind, "colour": colour, "box": box}


def make_record(rng: random.Random, split: str, index: int, image_dir: Path) -> dict:
    image, target = draw_target(rng)
    name = f"{split}-{index:05d}"
    image.save(image_dir / f"{name}.png")
    colour, kind = target["colour"], target["kind"]
    return {
        "id": name,
        "image": f"images/{name}.png",
        "prefix": f"What shape is the small {colour} mark?",
        "solution": kind,
        "suffix": f"<think>I zoom in on the {colour} mark.</think><answer>{kind}</answer>",
        "task": "zoom_kind",
        "target_box": target["box"],
        "width": CANVAS,
        "height": CANVAS,
    }


def generate(out_dir: str | Path, num_train: int = 256, num_eval: int = 32, seed: int = 0) -> Path:
    """Write the data set into `out_dir` once (idempotent, safe under concurrent ranks)."""
    image_dir = Path(out_dir).expanduser() / "images"

    def record(rng: random.Random, split: str, index: int) -> dict:
        image_dir.mkdir(parents=True, exist_ok=True)
        return make_record(rng, split, index, image_dir)

    splits = {"train.jsonl": ("train", num_train), "eval.jsonl": ("eval", num_eval)}
    return write_once(out_dir, splits, record, seed, f"shapes_zoom v{VERSION} seed={seed}")
