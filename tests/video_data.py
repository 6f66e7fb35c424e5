"""Short synthetic videos written by the tests: a red square moving across a white field."""

from __future__ import annotations

import json
from pathlib import Path


def frames(count: int, width: int, height: int) -> list:
    """`count` RGB frames (H, W, 3 uint8): a red square stepping left to right."""
    import numpy as np

    side = min(width, height) // 3
    out = []
    for index in range(count):
        frame = np.full((height, width, 3), 255, np.uint8)
        x = (width - side) * index // max(count - 1, 1)
        frame[height // 3 : height // 3 + side, x : x + side] = (220, 40, 40)
        out.append(frame)
    return out


def write_mp4(path: Path, count: int = 8, width: int = 56, height: int = 56, fps: int = 4) -> Path:
    """An MPEG-4 file of `count` frames at `fps` (PyAV)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames(count, width, height):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frames(folder: Path, count: int = 4, width: int = 56, height: int = 56) -> list[str]:
    """PNG frames in `folder`; their paths relative to its parent."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index, frame in enumerate(frames(count, width, height)):
        Image.fromarray(frame).save(folder / f"{index}.png")
        names.append(f"{folder.name}/{index}.png")
    return names


def video_jsonl(folder: Path, records: list[dict], name: str = "train.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def mixed_records(folder: Path, count: int = 8) -> list[dict]:
    """Alternating video and image records (prefix/suffix form, with a `solution`)."""
    from PIL import Image

    write_mp4(folder / "clip.mp4")
    Image.new("RGB", (56, 56), (220, 40, 40)).save(folder / "red.png")
    records = []
    for index in range(count):
        media = {"video": "clip.mp4"} if index % 2 == 0 else {"image": "red.png"}
        question = "Where does the square go?" if index % 2 == 0 else "What colour is it?"
        answer = "right" if index % 2 == 0 else "red"
        records.append(
            {
                **media,
                "prefix": question,
                "solution": answer,
                "suffix": f"<think>I look.</think><answer>{answer}</answer>",
                "rejected": "<think>I look.</think><answer>left</answer>",
            }
        )
    return records
