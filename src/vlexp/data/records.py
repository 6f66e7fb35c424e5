"""Records and their conversion to the example each trainer consumes.

A record arrives here in vlexp's own forms (the readers in `vlexp.data.formats` turn every
other format into them, `vlexp.data.sources` reads the files):

* prefix/suffix: `{"image": "a.png" | ["a.png", ...], "prefix": "question", "suffix": "target",
  "solution": "...", "rejected": "..."}`; `question` or `problem` may stand for `prefix`.
* conversational, as TRL writes them: `{"messages": [...], "images": [...]}` or `{"prompt":
  [...], "completion": [...]}` for SFT, `{"prompt": [...], "chosen": [...], "rejected": [...]}`
  for DPO, `{"prompt": [...], "solution": ...}` (or `messages`) for GRPO.

What each kind needs is the table in `vlexp.data.schema`. Relative image paths resolve
against the record's `image_dir`. Every error names `file:line`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlexp.data import schema
from vlexp.data.boxes import rescale_gold, target_edit
from vlexp.data.errors import DataError
from vlexp.data.formats import FormatError
from vlexp.data.formats.swift import last_user
from vlexp.data.formats.tags import TAG, split_text
from vlexp.data.messages import (
    MessageError,
    map_texts,
    normalise,
    place_images,
    video_placeholders,
)
from vlexp.data.schema import QUESTION_KEYS
from vlexp.data.videos import as_video


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
    format: str = ""  # the format it was read in (vlexp.data.formats)
    raw_keys: frozenset[str] = frozenset()  # its keys before data.columns renamed them
    # kind -> its trainer example, made once by `convert` (the data check's conversion is the
    # one the trainer gets).
    examples: dict[str, dict] = field(default_factory=dict, repr=False)


class DuplicateKey(ValueError):
    """A JSON object names one key twice (json.loads would silently keep the last value)."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(
                f"key '{key}' is given twice in one object (JSON keeps only the last): keep one"
            )
        seen[key] = value
    return seen


def lone_surrogate(source: str, value: Any, where: str = "") -> BadRecord | None:
    """A `\\udXXX` escape without its pair decodes to no character (tokenizers then fail)."""
    if isinstance(value, str):
        for index, char in enumerate(value):
            if "\ud800" <= char <= "\udfff":
                detail = (
                    f"{where or 'the record'} holds {char!r} at character {index + 1}: half of a "
                    "UTF-16 surrogate pair, not a character; write the character itself or both "
                    "halves of the pair"
                )
                return BadRecord(source, where.strip("'") or "line", "invalid text", detail)
        return None
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        name = f"'{key}'" if not where else f"{where}[{key!r}]"
        problem = lone_surrogate(source, key, where) if isinstance(key, str) else None
        problem = problem or lone_surrogate(source, item, name)
        if problem:
            return problem
    return None


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
    return str((record.image_dir / strip_file_scheme(path)).expanduser())


def strip_file_scheme(path: str) -> str:
    """`file:///data/a.png` (Qwen docs' form) -> `/data/a.png`; other paths as they are."""
    return path[len("file://") :] if path.startswith("file://") else path


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
    """System (optional) + user turn: the question's `<image>`/`<video>` tags become the media
    parts in place (EasyR1); without tags, one part per image, then per video, then the text."""
    text = template.format(question=_question(record))
    if TAG.search(text):
        content = split_text(text)  # counts were checked against the media when it was read
    else:
        content = [{"type": "image"} for _ in range(num_images)]
        content += [{"type": "video"} for _ in range(num_videos)]
        content.append({"type": "text", "text": text})
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


def prompting(data_cfg: Any) -> dict[str, Any]:
    """The keys of `data` that `convert` reads, read once: an OmegaConf lookup costs ~50 us, a
    lookup in this dict nothing, and `convert` runs once per record."""
    keys = ("prompt_template", "system_prompt", "boxes")
    return {key: data_cfg.get(key) for key in keys}


