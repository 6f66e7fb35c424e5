"""A corpus of bad records next to good ones, with the outcome each must have.

`write_corpus(folder)` writes `train.jsonl`, `eval.jsonl` (good records only) and `images/`;
`EXPECTED[kind]` maps the id of every bad record (or `line-N` for a line that is not even
JSON) to the (field, reason) the data check must report for algorithm `kind`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

GOOD = ["good-0", "good-1", "good-2", "good-3", "good-4", "good-5"]
NON_UTF8_LINE = 8  # line number of the raw non-UTF-8 line in train.jsonl

_ALL_KINDS = {
    "missing-question": ("prefix", "missing field"),
    "wrong-type": ("prefix", "wrong type"),
    "missing-image": ("image", "image not found"),
    "zero-byte-image": ("image", "image unreadable"),
    "truncated-jpeg": ("image", "image unreadable"),
    "text-as-png": ("image", "image unreadable"),
    "one-pixel": ("image", "image too small"),
    "too-wide": ("image", "image aspect ratio"),
    "huge-prompt": ("prompt", "too long"),
    "outside-folder": ("image", "image outside the data folder"),
    "remote": ("image", "remote image"),
    f"line-{NON_UTF8_LINE}": ("line", "not UTF-8"),
    "dup": ("id", "duplicate id"),  # the second record with id good-1
}
EXPECTED = {
    "sft": dict(_ALL_KINDS),
    "dpo": {**_ALL_KINDS, "same-pair": ("rejected", "chosen equals rejected")},
    "grpo": {**_ALL_KINDS, "no-solution": ("solution", "missing field")},
}


def _png(path: Path, size: tuple[int, int]) -> None:
    from PIL import Image

    Image.new("RGB", size, (200, 40, 40)).save(path)


def _record(rid: str, image: str = "images/ok.png", **changes) -> dict:
    record = {
        "id": rid,
        "image": image,
        "prefix": "How many red shapes are there?",
        "solution": "1",
        "suffix": "<think>one red square</think><answer>1</answer>",
        "rejected": "<think>none</think><answer>0</answer>",
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def write_corpus(folder: Path) -> Path:
    """The corpus under `folder`; returns the train file. Good records keep their order."""
    from PIL import Image

    images = folder / "images"
    images.mkdir(parents=True)
    _png(images / "ok.png", (56, 56))
    _png(images / "one.png", (1, 1))
    _png(images / "wide.png", (10000, 10))
    (images / "empty.png").write_bytes(b"")
    (images / "notes.png").write_text("this is a text file, not a PNG\n")
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(jpeg, format="JPEG")
    (images / "cut.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    _png(folder.parent / "outside.png", (56, 56))

    lines = [
        _record("good-0"),
        _record("missing-question", prefix=None),
        _record("wrong-type", prefix=123),
        _record("good-1"),
        _record("missing-image", image="images/nope.png"),
        _record("zero-byte-image", image="images/empty.png"),
        _record("truncated-jpeg", image="images/cut.jpg"),
        None,  # line 8: not UTF-8
        _record("text-as-png", image="images/notes.png"),
        _record("one-pixel", image="images/one.png"),
        _record("too-wide", image="images/wide.png"),
        _record("good-2"),
        _record("huge-prompt", prefix="count the red shapes " * 2000),
        _record("outside-folder", image="../outside.png"),
        _record("remote", image="http://example.invalid/a.png"),
        _record("good-1", suffix="<answer>1</answer>"),  # "dup": id good-1 again
        _record("same-pair", rejected="<think>one red square</think><answer>1</answer>"),
        _record("no-solution", solution=None),
        _record("good-3", image=["images/ok.png", "images/ok.png"]),
        _record("good-4", image=str(images / "ok.png")),  # absolute, inside the folder
        _record("good-5", image=None),  # text-only records are fine
    ]
    train = folder / "train.jsonl"
    with train.open("wb") as handle:
        for number, record in enumerate(lines, start=1):
            if record is None:
                assert number == NON_UTF8_LINE
                handle.write(b'{"id": "bad-bytes", "prefix": "\xff\xfe caf\xe9"}\n')
            else:
                handle.write(json.dumps(record).encode() + b"\n")
    eval_file = folder / "eval.jsonl"
    eval_file.write_text("\n".join(json.dumps(_record(f"eval-{i}")) for i in range(4)) + "\n")
    return train


def line_of(train: Path, rid: str) -> int:
    """1-based line of the record with id `rid` (the last one, for the duplicate)."""
    if rid.startswith("line-"):
        return int(rid[5:])
    if rid == "dup":
        rid = "good-1"
        found = [n for n, line in enumerate(train.read_bytes().splitlines(), 1) if _id(line) == rid]
        return found[-1]
    return next(n for n, line in enumerate(train.read_bytes().splitlines(), 1) if _id(line) == rid)


def _id(line: bytes) -> str | None:
    try:
        return json.loads(line)["id"]
    except (ValueError, KeyError):
        return None


def kept_ids(kind: str) -> list[str]:
    """Ids the check must keep under skip: every good one, plus records bad only for others."""
    others = {"same-pair", "no-solution"} - set(EXPECTED[kind])
    order = ["good-0", "good-1", "good-2", "same-pair", "no-solution", "good-3", "good-4", "good-5"]
    return [rid for rid in order if rid in GOOD or rid in others]
