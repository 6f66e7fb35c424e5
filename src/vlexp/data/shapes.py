"""The built-in `shapes` data set: coloured shapes on a plain background, verifiable questions.

Images are drawn without anti-aliasing, so every shape is one exact RGB colour: a test (or a
sceptical user) can check each answer by counting pixels. Sizes vary from below
`min_pixels` to well above `max_pixels` so the processor's resizing is exercised.

The output is an ordinary vlexp JSONL data set (`train.jsonl`, `eval.jsonl`, `images/`) in
the prefix/suffix form, read by the same loader as a user's files::

    {"id": "train-00003", "image": "images/train-00003.png",
     "prefix": "How many red shapes are there?", "solution": "2",
     "suffix": "<think>I count the red shapes.</think><answer>2</answer>",
     "rejected": "<think>I count the red shapes.</think><answer>3</answer>",
     "task": "count", "shapes": [{"kind": "circle", "colour": "red", "box": [...]}, ...]}
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from vlexp.paths import cache_dir, cache_problem, write_manifest

log = logging.getLogger("vlexp")

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
}
KINDS = ("circle", "square", "triangle")
BACKGROUNDS = ((255, 255, 255), (235, 235, 235))
# (width, height): 56x56 is below the tiny model's min_pixels, 224x168 above its max_pixels.
SIZES = ((56, 56), (84, 84), (112, 84), (84, 112), (112, 112), (168, 112), (224, 168))
GRID = 3  # shapes sit in distinct cells of a 3x3 grid, so they never touch
VERSION = 1  # bump when the drawing or the record format changes: it names the cache dir


def draw_scene(rng: random.Random) -> tuple[object, list[dict]]:
    """Draw one image; return it with the list of shapes (kind, colour, pixel box)."""
    from PIL import Image, ImageDraw

    width, height = rng.choice(SIZES)
    image = Image.new("RGB", (width, height), rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(image)
    cell_w, cell_h = width // GRID, height // GRID
    cells = rng.sample(range(GRID * GRID), k=rng.randint(1, 4))
    shapes = []
    for cell in cells:
        shape, colour = rng.choice(KINDS), rng.choice(list(COLOURS))
        side = int(min(cell_w, cell_h) * rng.uniform(0.55, 0.8))
        x0 = (cell % GRID) * cell_w + rng.randint(1, cell_w - side - 1)
        y0 = (cell // GRID) * cell_h + rng.randint(1, cell_h - side - 1)
        box = [x0, y0, x0 + side, y0 + side]
        fill = COLOURS[colour]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(x0 + side // 2, y0), (x0, y0 + side), (x0 + side, y0 + side)], fill=fill)
        shapes.append({"kind": shape, "colour": colour, "box": box})
    return image, shapes


def ask(rng: random.Random, shapes: list[dict]) -> tuple[str, str, str, str]:
    """Pick a question with a verifiable answer: (task, question, answer, wrong answer)."""
    unique_kinds = [k for k in KINDS if sum(s["kind"] == k for s in shapes) == 1]
    if unique_kinds and rng.random() < 0.5:
        kind = rng.choice(unique_kinds)
        answer = next(s["colour"] for s in shapes if s["kind"] == kind)
        wrong = rng.choice([c for c in COLOURS if c != answer])
        return "colour", f"What colour is the {kind}?", answer, wrong
    colour = rng.choice(list(COLOURS))
    count = sum(s["colour"] == colour for s in shapes)
    wrong = rng.choice([n for n in range(5) if n != count])
    return "count", f"How many {colour} shapes are there?", str(count), str(wrong)


def think_answer(task: str, question: str, answer: str) -> str:
    """The target completion in the think/answer format the rewards check."""
    if task == "count":
        thought = f"I count the {question.split()[2]} shapes."
    else:
        thought = f"I look at the {question.rstrip('?').split()[-1]}."
    return f"<think>{thought}</think><answer>{answer}</answer>"


def make_record(rng: random.Random, split: str, index: int, image_dir: Path) -> dict:
    image, shapes = draw_scene(rng)
    task, question, answer, wrong = ask(rng, shapes)
    name = f"{split}-{index:05d}"
    image.save(image_dir / f"{name}.png")
    return {
        "id": name,
        "image": f"images/{name}.png",
        "prefix": question,
        "solution": answer,
        "suffix": think_answer(task, question, answer),
        "rejected": think_answer(task, question, wrong),
        "task": task,
        "width": image.width,
        "height": image.height,
        "shapes": shapes,
    }


def generate(out_dir: str | Path, num_train: int = 512, num_eval: int = 64, seed: int = 0) -> Path:
    """Write the data set into `out_dir` once (idempotent, safe under concurrent ranks).

    The same arguments always give the same bytes; a finished set is marked by `DONE`.
    """
    image_dir = Path(out_dir).expanduser() / "images"

    def record(rng: random.Random, split: str, index: int) -> dict:
        image_dir.mkdir(parents=True, exist_ok=True)
        return make_record(rng, split, index, image_dir)

    splits = {"train.jsonl": ("train", num_train), "eval.jsonl": ("eval", num_eval)}
    return write_once(out_dir, splits, record, seed, f"shapes v{VERSION} seed={seed}")


def write_once(
    out_dir: str | Path,
    splits: dict[str, tuple[str, int]],
    make: Callable[[random.Random, str, int], dict],
    seed: int,
    marker: str,
) -> Path:
    """`splits` (file name -> (split, count)) of records from `make`, written under a file
    lock unless `DONE` says an earlier run (or another rank) finished them."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / ".lock")):
        if (out / "DONE").exists():
            problem = cache_problem(out, tuple(splits))
            if problem is None:
                return out
            # Seeded: regenerating gives the same records and images again.
            log.warning("generated data %s is damaged (%s); generating it again", out, problem)
            (out / "DONE").unlink()
        rng = random.Random(seed)
        for file_name, (split, count) in splits.items():
            records = [make(rng, split, i) for i in range(count)]
            lines = "".join(json.dumps(r) + "\n" for r in records)
            (out / file_name).write_text(lines, encoding="utf-8")
        write_manifest(out, tuple(splits))
        (out / "DONE").write_text(marker + "\n")
    return out


def default_dir(num_train: int, num_eval: int, seed: int) -> Path:
    """The cache location for one parameter set, so different sets never collide."""

    return cache_dir() / "data" / f"shapes-v{VERSION}-n{num_train}-e{num_eval}-s{seed}"
