"""Local data sets in the forms users bring, written from the built-in `shapes` set.

* `prefix_jsonl`: prefix/suffix JSONL + images folder, targets in an HTML layout with
  absolute pixel boxes (`data-bbox='x1 y1 x2 y2'`), as document-parsing data is written.
* `messages_jsonl`: conversational `messages` records with Qwen-style inline image parts.
* `preference_dataset`: an rlaif-v formatted data set (images, prompt, chosen, rejected as
  conversations), written with `save_to_disk` and as parquet, for `data=hf`.
"""

from __future__ import annotations

import json
from pathlib import Path


def shapes_records(shapes_dir: Path, split: str = "train", limit: int | None = None) -> list[dict]:
    lines = (Path(shapes_dir) / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:limit]]


def layout_html(record: dict) -> str:
    """One element per shape with its absolute pixel box, like a document layout target."""
    items = "".join(
        f"<div data-bbox='{' '.join(str(v) for v in s['box'])}'>{s['colour']} {s['kind']}</div>"
        for s in record["shapes"]
    )
    return f"<html><body>{items}</body></html>"


def prefix_jsonl(shapes_dir: Path, out: Path, limit: int = 16, html: bool = False) -> Path:
    """prefix/suffix records whose `image` paths are relative to `out`'s folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    images = out.parent / "images"
    if not images.exists():
        images.symlink_to(Path(shapes_dir) / "images", target_is_directory=True)
    rows = []
    for record in shapes_records(shapes_dir, limit=limit):
        row = {
            "image": record["image"],  # images/train-00000.png, relative to the JSONL's folder
            "prefix": "Parse the layout." if html else record["prefix"],
            "suffix": layout_html(record) if html else record["suffix"],
            "rejected": record["rejected"],
        }
        rows.append(row)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def messages_jsonl(shapes_dir: Path, out: Path, limit: int = 16) -> Path:
    """Two-turn `messages` records, the image inline in the first user turn (Qwen docs style)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for record in shapes_records(shapes_dir, limit=limit):
        messages = [
            {"role": "system", "content": "You count shapes."},
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": f"file://{Path(shapes_dir) / record['image']}"},
                    {"type": "text", "text": record["prefix"]},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": record["suffix"]}]},
            {"role": "user", "content": "Only the answer, please."},
            {"role": "assistant", "content": record["solution"]},
        ]
        rows.append({"messages": messages})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def preference_dataset(shapes_dir: Path, out_dir: Path, limit: int = 16):
    """rlaif-v formatted pairs; returns (save_to_disk folder, parquet file)."""
    import datasets
    from PIL import Image

    table = {"images": [], "prompt": [], "chosen": [], "rejected": []}
    for record in shapes_records(shapes_dir, limit=limit):
        table["images"].append([Image.open(Path(shapes_dir) / record["image"]).convert("RGB")])
        table["prompt"].append(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "text": None},
                        {"type": "text", "text": record["prefix"]},
                    ],
                }
            ]
        )
        for key, text in (("chosen", record["suffix"]), ("rejected", record["rejected"])):
            table[key].append([{"role": "assistant", "content": [{"type": "text", "text": text}]}])
    dataset = datasets.Dataset.from_dict(table).cast_column(
        "images", datasets.Sequence(datasets.Image())
    )
    saved = Path(out_dir) / "rlaif_v_local"
    dataset.save_to_disk(str(saved))
    parquet = Path(out_dir) / "rlaif_v_local.parquet"
    dataset.to_parquet(str(parquet))
    return saved, parquet
