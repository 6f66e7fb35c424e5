"""LLaMA-Factory's alpaca and sharegpt records (also Qwen-VL finetune's and VLM-R1's
`conversations`), read as LLaMA-Factory's `converter.py` reads them, and its `dataset_info.json`.

    {"conversations": [{"from": "human", "value": "<image>Who is he?"},
                       {"from": "gpt", "value": "Thomas Muller."}], "images": ["2.jpg"]}
    {"instruction": "Describe it.", "input": "", "output": "A cat.", "images": ["1.jpg"]}

A `dataset_info.json` entry names the file (relative to the json's folder, where media paths
resolve too, as LLaMA-Factory's `media_dir` defaults to it), the formatting, `ranking`, the
column names (`columns`) and the role keys and values (`tags`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlexp.data.formats.errors import FormatError

# LLaMA-Factory's DatasetAttr defaults (src/llamafactory/data/parser.py).
COLUMNS = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "history": "history",
    "messages": "conversations",
    "system": "system",
    "images": "images",
    "videos": "videos",
    "chosen": "chosen",
    "rejected": "rejected",
}
TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
# The same, for turns written with OpenAI's keys (LLaMA-Factory's mllm_demo `tags`).
OPENAI_TAGS = {**TAGS, "role_tag": "role", "content_tag": "content"}
OPENAI_TAGS |= {"user_tag": "user", "assistant_tag": "assistant"}


@dataclass
class Entry:
    """One `dataset_info.json` entry (or the defaults, for a file read without one)."""

    formatting: str = "alpaca"
    ranking: bool = False
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def load_entry(info_path: str | Path, name: str) -> tuple[Path, Entry, Path]:
    """(data file, entry, media folder) for the data set `name` of a `dataset_info.json` (or its folder)."""
    from vlexp.data.errors import DataError

    path = Path(info_path).expanduser()
    if path.is_dir():
        path = path / "dataset_info.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"data.dataset_info: cannot read {path} ({err})") from None
    if name not in info:
        raise DataError(f"{path}: no data set named {name!r} (it has: {', '.join(sorted(info))})")
    attr = info[name]
    if "file_name" not in attr:
        hub = attr.get("hf_hub_url") or attr.get("ms_hub_url") or attr.get("script_url")
        raise DataError(
            f"{path}: {name!r} is not a local file ({hub}): load hub data sets with data=hf "
            f"data.name={hub}"
        )
    entry = Entry(
        formatting=attr.get("formatting", "alpaca"),
        ranking=bool(attr.get("ranking", False)),
        columns=dict(attr.get("columns") or {}),
        tags=dict(attr.get("tags") or {}),
    )
    return path.parent / attr["file_name"], entry, path.parent


def _column(fields: dict, entry: Entry, name: str) -> Any:
    return fields.get(entry.columns.get(name, COLUMNS[name]))


def _media(fields: dict, entry: Entry) -> dict:
    out = {}
    for name in ("images", "videos"):
        value = _column(fields, entry, name)
        if value is not None:
            out[name] = value if isinstance(value, list) else [value]
    # Qwen-VL finetune and VLM-R1: "image" (a path or a list), "video" (one video).
    if "images" not in out and fields.get("image") is not None:
        image = fields["image"]
        out["images"] = image if isinstance(image, list) else [image]
    if "videos" not in out and fields.get("video") is not None:
        out["video"] = fields["video"]
    return out


def _rest(fields: dict, entry: Entry, used: set[str]) -> dict:
    """Columns no role reads (ids, `solution`, ...): passed on for the rewards."""
    used = used | {entry.columns.get(k, v) for k, v in COLUMNS.items()} | {"image", "video"}
    return {k: v for k, v in fields.items() if k not in used}


def alpaca(fields: dict, entry: Entry | None = None) -> dict:
    """instruction (+ "\\n" + input) is the user turn, output the answer; history before it."""
    entry = entry or Entry()
    messages = []
    system = _column(fields, entry, "system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    for pair in _column(fields, entry, "history") or []:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise FormatError(
                "history", "wrong type", "'history' must be [[question, answer], ...]"
            )
        messages += [
            {"role": "user", "content": pair[0]},
            {"role": "assistant", "content": pair[1]},
        ]
    query = [_column(fields, entry, k) for k in ("prompt", "query")]
    messages.append({"role": "user", "content": "\n".join(q for q in query if q)})
    out = {**_rest(fields, entry, set()), **_media(fields, entry)}
    chosen, rejected = _column(fields, entry, "chosen"), _column(fields, entry, "rejected")
    if isinstance(chosen, str) and isinstance(rejected, str):
        answer = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
        return {**out, "prompt": messages, "chosen": answer(chosen), "rejected": answer(rejected)}
    response = _column(fields, entry, "response")
    if isinstance(response, str):
        messages.append({"role": "assistant", "content": response})
    return {**out, "messages": messages}


def turn_tags(turns: Any, entry: Entry | None) -> dict[str, str]:
    """The role keys/values: the entry's `tags`, else guessed from the first turn's keys."""
    if entry is not None and entry.tags:
        return {**TAGS, **entry.tags}
    first = turns[0] if isinstance(turns, list) and turns else {}
    return OPENAI_TAGS if isinstance(first, dict) and "role" in first else TAGS


def sharegpt(fields: dict, entry: Entry | None = None) -> dict:
    """`conversations` turns (`from`/`value`: human, gpt, system, observation, function_call)."""
    entry = entry or Entry(formatting="sharegpt")
    key = entry.columns.get(
        "messages", "conversations" if "conversations" in fields else "messages"
    )
    turns = fields.get(key)
    tags = turn_tags(turns, entry)
    if not isinstance(turns, list) or not turns:
        raise FormatError(key, "wrong type", f"'{key}' must be a non-empty list of turns")
    roles = {
        tags["user_tag"]: "user",
        tags["assistant_tag"]: "assistant",
        tags["system_tag"]: "system",
        tags["observation_tag"]: "tool",
        tags["function_tag"]: "assistant",
    }
    messages = [_turn(turn, number, key, tags, roles) for number, turn in enumerate(turns)]
    system = _column(fields, entry, "system")
    if isinstance(system, str) and system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    out = {**_rest(fields, entry, {key}), **_media(fields, entry)}
    chosen, rejected = _column(fields, entry, "chosen"), _column(fields, entry, "rejected")
    if isinstance(chosen, dict) and isinstance(rejected, dict):
        pair = {
            name: [_turn(turn, 0, name, tags, roles)]
            for name, turn in (("chosen", chosen), ("rejected", rejected))
        }
        return {**out, "prompt": messages, **pair}
    return {**out, "messages": messages}


def _turn(turn: Any, number: int, key: str, tags: dict, roles: dict) -> dict:
    role_key, content_key = tags["role_tag"], tags["content_tag"]
    if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
        raise FormatError(
            key,
            "wrong type",
            f"'{key}'[{number}] needs '{role_key}' and '{content_key}' (LLaMA-Factory's tags; "
            'set them in dataset_info.json\'s "tags")',
        )
    if turn[role_key] not in roles:
        raise FormatError(
            key,
            "unknown role",
            f"'{key}'[{number}]: role {turn[role_key]!r} is none of {', '.join(roles)}",
        )
    return {"role": roles[turn[role_key]], "content": turn[content_key]}
