"""`python -m vlexp.check_data ... --show N`: records as the trainer gets them.

For each record: the chat text exactly as the model's chat template renders it, each image's
pad token shown once with its count (`<|image_pad|>x16`) and the image's size before and
after the processor's resize; then what the record trains on: the text the loss covers (SFT,
DPO: chosen and rejected) or the columns each reward receives (GRPO).
"""

from __future__ import annotations

from typing import Any

from vlexp.data import schema
from vlexp.data.boxes import resized_size
from vlexp.data.images import image_tokens, processor_geometry

PAD = "<|image_pad|>"


def show(dataset: Any, processor: Any, kind: str, count: int, needs: dict[str, list[str]]) -> str:
    blocks = []
    for index in range(min(count, len(dataset))):
        row = dataset[index]
        blocks.append(f"--- record {index} ---\n" + describe(row, processor, kind, needs))
    return "\n".join(blocks)


def describe(row: dict, processor: Any, kind: str, needs: dict[str, list[str]]) -> str:
    factor, low, high = processor_geometry(processor)
    images = row.get("images") or []
    sizes = [image.size for image in images]
    tokens = [image_tokens(w, h, factor, low, high) for w, h in sizes]
    lines = []
    for number, ((w, h), n) in enumerate(zip(sizes, tokens, strict=True)):
        rw, rh = resized_size(w, h, low, high, factor)
        lines.append(f"image {number}: {w}x{h} px, resized to {rw}x{rh}: {n} tokens")
    render = lambda turns, gen: compact(template(processor, turns, gen), tokens)  # noqa: E731
    if schema.of(kind).rewards:
        lines.append(render(row["prompt"], True))
        for reward, columns in needs.items():
            given = ", ".join(f"{c}={row.get(c)!r}" for c in columns)
            lines.append(f"reward {reward} receives: {given}")
    elif "messages" in row:
        lines.append(render(row["messages"], False))
        lines += [f"loss on: {span!r}" for span in assistant_spans(processor, row["messages"])]
    else:
        prompt = render(row["prompt"], True)
        lines.append(prompt)
        for key in ("completion", "chosen", "rejected"):
            if key in row and row[key] is not None:
                full = render(row["prompt"] + row[key], False)
                lines.append(f"loss on ({key}): {full[len(prompt) :]!r}")
    return "\n".join(lines)


def template(processor: Any, turns: list, generation: bool) -> str:
    return processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation)


def compact(text: str, tokens: list[int]) -> str:
    """Each image's one pad placeholder, followed by the count the processor expands it to."""
    pieces = text.split(PAD)
    out = pieces[0]
    for number, piece in enumerate(pieces[1:]):
        count = tokens[number] if number < len(tokens) else "?"
        out += f"{PAD}x{count}{piece}"
    return out


def assistant_spans(processor: Any, messages: list) -> list[str]:
    """The text of each assistant turn as rendered (what TRL's assistant mask covers)."""
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = template(processor, messages[:index], True)
        through = template(processor, messages[: index + 1], False)
        spans.append(through[len(before) :] if through.startswith(before) else through)
    return spans
