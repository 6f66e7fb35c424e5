"""ms-swift's records (docs/source_en/Customization/Custom-dataset.md), read as its
`AutoPreprocessor` reads them.

    {"query": "What is 1 + 1?", "response": "2", "history": [["hi", "hello"]], "system": "..."}
    {"messages": [...], "images": ["kitten.png"], "rejected_response": "This is a puppy."}
    {"messages": [...], "images": [...], "rejected_messages": [...], "rejected_images": [...]}

A preference record keeps the conversation up to its last user turn as the prompt; the turns
after it are the chosen answer and `rejected_response` (a string or assistant turns) or the
turns after the last user turn of `rejected_messages` the rejected one.
"""

from __future__ import annotations

from typing import Any

from vlexp.data.formats.errors import FormatError

REJECTED_KEYS = ("rejected_response", "rejected_messages", "rejected_images")


def query_response(fields: dict) -> dict:
    """`system` + `history` pairs + `query` (user) + `response` (assistant) -> `messages`."""
    messages = []
    system = fields.get("system", fields.get("system_prompt"))
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    for pair in fields.get("history") or []:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise FormatError("history", "wrong type", "'history' must be [[query, response], ...]")
        messages += [
            {"role": "user", "content": pair[0]},
            {"role": "assistant", "content": pair[1]},
        ]
    messages.append({"role": "user", "content": fields["query"]})
    if isinstance(fields.get("response"), str):
        messages.append({"role": "assistant", "content": fields["response"]})
    skip = {"system", "system_prompt", "history", "query", "response"}
    return {**{k: v for k, v in fields.items() if k not in skip}, "messages": messages}


def last_user(messages: list, key: str) -> int:
    """Index of the last user turn (the prompt ends there)."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], dict) and messages[index].get("role") == "user":
            return index
    raise FormatError(key, "missing field", f"'{key}' has no user turn")


def preference(fields: dict) -> dict:
    """`messages` + `rejected_response` / `rejected_messages` -> prompt, chosen, rejected."""
    messages = fields["messages"]
    if not isinstance(messages, list):
        raise FormatError("messages", "wrong type", "'messages' must be a list of turns")
    cut = last_user(messages, "messages") + 1
    prompt, chosen = messages[:cut], messages[cut:]
    if not chosen:
        raise FormatError("messages", "missing field", "no assistant turn after the last user turn")
    rejected_images = fields.get("rejected_images")
    if rejected_images is not None and rejected_images != fields.get("images"):
        # TRL's DPO renders chosen and rejected on one prompt with one set of images.
        raise FormatError(
            "rejected_images",
            "unsupported field",
            "'rejected_images' differ from 'images': TRL's DPO shows both answers the same "
            "images; write the pair as two records or use the same images",
        )
    if "rejected_messages" in fields:
        other = fields["rejected_messages"]
        if not isinstance(other, list):
            raise FormatError(
                "rejected_messages", "wrong type", "'rejected_messages' must be turns"
            )
        other_cut = last_user(other, "rejected_messages") + 1
        if other[:other_cut] != prompt:
            raise FormatError(
                "rejected_messages",
                "unsupported field",
                "'rejected_messages' asks a different prompt than 'messages': TRL's DPO "
                "compares two answers to one prompt",
            )
        rejected = other[other_cut:]
    elif "rejected_response" in fields:
        rejected = _answer(fields["rejected_response"])
    else:
        raise FormatError(
            "rejected_response",
            "missing field",
            "'rejected_images' alone gives no rejected answer: add 'rejected_response'",
        )
    rest = {k: v for k, v in fields.items() if k not in (*REJECTED_KEYS, "messages")}
    return {**rest, "prompt": prompt, "chosen": chosen, "rejected": rejected}


def _answer(value: Any) -> list:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if isinstance(value, list) and value:
        return value
    raise FormatError(
        "rejected_response", "wrong type", "'rejected_response' must be a string or turns"
    )
