"""The record formats users bring, detected from a record's keys and turned into vlexp's own
forms (prefix/suffix, or TRL's conversational `messages` / `prompt` + `completion` / `chosen`
+ `rejected`), once, when the record is read. Adding a format is adding a reader here.

`data.format` names one when detection is ambiguous (or to insist on one); `data.columns`
renames a file's columns to the names a format uses before anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vlexp.data.formats import llamafactory, problem, swift
from vlexp.data.formats.errors import FormatError
from vlexp.data.formats.tags import split_conversation_tags

__all__ = ["FORMATS", "FormatError", "detect", "normalise"]


@dataclass(frozen=True)
class Format:
    label: str  # who writes records like this
    keys: tuple[str, ...]  # keys that identify it (any one is enough to detect it)
    required: tuple[tuple[str, ...], ...]  # one key out of each group must be present
    optional: frozenset[str]
    read: Callable[[dict], dict]


MEDIA = frozenset({"image", "images", "video", "videos", "id", "system"})
ANSWERS = frozenset({"solution", "answer", "ground_truth", "box", "choices"})


def _messages(fields: dict) -> dict:
    turns = fields.get("messages")
    if isinstance(turns, list) and turns and isinstance(turns[0], dict) and "from" in turns[0]:
        return llamafactory.sharegpt(fields)  # LLaMA-Factory sharegpt under a `messages` column
    if any(key in fields for key in swift.REJECTED_KEYS):
        return swift.preference(fields)
    return fields


FORMATS: dict[str, Format] = {
    "sharegpt": Format(
        "conversations from/value (LLaMA-Factory sharegpt, Qwen-VL finetune, VLM-R1)",
        ("conversations",),
        (("conversations",),),
        MEDIA | ANSWERS | {"chosen", "rejected", "tools"},
        llamafactory.sharegpt,
    ),
    "messages": Format(
        "messages (TRL, ms-swift, LLaMA-Factory openai)",
        ("messages",),
        (("messages",),),
        MEDIA | ANSWERS | set(swift.REJECTED_KEYS) | {"tools", "label"},
        _messages,
    ),
    "conversational": Format(
        "prompt + completion / chosen + rejected turns (TRL)",
        (),
        (("prompt",), ("completion", "chosen")),
        MEDIA | ANSWERS | {"rejected"},
        lambda fields: fields,
    ),
    "alpaca": Format(
        "instruction/input/output (LLaMA-Factory alpaca)",
        ("instruction",),
        (("instruction",), ("output", "chosen")),
        MEDIA | ANSWERS | {"input", "history", "rejected"},
        llamafactory.alpaca,
    ),
    "query_response": Format(
        "query/response (ms-swift)",
        ("query",),
        (("query",), ("response",)),
        MEDIA | ANSWERS | {"history", "system_prompt"},
        swift.query_response,
    ),
    "problem": Format(
        "question + answer rows (vlexp prefix/suffix, R1-V, VLM-R1, Visual-RFT, EasyR1, open-r1)",
        problem.QUESTION_KEYS,
        (problem.QUESTION_KEYS,),
        MEDIA | ANSWERS | {"suffix", "rejected", "chosen", "image_path"},
        problem.problem_row,
    ),
    "standard": Format(
        "prompt/completion strings (TRL standard)",
        (),
        (("prompt",),),
        MEDIA | ANSWERS | {"completion", "chosen", "rejected"},
        problem.standard,
    ),
}


def detect(fields: dict) -> str | None:
    """The format a record is in, from its keys (None when no format fits)."""
    for name, spec in FORMATS.items():
        if any(key in fields for key in spec.keys):
            return name
    if isinstance(fields.get("prompt"), list):
        return "conversational"
    if isinstance(fields.get("prompt"), str):
        return "standard"
    return None


def closest(fields: dict) -> FormatError:
    """Why no format fits: the closest one, and the keys it misses or does not read."""

    def fit(spec: Format) -> tuple[list[tuple[str, ...]], list[str]]:
        missing = [group for group in spec.required if not any(k in fields for k in group)]
        known = set(spec.optional) | {k for group in spec.required for k in group}
        return missing, sorted(k for k in fields if k not in known)

    name = min(FORMATS, key=lambda n: tuple(len(part) for part in fit(FORMATS[n])))
    missing, unexpected = fit(FORMATS[name])
    detail = (
        f"no known record format fits the keys {sorted(fields)}; closest: {FORMATS[name].label}"
    )
    if missing:
        detail += ", which needs " + ", ".join(" or ".join(map(repr, g)) for g in missing)
    if unexpected:
        detail += f"; it does not read {', '.join(map(repr, unexpected))}"
    if not missing and not unexpected and "prompt" in fields:
        # The keys fit; TRL's forms are told apart by the prompt's type.
        detail += (
            f"; 'prompt' is {type(fields['prompt']).__name__}: a string (TRL standard) or a "
            "list of turns (TRL conversational) is read"
        )
        return FormatError("prompt", "wrong type", detail)
    detail += " (rename columns with data.columns={old: new}, or set data.format)"
    if missing:
        return FormatError(missing[0][0], "missing field", detail)
    return FormatError("record", "unknown format", detail)


def normalise(
    fields: dict, name: str | None = None, reader: Callable | None = None
) -> tuple[dict, str]:
    """(the record in vlexp's form, its format name); raises FormatError.

    `name` (data.format) skips detection; `reader` (a dataset_info.json entry's) replaces the
    format's own reader.
    """
    fields = {k: v for k, v in fields.items() if v is not None}  # hub rows: absent = None
    name = name or detect(fields)
    if name is None:
        raise closest(fields)
    if name not in FORMATS:
        raise FormatError(
            "record", "unknown format", f"data.format={name!r} is none of {list(FORMATS)}"
        )
    converted = (reader or FORMATS[name].read)(fields)
    return split_conversation_tags(converted), name
