"""Conversational records: normalise messages the way TRL and the Qwen docs write them.

Two image conventions are accepted and turned into one, TRL's:

* TRL: `{"images": ["a.png"], "messages": [{"role": "user", "content": [{"type": "image"},
  {"type": "text", "text": "..."}]}, ...]}`: placeholders in the turns, files in `images`.
* Qwen docs: `{"type": "image", "image": "file:///data/a.png"}` parts inside the turns; the
  paths are moved, in order, into `images` and the parts become placeholders.

Content given as a plain string becomes one text part (and, as TRL does, the record's images
are placed before the first user turn's text when no turn has a placeholder), so every row of
a data set has the same shape: Arrow cannot store a column whose rows mix strings and lists.
"""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant", "tool")


class MessageError(ValueError):
    """A malformed conversation; the caller adds the record's `file:line`."""


def normalise(messages: Any, images: list, key: str, resolve: Any) -> tuple[list[dict], list, int]:
    """(messages with list content and bare image placeholders, images, placeholder count).

    `images` are the record's `images` entries; inline Qwen-style image parts are resolved
    with `resolve(path)` and appended to them in order of appearance.
    """
    if not isinstance(messages, list) or not messages:
        raise MessageError(f"'{key}' must be a non-empty list of messages")
    out, inline, placeholders = [], [], 0
    for number, message in enumerate(messages):
        where = f"'{key}'[{number}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise MessageError(f"{where} needs a 'role' out of {', '.join(ROLES)}")
        content = message.get("content")
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            parts = []
            for part in content:
                part, source = _part(part, where)
                placeholders += part["type"] == "image"
                if source is not None:
                    inline.append(resolve(source))
                parts.append(part)
        else:
            raise MessageError(f"{where}: 'content' must be a string or a list of parts")
        out.append({"role": message["role"], "content": parts})
    if inline and images:
        raise MessageError(
            "images are given both inside the messages and in 'images': use one of the two"
        )
    return out, images + inline, placeholders


def _part(part: Any, where: str) -> tuple[dict, str | None]:
    """A content part without payload keys, plus the inline image path if it had one."""
    if isinstance(part, str):
        return {"type": "text", "text": part}, None
    if not isinstance(part, dict) or "type" not in part:
        raise MessageError(f"{where}: each content part needs a 'type' (text or image)")
    if part["type"] == "text":
        if not isinstance(part.get("text"), str):
            raise MessageError(f"{where}: a text part needs a 'text' string")
        return {"type": "text", "text": part["text"]}, None
    if part["type"] == "image":
        source = part.get("image")
        if source is not None and not isinstance(source, str):
            raise MessageError(f"{where}: an inline image must be a path string")
        if isinstance(source, str) and source.startswith("file://"):
            source = source[len("file://") :]
        return {"type": "image"}, source
    if part["type"] == "video":
        # Inline videos were moved to the record's `videos` when it was read (hoist_inline_media).
        return {"type": "video"}, None
    return dict(part), None  # other parts: passed on untouched


def place_images(messages: list[dict], count: int) -> list[dict]:
    """Put `count` placeholders before the first user turn's text (TRL's rule for bare text)."""
    for message in messages:
        if message["role"] == "user":
            message["content"] = [{"type": "image"} for _ in range(count)] + message["content"]
            return messages
    raise MessageError("the record has images but no user turn to show them in")


def video_placeholders(messages: list[dict]) -> int:
    """How many video parts the (normalised) turns hold."""
    return sum(
        1
        for message in messages
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "video"
    )


def assistant_texts(messages: list[dict]) -> list[str]:
    """The text of every assistant turn (what the SFT loss trains on)."""
    return [
        part["text"]
        for message in messages
        if message["role"] == "assistant"
        for part in message["content"]
        if part.get("type") == "text"
    ]


def map_texts(messages: list[dict], roles: tuple[str, ...], edit: Any) -> list[dict]:
    """Apply `edit(text)` to the text parts of the turns with one of `roles`."""
    for message in messages:
        if message["role"] in roles:
            for part in message["content"]:
                if part.get("type") == "text":
                    part["text"] = edit(part["text"])
    return messages