def convert(record: Record, kind: str, data_cfg: Any) -> dict:
    """The record's example for `kind` under `data_cfg` (the `data` node, or its `prompting`:
    the prompt template, system prompt and `boxes`), converted once per run: later calls (the
    data check, then the data set the trainer reads) get the same example. Raises DataError
    for a record that cannot convert."""
    if kind not in record.examples:
        record.examples[kind] = to_example(
            record,
            kind,
            data_cfg.get("prompt_template") or "{question}",
            data_cfg.get("system_prompt"),
            data_cfg.get("boxes"),
        )
    return record.examples[kind]


def to_example(
    record: Record, kind: str, template: str, system: str | None, boxes: Any = None
) -> dict:
    """The trainer-facing example for `kind` (sft, dpo, grpo or kto; a KTO record is either
    labelled, `label` true/false with one completion, or a chosen/rejected pair).

    `boxes` (the `data.boxes` config): `gold: true` puts the gold boxes of reward columns
    (`box`, a box `solution`) in the model family's frame, `rescale: true` the boxes in the
    targets (see `vlexp.data.boxes`).
    """
    images = image_paths(record)
    videos = video_paths(record)
    media = {"images": images, "videos": videos} if videos else {"images": images}
    fields = record.fields
    if "messages" in fields or isinstance(fields.get("prompt"), list):
        example = _conversational(record, kind, images, boxes)
        return {**example, **media}
    edit = _target_edit(record, images, boxes)
    prompt = prompt_messages(record, len(images), template, system, len(videos))
    spec = schema.of(kind)
    example = {"prompt": prompt, **media}
    for target in spec.targets_for(fields):
        example[target.column] = assistant(edit(_text(record, target.source(fields))))
    if spec.labelled and "label" in fields:
        example["label"] = _label(record)
    if spec.rewards:
        columns = passthrough(record, drop=("prompt", "chosen", "rejected"))
        example = {**_gold(columns, record, boxes), **example}
    return example


def _gold(columns: dict, record: Record, boxes: Any) -> dict:
    return rescale_gold(columns, record.source, image_paths(record), boxes)


def _target_edit(record: Record, images: list, boxes: Any):
    return target_edit(record.source, images, boxes)


def _conversational(record: Record, kind: str, images: list, boxes: Any) -> dict:
    fields, edit = record.fields, _target_edit(record, images, boxes)
    spec = schema.of(kind)
    if spec.messages_prompt and "messages" in fields and "prompt" not in fields:
        fields = messages_as_prompt(record)
    keep = spec.form(fields)
    if keep is None:
        raise DataError(f"{record.source}: {spec.missing}")

    example, placeholders = {}, 0
    try:
        for key in keep:
            turns, images, count = normalise(
                fields[key], images, key, lambda p: resolve_image(record, p)
            )
            example[key] = map_texts(turns, schema.TARGET_ROLES[key], edit)
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
    if spec.rewards:
        columns = passthrough(Record(record.source, fields, record.image_dir), drop=_TURN_KEYS)
        example.update(_gold(columns, record, boxes))
    if spec.labelled and "completion" in example:
        example["label"] = _label(record)
    return {**example, "images": images}


def _label(record: Record) -> bool:
    value = record.fields.get("label")
    if not isinstance(value, bool):
        raise DataError(
            f"{record.source}: 'label' must be true (a desirable completion) or false "
            f"(an undesirable one), got {value!r:.40}"
        )
    return value


_TURN_KEYS = ("prompt", "chosen", "rejected", "completion")


def messages_as_prompt(record: Record) -> dict:
    """A `messages` record as a prompt (GRPO): the turns up to the last user turn (ms-swift drops
    the answer after it); without a `solution`, that answer's text is the solution (VLM-R1
    reads its `conversations` this way)."""
    fields, messages = dict(record.fields), record.fields["messages"]
    try:
        cut = last_user(messages, "messages") + 1
    except FormatError as err:
        raise DataError(f"{record.source}: {err}") from None
    fields["prompt"] = messages[:cut]
    answer = [_content_text(m.get("content")) for m in messages[cut:] if isinstance(m, dict)]
    if "solution" not in fields and any(answer):
        fields["solution"] = "".join(answer)
    return fields


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return ""
