"""Read JSONL records and turn them into the example each trainer consumes.

Two record forms are accepted, in any mix:

* prefix/suffix: `{"image": "a.png" | ["a.png", ...], "prefix": "question", "suffix": "target",
  "solution": "...", "rejected": "..."}`; `question` or `problem` may stand for `prefix`.
* conversational, as TRL and the Qwen docs write them: `{"messages": [...], "images": [...]}`
  or `{"prompt": [...], "completion": [...], "images": [...]}` for SFT, `{"prompt": [...],
  "chosen": [...], "rejected": [...], "images": [...]}` for DPO, `{"prompt": [...], "images":
  [...], "solution": ...}` for GRPO. Images may also sit inside the turns, Qwen style
  (`{"type": "image", "image": "a.png"}`); see `vlexp.data.messages`.

Relative image paths resolve against the JSONL file's folder unless `data.image_root` says
otherwise. Every error names `file:line`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlexp.data.boxes import box_rescaler, has_boxes
from vlexp.data.messages import (
    MessageError,
    hoist_inline_media,
    map_texts,
    normalise,
    place_images,
    video_placeholders,
)
from vlexp.data.videos import as_video

QUESTION_KEYS = ("prefix", "question", "problem")
KINDS = ("sft", "dpo", "grpo")


class DataError(ValueError):
    """A record or file that cannot be used; the message names where and what to do."""


@dataclass(frozen=True)
class BadRecord:
    """Why one record cannot be used: where, which field, a short reason (counted) and detail."""

    source: str  # "path/to/train.jsonl:12"
    field: str
    reason: str  # e.g. "image not found": drops are counted per reason
    detail: str

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.detail}"


@dataclass
class Record:
    source: str  # "path/to/train.jsonl:12"
    fields: dict[str, Any]
    image_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)


def read_jsonl(
    path: str | Path, image_root: str | Path | None = None, bad: list[BadRecord] | None = None
) -> list[Record]:
    """Parse a JSONL file into records; blank lines are ignored, anything else must be JSON.

    A line that is not UTF-8, not JSON or not an object raises DataError, or, when a `bad`
    list is given, is appended to it and skipped (the data check reports them all at once).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: data file not found (check data.train / data.eval)")
    image_dir = Path(image_root).expanduser() if image_root else path.parent
    records = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            source = f"{path}:{number}"
            problem = None
            try:
                text = raw.decode("utf-8")
                fields = json.loads(text) if text.strip() else None
            except UnicodeDecodeError as err:
                problem = BadRecord(
                    source, "line", "not UTF-8", f"not UTF-8 ({err.reason} at byte {err.start})"
                )
            except json.JSONDecodeError as err:
                detail = f"not valid JSON ({err.msg}, column {err.colno})"
                problem = BadRecord(source, "line", "invalid JSON", detail)
            else:
                if fields is None:
                    continue
                if not isinstance(fields, dict):
                    detail = f"a record must be a JSON object, got {type(fields).__name__}"
                    problem = BadRecord(source, "line", "invalid JSON", detail)
            if problem is None:
                records.append(Record(source, hoist_inline_media(fields), image_dir))
            elif bad is None:
                raise DataError(f"{source}: {problem.detail}")
            else:
                bad.append(problem)
    if not records and not bad:
        raise DataError(f"{path}: no records (the file is empty)")
    return records


def image_paths(record: Record) -> list:
    """The record's images (`image` or `images`, one or a list): absolute paths for path
    strings; a hub data set's `{"bytes", "path"}` entries pass through as they are."""
    value = record.fields.get("images", record.fields.get("image"))
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    paths = []
    for item in items:
        if isinstance(item, dict) and (item.get("bytes") or item.get("path")):
            paths.append(item)
        elif isinstance(item, str):
            paths.append(resolve_image(record, item))
        else:
            raise DataError(
                f"{record.source}: image entries must be path strings, got {item!r:.60}"
            )
    return paths


def video_entries(record: Record) -> list:
    """The record's videos as given: `video` (one: a path or a list of frame paths) or
    `videos` (a list of them)."""
    if record.fields.get("video") is not None:
        return [record.fields["video"]]
    value = record.fields.get("videos")
    return list(value) if isinstance(value, list) else []


def video_paths(record: Record) -> list[dict]:
    """The record's videos in the data set's form (`vlexp.data.videos.as_video`), paths
    resolved like image paths."""

    videos = []
    for item in video_entries(record):
        frames = item if isinstance(item, list) else None
        if isinstance(item, str) and item:
            videos.append(as_video(resolve_image(record, item)))
        elif frames and all(isinstance(f, str) and f for f in frames):
            videos.append(as_video([resolve_image(record, f) for f in frames]))
        else:
            raise DataError(
                f"{record.source}: a video must be a path string or a list of frame paths, "
                f"got {item!r:.60}"
            )
    return videos


def resolve_image(record: Record, path: str) -> str:
    # URLs pass through (the data check fetches them only with data.allow_remote_images).
    if path.startswith(("http://", "https://")):
        return path
    return str((record.image_dir / path).expanduser())


