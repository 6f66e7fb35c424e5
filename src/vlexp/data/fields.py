"""Per-record checks that need no files: required fields and types for each algorithm.

Each function returns the record's first problem as a BadRecord, or None when it is fine.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from vlexp.data.records import (
    QUESTION_KEYS,
    BadRecord,
    DataError,
    Record,
    to_example,
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
    """Required fields and types for `kind` (sft | dpo | grpo), in either record form."""
    fields = record.fields
    images = fields.get("images", fields.get("image"))
    image_key = "images" if "images" in fields else "image"
    if images is not None:
        items = images if isinstance(images, list) else [images]
        if not all(isinstance(i, str) and i for i in items):
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
    problem = _conversational(record, kind) if conversational else _prefix_suffix(record, kind)
    if problem:
        return problem
    try:
        to_example(record, kind, "{question}", None)
    except DataError as err:  # anything the converter itself rejects
        return _bad(record, "record", "missing field", str(err).split(": ", 1)[-1])
    return None


def _prefix_suffix(record: Record, kind: str) -> BadRecord | None:
    fields = record.fields
    present = [k for k in QUESTION_KEYS if k in fields]
    if not present:
        detail = f"no question: give one of {', '.join(QUESTION_KEYS)}"
        return _bad(record, "prefix", "missing field", detail)
    if not isinstance(fields[present[0]], str):
        detail = f"'{present[0]}' must be a string ({_type(fields[present[0]])})"
        return _bad(record, present[0], "wrong type", detail)
    required = {"sft": ("suffix",), "dpo": ("rejected",), "grpo": (), "kto": ()}[kind]
    if kind == "kto" and "label" in fields:
        required = ("completion" if "completion" in fields else "suffix",)
    elif kind in ("dpo", "kto"):
        required = ("chosen" if "chosen" in fields else "suffix", "rejected")
    for key in required:
        if not isinstance(fields.get(key), str):
            reason = "missing field" if fields.get(key) is None else "wrong type"
            return _bad(record, key, reason, f"'{key}' must be a string ({_type(fields.get(key))})")
    return None


def _conversational(record: Record, kind: str) -> BadRecord | None:
    fields = record.fields
    if kind == "sft" and "messages" in fields:
        keys = ("messages",)
    else:
        keys = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected")}.get(
            kind, ("prompt",)
        )
        if kind == "kto":
            labelled = "label" in fields
            keys = ("prompt", "completion") if labelled else ("prompt", "chosen", "rejected")
    for key in keys:
        if key not in fields:
            return _bad(record, key, "missing field", f"{kind.upper()} records need '{key}'")
        problem = _messages_problem(record, key)
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
            if example.get(column) is None:
                detail = f"missing '{column}', which reward '{reward}' needs (its parameter)"
                return _bad(record, column, "missing field", detail)
    return None


def duplicate_ids(records: list[Record]) -> dict[int, BadRecord]:
    """Index -> problem for every record whose `id` an earlier record already used."""
    first: dict[str, str] = {}
    bad = {}
    for index, record in enumerate(records):
        if "id" not in record.fields:
            continue
        key = json.dumps(record.fields["id"])
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
