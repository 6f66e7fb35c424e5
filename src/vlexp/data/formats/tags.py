"""`<image>` / `<video>` tags in text, as LLaMA-Factory, ms-swift, Qwen-VL finetune, VLM-R1 and
EasyR1 write them: each tag becomes an image (video) part at the tag's place in its turn.

    {"role": "user", "content": "<image>Who are they?"}
    -> {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Who are they?"}]}

The text around a tag is kept exactly (Qwen-VL's `<image>\\nWhat...` keeps its newline), as the
peers replace the tag by the vision tokens in place. A record with tags must give one medium per
tag: the counts are checked, never guessed. Records without tags keep vlexp's rule (media first
in the first user turn, `vlexp.data.messages`).
"""

from __future__ import annotations

import re

from vlexp.data.formats.errors import FormatError

TAG = re.compile(r"<(image|video)>")
CONVERSATION_KEYS = ("messages", "prompt", "completion", "chosen", "rejected")


def split_text(text: str) -> list[dict]:
    """Text -> parts, one image/video part per tag; empty text between tags is dropped.

    >>> split_text("<image>\\nWhat is it?")
    [{'type': 'image'}, {'type': 'text', 'text': '\\nWhat is it?'}]
    """
    parts, start = [], 0
    for match in TAG.finditer(text):
        if match.start() > start:
            parts.append({"type": "text", "text": text[start : match.start()]})
        parts.append({"type": match.group(1)})
        start = match.end()
    if start < len(text):
        parts.append({"type": "text", "text": text[start:]})
    return parts


def count_tags(text: str, kind: str) -> int:
    return sum(1 for match in TAG.finditer(text) if match.group(1) == kind)


def _split_content(content: object) -> tuple[object, int, int]:
    """(content with tags split into parts, image tags, video tags)."""
    if isinstance(content, str):
        if not TAG.search(content):
            return content, 0, 0
        return split_text(content), count_tags(content, "image"), count_tags(content, "video")
    if not isinstance(content, list):
        return content, 0, 0
    parts, images, videos = [], 0, 0
    for part in content:
        text = part.get("text") if isinstance(part, dict) and part.get("type") == "text" else None
        if isinstance(text, str) and TAG.search(text):
            parts += split_text(text)
            images += count_tags(text, "image")
            videos += count_tags(text, "video")
        else:
            parts.append(part)
    return parts, images, videos


def media_count(fields: dict, medium: str) -> int:
    """How many images (videos) the record gives in `images`/`image` (`videos`/`video`)."""
    plural = f"{medium}s"
    value = fields.get(plural, fields.get(medium))
    if value is None:
        return 0
    if plural not in fields and medium == "video":
        return 1  # `video`: one video (a path, or a list of frame paths)
    return len(value) if isinstance(value, list) else 1


def split_conversation_tags(fields: dict) -> dict:
    """Tags in every conversation column become parts; tag counts must match the media."""
    found = {"image": 0, "video": 0}
    for key in CONVERSATION_KEYS:
        turns = fields.get(key)
        if not isinstance(turns, list):
            continue
        for message in turns:
            if isinstance(message, dict) and "content" in message:
                message["content"], images, videos = _split_content(message["content"])
                found["image"] += images
                found["video"] += videos
    check_counts(fields, found, "the turns")
    return fields


def check_counts(fields: dict, found: dict[str, int], where: str) -> None:
    for kind, tags in found.items():
        given = media_count(fields, kind)
        if tags and tags != given:
            raise FormatError(
                f"{kind}s",
                f"{kind} count mismatch",
                f"{tags} <{kind}> tag(s) in {where} but {given} {kind}(s) in '{kind}s'/'{kind}': "
                f"give one {kind} per tag",
            )