def _question(record: Record) -> str:
    for key in QUESTION_KEYS:
        if isinstance(record.fields.get(key), str):
            return record.fields[key]
    raise DataError(
        f"{record.source}: missing the question: give one of {', '.join(QUESTION_KEYS)}"
    )


def _text(record: Record, key: str) -> str:
    value = record.fields.get(key)
    if not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise DataError(f"{record.source}: '{key}' must be a string ({got})")
    return value


def prompt_messages(
    record: Record, num_images: int, template: str, system: str | None, num_videos: int = 0
) -> list:
    """System (optional) + user turn with one part per image, then per video, then the text."""
    text = template.format(question=_question(record))
    content = [{"type": "image"} for _ in range(num_images)]
    content += [{"type": "video"} for _ in range(num_videos)] + [{"type": "text", "text": text}]
    messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    return messages + [{"role": "user", "content": content}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def passthrough(record: Record, drop: tuple[str, ...]) -> dict:
    """Columns a reward may need (solution, choices, box, ...), JSON-encoded when nested."""
    skip = (
        set(drop)
        | set(QUESTION_KEYS)
        | {"image", "images", "video", "videos", "suffix", "messages"}
    )
    out = {}
    for key, value in record.fields.items():
        if key not in skip:
            out[key] = json.dumps(value) if isinstance(value, dict | list) else value
    return out


def to_example(
    record: Record, kind: str, template: str, system: str | None, boxes: Any = None
) -> dict:
    """The trainer-facing example for `kind` (sft, dpo or grpo).

    `boxes` (the `data.boxes` config) with `rescale: true` maps pixel boxes in the targets to
    the processor's resized image (see `vlexp.data.boxes`).
    """
    images = image_paths(record)
    videos = video_paths(record)
    media = {"images": images, "videos": videos} if videos else {"images": images}
    fields = record.fields
    if "messages" in fields or isinstance(fields.get("prompt"), list):
        example = _conversational(record, kind, images, _target_edit(record, images, boxes))
        return {**example, **media}
    edit = _target_edit(record, images, boxes)
    prompt = prompt_messages(record, len(images), template, system, len(videos))
    if kind == "sft":
        return {"prompt": prompt, "completion": assistant(edit(_text(record, "suffix"))), **media}
    if kind == "dpo":
        chosen = fields.get("chosen", fields.get("suffix"))
        chosen = assistant(edit(chosen if isinstance(chosen, str) else _text(record, "chosen")))
        rejected = assistant(edit(_text(record, "rejected")))
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected, **media}
    example = passthrough(record, drop=("prompt", "chosen", "rejected"))
    return {**example, "prompt": prompt, **media}


def _target_edit(record: Record, images: list, boxes: Any):
    """text -> text for target turns: the box rescaler when asked for, else the identity."""
    if not boxes or not boxes.get("rescale"):
        return lambda text: text

    if len(images) != 1:

        def single_image_only(text: str) -> str:
            if has_boxes(text):
                raise DataError(
                    f"{record.source}: data.boxes.rescale needs exactly one image per record "
                    f"with boxes (this one has {len(images)}): boxes would be ambiguous"
                )
            return text

        return single_image_only
    try:
        return box_rescaler(boxes, images[0])
    except OSError as err:
        raise DataError(f"{record.source}: cannot read the image size ({err})") from None


# Conversational columns each kind trains on, and the roles whose text is a target.
_CONVERSATION_KEYS = {"prompt": (), "completion": ("assistant",), "messages": ("assistant",)}
_CONVERSATION_KEYS |= {"chosen": ("assistant",), "rejected": ("assistant",)}


def _conversational(record: Record, kind: str, images: list, edit: Any) -> dict:
    fields = record.fields
    if kind == "sft":
        if "messages" not in fields and "completion" not in fields:
            raise DataError(f"{record.source}: SFT needs 'messages' or 'prompt' + 'completion'")
        keep = ("messages",) if "messages" in fields else ("prompt", "completion")
    elif kind == "dpo":
        keep = ("prompt", "chosen", "rejected")
    else:
        keep = ("prompt",)
    missing = [k for k in keep if k not in fields]
    if missing:
        raise DataError(f"{record.source}: {kind.upper()} records need {', '.join(missing)}")

    example, placeholders = {}, 0
    try:
        for key in keep:
            turns, images, count = normalise(
                fields[key], images, key, lambda p: resolve_image(record, p)
            )
            example[key] = map_texts(turns, _CONVERSATION_KEYS[key], edit)
            placeholders += count
        if images and not placeholders:
            place_images(example[keep[0]], len(images))
        elif placeholders != len(images):
            raise MessageError(
                f"{placeholders} image placeholder(s) in the turns but {len(images)} image(s)"
            )
        video_parts = sum(video_placeholders(example[key]) for key in keep)
        if video_parts != len(video_entries(record)):
            raise MessageError(
                f"{video_parts} video part(s) in the turns but {len(video_entries(record))} "
                "video(s) in 'video'/'videos'"
            )
    except MessageError as err:
        raise DataError(f"{record.source}: {err}") from None
    if kind == "grpo":
        example.update(passthrough(record, drop=("prompt", "chosen", "rejected", "completion")))
    return {**example, "images": images}
