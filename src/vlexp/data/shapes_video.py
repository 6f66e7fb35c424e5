"""The `shapes` video split: a few frames of moving shapes, with questions about time.

Each clip is a list of PNG frames (no codec needed, so every video backend and machine reads
it the same way), drawn without anti-aliasing like `shapes`, so answers can be checked by
counting pixels frame by frame. Two tasks:

* cross: a red circle moves left and right; "How many times does the red circle cross the
  middle?" counts the frames where its centre changes side of the vertical midline.
* first: two shapes of different kinds appear at different frames; "Which shape appears
  first?" names the kind that appears earlier.

Written as `video_train.jsonl` / `video_eval.jsonl` in the prefix/suffix form::

    {"id": "video-train-00003", "video": ["videos/train-00003/0.png", ...],
     "prefix": "Which shape appears first?", "solution": "square", "task": "first", ...}
"""

from __future__ import annotations

import random
from pathlib import Path

from vlexp.data.shapes import BACKGROUNDS, COLOURS, KINDS, write_once

FRAME_COUNTS = (4, 6, 8)  # even: qwen-vl-utils pairs frames into temporal patches
SIZES = ((56, 56), (84, 56), (112, 56))
VERSION = 1  # bump when the drawing or the record format changes: it names the cache dir


def _draw(draw, shape: str, colour: str, box: list[int]) -> None:
    fill = COLOURS[colour]
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x0, y1), (x1, y1)], fill=fill)


def crossing_clip(rng: random.Random, frames: int, width: int, height: int):
    """Per frame, the red circle's box; returns (boxes, crossings of the midline)."""
    side = min(width, height) // 3
    sides = [rng.random() < 0.5]
    for _ in range(frames - 1):
        sides.append(sides[-1] if rng.random() < 0.6 else not sides[-1])
    boxes = []
    for right in sides:
        # Whole circle on one side of the midline, so its side is never ambiguous.
        low, high = (width // 2 + 1, width - side - 1) if right else (1, width // 2 - side - 1)
        x0 = rng.randint(low, max(low, high))
        y0 = rng.randint(1, height - side - 1)
        boxes.append([x0, y0, x0 + side, y0 + side])
    crossings = sum(a != b for a, b in zip(sides, sides[1:], strict=False))
    return boxes, crossings


def draw_clip(rng: random.Random) -> tuple[list, str, str, str, str]:
    """Frames (PIL images) plus (task, question, answer, wrong answer)."""
    from PIL import Image, ImageDraw

    frames = rng.choice(FRAME_COUNTS)
    width, height = rng.choice(SIZES)
    background = rng.choice(BACKGROUNDS)
    images = [Image.new("RGB", (width, height), background) for _ in range(frames)]
    side = min(width, height) // 3
    if rng.random() < 0.5:
        boxes, crossings = crossing_clip(rng, frames, width, height)
        for image, box in zip(images, boxes, strict=True):
            _draw(ImageDraw.Draw(image), "circle", "red", box)
        wrong = rng.choice([n for n in range(frames) if n != crossings])
        question = "How many times does the red circle cross the middle?"
        return images, "cross", question, str(crossings), str(wrong)
    first, second = rng.sample(KINDS, k=2)
    start = rng.randint(0, frames - 2)
    later = rng.randint(start + 1, frames - 1)
    colours = rng.sample(list(COLOURS), k=2)
    places = [
        [2, 2, 2 + side, 2 + side],
        [width - side - 3, height - side - 3, width - 3, height - 3],
    ]
    for index, image in enumerate(images):
        draw = ImageDraw.Draw(image)
        if index >= start:
            _draw(draw, first, colours[0], places[0])
        if index >= later:
            _draw(draw, second, colours[1], places[1])
    return images, "first", "Which shape appears first?", first, second


def make_record(rng: random.Random, split: str, index: int, out: Path) -> dict:
    images, task, question, answer, wrong = draw_clip(rng)
    name = f"{split}-{index:05d}"
    folder = out / "videos" / name
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for number, image in enumerate(images):
        image.save(folder / f"{number}.png")
        frames.append(f"videos/{name}/{number}.png")
    thought = "I watch the red circle." if task == "cross" else "I watch which shape comes first."
    return {
        "id": f"video-{name}",
        "video": frames,
        "prefix": question,
        "solution": answer,
        "suffix": f"<think>{thought}</think><answer>{answer}</answer>",
        "rejected": f"<think>{thought}</think><answer>{wrong}</answer>",
        "task": task,
        "frames": len(frames),
        "width": images[0].width,
        "height": images[0].height,
    }


def generate(out_dir: str | Path, num_train: int = 64, num_eval: int = 16, seed: int = 0) -> Path:
    """Write the video split into `out_dir` once (idempotent, safe under concurrent ranks)."""
    out = Path(out_dir).expanduser()

    def record(rng: random.Random, split: str, index: int) -> dict:
        return make_record(rng, split, index, out)

    splits = {"video_train.jsonl": ("train", num_train), "video_eval.jsonl": ("eval", num_eval)}
    return write_once(out, splits, record, seed, f"shapes video v{VERSION} seed={seed}")
