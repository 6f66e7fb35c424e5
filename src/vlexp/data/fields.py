"""Per-record checks that need no files: required fields and types for each algorithm.

Each function returns the record's first problem as a BadRecord, or None when it is fine.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from vlexp.data import schema
from vlexp.data.records import (
    QUESTION_KEYS,
    BadRecord,
    Record,
    video_entries,
)


def _type(value: Any) -> str:
    return "missing" if value is None else f"got {type(value).__name__}"


def _bad(record: Record, field: str, reason: str, detail: str) -> BadRecord:
    return BadRecord(record.source, field, reason, detail)


def _image_parts(messages: Any, kind: str = "image") -> int:
    if not isinstance(messages, list):
        return 0
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(1 for p in content if isinstance(p, dict) and p.get("type") == kind)
    return count


def _image_entry(item: Any) -> bool:
    """A path (or URL) string, or a data set's `{"bytes", "path"}` image (data=hf)."""
    if isinstance(item, dict):
        return bool(item.get("bytes") or item.get("path"))
    return isinstance(item, str) and bool(item)


def _video_problem(record: Record) -> BadRecord | None:
    """`video` is a path or a list of frame paths; `videos` a list of such."""
    fields = record.fields
    key = "video" if "video" in fields else "videos"
    value = fields.get(key)
    if value is None:
        return None
    items = [value] if key == "video" else value if isinstance(value, list) else [None]

    def one_video(item: Any) -> bool:
        if isinstance(item, list):
            return bool(item) and all(isinstance(f, str) and f for f in item)
        return isinstance(item, str) and bool(item)

    if not all(one_video(item) for item in items):
        detail = f"'{key}' must be a video path or a list of frame paths" + (
            " (or a list of those)" if key == "videos" else ""
        )
        return _bad(record, key, "wrong type", detail)
    return None


def _messages_problem(record: Record, key: str) -> BadRecord | None:
    value = record.fields.get(key)
    ok = (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in value
        )
    )
    if not ok:
        return _bad(
            record, key, "wrong type", f"'{key}' must be a list of {{role, content}} messages"
        )
    return None


def structure(record: Record, kind: str) -> BadRecord | None:
    """Required fields and types for `kind` (sft | dpo | grpo), in either record form, as the
    kind's table in `vlexp.data.schema` says (the converter reads the same table; what it
    still rejects, the data check reports from the one conversion, `records.convert`)."""
    fields = record.fields
    for one, many in (("image", "images"), ("video", "videos")):
        if fields.get(one) is not None and fields.get(many) is not None:
            detail = f"both '{one}' and '{many}' are given (one would be ignored): keep one"
            return _bad(record, many, "ambiguous", detail)
    images = fields.get("images", fields.get("image"))
    image_key = "images" if "images" in fields else "image"
    if images is not None:
        items = images if isinstance(images, list) else [images]
        if not all(_image_entry(i) for i in items):
            detail = f"'{image_key}' must be a path (or URL) string or a list of them"
            return _bad(record, image_key, "wrong type", detail)
    problem = _video_problem(record)
    if problem:
        return problem
    if "id" in fields and not isinstance(fields["id"], str | int):
        return _bad(
            record, "id", "wrong type", f"'id' must be a string or a number ({_type(fields['id'])})"
        )
    conversational = "messages" in fields or isinstance(fields.get("prompt"), list)
    return _conversational(record, kind) if conversational else _prefix_suffix(record, kind)


def _prefix_suffix(record: Record, kind: str) -> BadRecord | None:
    fields = record.fields
    present = [k for k in QUESTION_KEYS if k in fields]
    if not present:
        detail = f"no question: give one of {', '.join(QUESTION_KEYS)}"
        return _bad(record, "prefix", "missing field", detail)
    if not isinstance(fields[present[0]], str):
        detail = f"'{present[0]}' must be a string ({_type(fields[present[0]])})"
        return _bad(record, present[0], "wrong type", detail)
    for key in (target.source(fields) for target in schema.of(kind).targets_for(fields)):
        if not isinstance(fields.get(key), str):
            reason = "missing field" if fields.get(key) is None else "wrong type"
            detail = f"'{key}' must be a string ({_type(fields.get(key))})"
            if key == "suffix" and reason == "missing field":
                detail += (
                    ": SFT trains on 'suffix' (the target); rename your answer column, e.g. "
                    "data.columns={answer: suffix}"
                )
            return _bad(record, key, reason, detail)
    return None