CONVERSATION_KEYS = ("messages", "prompt", "completion", "chosen", "rejected")


def hoist_inline_media(fields: dict) -> dict:
    """`hoist_inline_images`, then the same for videos (see `hoist_inline_videos`)."""
    return hoist_inline_videos(hoist_inline_images(fields))


def hoist_inline_videos(fields: dict) -> dict:
    """Qwen-style inline video parts (`{"type": "video", "video": "file:///a.mp4"}` or a list of
    frame paths) become bare placeholders and their videos join `videos`; a record with videos
    but no video part gets them before its first user turn's text (after any image parts)."""
    keys = [k for k in CONVERSATION_KEYS if isinstance(fields.get(k), list)]
    parts = media_parts(fields, keys, "video")
    inline = [p["video"] for p in parts if isinstance(p.get("video"), str | list)]
    if inline and fields.get("videos") is None and fields.get("video") is None:
        fields["videos"] = [_strip_file_scheme(video) for video in inline]
        for part in parts:
            part.pop("video", None)
    videos = fields.get("videos", [fields["video"]] if fields.get("video") is not None else None)
    count = len(videos) if isinstance(videos, list) else 0
    if keys and count and not parts:
        _place_before_text(fields[keys[0]], [{"type": "video"} for _ in range(count)])
    return fields


def media_parts(fields: dict, keys: list[str], kind: str) -> list[dict]:
    """Every `{"type": kind, ...}` content part of the conversations under `keys`."""
    return [
        part
        for key in keys
        for message in fields[key]
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == kind
    ]


def _strip_file_scheme(video: str | list) -> str | list:
    if isinstance(video, list):
        return [f.removeprefix("file://") if isinstance(f, str) else f for f in video]
    return video.removeprefix("file://")


def _place_before_text(messages: list, new_parts: list[dict]) -> None:
    """Insert parts into the first user turn, after its image parts and before its text."""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            if isinstance(content, list):
                images = 0
                while images < len(content) and isinstance(content[images], dict):
                    if content[images].get("type") != "image":
                        break
                    images += 1
                message["content"] = content[:images] + new_parts + content[images:]
            return


def hoist_inline_images(fields: dict) -> dict:
    """A record in TRL's image convention, whatever convention it came in (done at read time,
    so the data check sees every image the run will open).

    Qwen-style inline parts (`{"type": "image", "image": "file:///a.png"}`) become bare
    placeholders and their paths join `images`; a record with images but no placeholder gets
    them before its first user turn's text, as TRL does for plain-string turns.
    """
    keys = [k for k in CONVERSATION_KEYS if isinstance(fields.get(k), list)]
    parts = media_parts(fields, keys, "image")
    inline = [p["image"] for p in parts if isinstance(p.get("image"), str)]
    # Both conventions at once stay as they are: the converter rejects them with a message.
    if inline and fields.get("images") is None and fields.get("image") is None:
        fields["images"] = [source.removeprefix("file://") for source in inline]
        for part in parts:
            part.pop("image", None)
    images = fields.get("images", fields.get("image"))
    count = len(images) if isinstance(images, list) else int(images is not None)
    if keys and count and not parts:
        for message in fields[keys[0]]:
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                text = [{"type": "text", "text": content}] if isinstance(content, str) else content
                if isinstance(text, list):
                    message["content"] = [{"type": "image"} for _ in range(count)] + text
                break
    return fields


def prompt_text(messages: Any) -> str:
    """A chat prompt as text, one line per turn, media as `<image>`/`<video>` where they sit
    (the W&B completions table, samples.jsonl and the eval gallery all show this).

    >>> prompt_text([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}])
    'user: <image>How many?'
    """
    if not isinstance(messages, list):
        return str(messages)
    lines = []
    for message in messages:
        content = message.get("content", "")
        if isinstance(content, list):
            content = "".join(
                part.get("text", "") if part.get("type") == "text" else f"<{part.get('type')}>"
                for part in content
            )
        lines.append(f"{message.get('role', '')}: {content}")
    return "\n".join(lines)