def _conversational(record: Record, kind: str) -> BadRecord | None:
    fields, spec = record.fields, schema.of(kind)
    keys = spec.form(fields)
    if keys is None and spec.messages_prompt and "messages" in fields:
        keys = ("messages",)  # the turns up to the last user turn are the prompt
    if keys is None:
        # the columns of the closest accepted form that the record lacks
        form = max(spec.forms, key=lambda f: sum(k in fields for k in f))
        missing = next(k for k in form if k not in fields)
        return _bad(record, missing, "missing field", spec.missing)
    for key in keys:
        problem = _messages_problem(record, key)
        if problem:
            return problem
    problem = _part_types(record, keys) or _prompt_end(record)
    if problem:
        return problem
    parts = sum(_image_parts(fields.get(k)) for k in keys)
    images = fields.get("images", fields.get("image"))
    count = 0 if images is None else len(images) if isinstance(images, list) else 1
    if parts != count:
        # The processor would fail with "Image features and image tokens do not match".
        detail = f"{parts} image part(s) in the messages but {count} image(s) in 'images'"
        return _bad(record, "images", "image count mismatch", detail)
    video_parts = sum(_image_parts(fields.get(k), "video") for k in keys)
    videos = len(video_entries(record))
    if video_parts != videos:
        detail = (
            f"{video_parts} video part(s) in the messages but {videos} video(s) in 'video'/'videos'"
        )
        return _bad(record, "videos", "video count mismatch", detail)
    return None


PART_TYPES = ("text", "image", "video")


def _part_types(record: Record, keys: tuple[str, ...]) -> BadRecord | None:
    """Only text, image and video parts: others (OpenAI's `image_url`) reach no processor."""
    for key in keys:
        for number, message in enumerate(record.fields.get(key) or []):
            content = message.get("content") if isinstance(message, dict) else None
            for part in content if isinstance(content, list) else []:
                kind = part.get("type") if isinstance(part, dict) else "text"
                if kind in PART_TYPES:
                    continue
                hint = (
                    ': write {"type": "image", "image": "path"} (or a placeholder '
                    '{"type": "image"} plus the path in "images")'
                    if kind in ("image_url", "input_image")
                    else ""
                )
                detail = (
                    f"'{key}'[{number}] has a content part of type {kind!r}; parts are "
                    f"{', '.join(PART_TYPES)}{hint}"
                )
                return _bad(record, key, "unsupported part", detail)
    return None


def _prompt_end(record: Record) -> BadRecord | None:
    """A `prompt` must end with the turn the model answers, not with the assistant's own."""
    prompt = record.fields.get("prompt")
    last = prompt[-1] if isinstance(prompt, list) and prompt else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        detail = (
            f"'prompt' ends with an assistant turn ({len(prompt)} turns): the model writes the "
            "next assistant turn, so the prompt must end with a user (or system/tool) turn; "
            "move the answer to 'completion' / 'chosen'"
        )
        return _bad(record, "prompt", "prompt ends with assistant", detail)
    return None


def sft_target(record: Record, example: dict) -> BadRecord | None:
    """An SFT record must have a non-blank target: assistant turns (messages form) or the
    completion. Without one it adds nothing but a loss of 0.0."""
    from vlexp.data.messages import assistant_texts

    turns = example.get("messages", example.get("completion")) or []
    texts = assistant_texts(turns)
    if any(text.strip() for text in texts):
        return None
    key = "messages" if "messages" in example else "suffix"
    if "completion" in record.fields:
        key = "completion"
    what = "no assistant turn" if not texts else "only empty assistant text"
    detail = f"no target to train on ({what}): SFT learns the assistant's text; add it"
    return _bad(record, key, "no target", detail)


def dpo_pair(record: Record, example: dict) -> BadRecord | None:
    if example.get("chosen") == example.get("rejected"):
        detail = "chosen and rejected are identical: the pair carries no preference"
        return _bad(record, "rejected", "chosen equals rejected", detail)
    return None


def kto_record(record: Record, example: dict) -> BadRecord | None:
    """A KTO pair (to be split into two labelled rows) must carry a preference too."""
    return None if "label" in example else dpo_pair(record, example)


def reward_columns(record: Record, example: dict, needs: dict[str, list[str]]) -> BadRecord | None:
    for reward, columns in needs.items():
        for column in columns:
            value = example.get(column)
            if value is None:
                keys = ", ".join(sorted(k for k in record.raw_keys or record.fields))
                detail = (
                    f"missing '{column}', which reward '{reward}' needs (its parameter); the "
                    f"record has {keys}: rename the column that holds it, e.g. "
                    f"data.columns={{answer: {column}}}"
                )
                return _bad(record, column, "missing field", detail)
            if _blank(value):
                detail = f"'{column}' is empty ({value!r}); reward '{reward}' scores against it"
                return _bad(record, column, "empty field", detail)
    return None


_TAGS = re.compile(r"</?(answer|think|solution)>", re.I)


def _blank(value: Any) -> bool:
    """ "", "  ", "[]" (an empty list, JSON-encoded by the loader) or a list of blanks."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value) if value.lstrip().startswith("[") else None
        except json.JSONDecodeError:
            decoded = None
        # `<answer></answer>`: R1-V style solutions are unwrapped by the rewards.
        bare = _TAGS.sub("", value)
        return not bare.strip() or (isinstance(decoded, list) and _blank(decoded))
    if isinstance(value, list):
        return all(_blank(item) for item in value)
    return False


def duplicate_ids(records: list[Record]) -> dict[int, BadRecord]:
    """Index -> problem for every record whose `id` an earlier record already used."""
    first: dict[str, str] = {}
    bad = {}
    for index, record in enumerate(records):
        if "id" not in record.fields:
            continue
        # 1 and "1" are one id: a number and a string with the same text cannot be told apart
        # in file names, W&B tables or a CSV of results.
        key = str(record.fields["id"])
        if key in first:
            detail = f"id {record.fields['id']!r} already used at {first[key]}"
            bad[index] = _bad(record, "id", "duplicate id", detail)
        else:
            first[key] = record.source
    return bad


def column_type_conflicts(
    records: list[Record], examples: list[dict | None]
) -> dict[int, BadRecord]:
    """Extra columns (e.g. `solution`) must keep one JSON type: Arrow cannot mix str and int."""
    bad = {}
    types: dict[str, Counter] = {}
    for example in examples:
        for key, value in (example or {}).items():
            if key not in ("prompt", "images") and value is not None:
                types.setdefault(key, Counter())[type(value).__name__] += 1
    for index, (record, example) in enumerate(zip(records, examples, strict=True)):
        for key, value in (example or {}).items():
            counts = types.get(key)
            if counts is None or len(counts) < 2 or value is None:
                continue
            majority = counts.most_common(1)[0][0]
            if type(value).__name__ != majority:
                detail = (
                    f"'{key}' is {type(value).__name__} here but {majority} in "
                    f"{counts[majority]} other records: one column needs one type"
                )
                bad[index] = _bad(record, key, "wrong type", detail)
                break
    return bad


MEDIA_KEYS = ("image", "images", "video", "videos")


def texts(fields: dict, where: str = "") -> list[tuple[str, str]]:
    """(top-level key, text) for every string in the record but the media paths."""
    found = []
    for key, value in fields.items() if isinstance(fields, dict) else enumerate(fields):
        name = where or str(key)
        if not where and key in MEDIA_KEYS:
            continue
        if isinstance(value, str):
            found.append((name, value))
        elif isinstance(value, dict | list):
            found.extend(texts(value, name))
    return found
