"""`python -m vlexp.check_data ... --show N`: records as the trainer gets them.

For each record: the chat text exactly as the model's chat template renders it, each image's
and video's pad token shown once with its count (`<|image_pad|>x16`, `<|video_pad|>x32`), the
image's size before and after the processor's resize, and each video's sampled frames and
their resized size; then what the record trains on: the text the loss covers (SFT, DPO:
chosen and rejected) or the columns each reward receives (GRPO). With an environment
(`env=`) a GRPO record shows turn by turn: the prompt with the tools' schema, an example tool
call, the tool's result with its images, as a rollout adds them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlexp.data import schema, videos
from vlexp.data.images import token_counter
from vlexp.families import Family


@dataclass(frozen=True)
class Tools:
    """A run's environment, as `--show` renders it (`env=`): the tools whose schema the chat
    template writes into every prompt, the turns a rollout may add after a record's prompt
    (`vlexp.environments.example_turns`), and the limits said under them."""

    tools: list
    example: Callable[[dict], list[dict] | None]
    limits: str


def show(
    dataset: Any,
    processor: Any,
    kind: str,
    count: int,
    needs: dict[str, list[str]],
    budget: videos.Budget,
    family: Family,
    reads: dict[str, list[str]] | None = None,
    tools: Tools | None = None,
) -> str:
    """`budget`: the run's video sampling (`data.video`), which says each video's frames;
    `family`: the model's, which says what an image costs; `needs`: the columns each reward
    needs, `reads`: all it may read (`iou`: `box` or `solution`), shown when the record has
    them; `tools`: the run's environment (its prompts then show turn by turn)."""
    blocks = []
    for index in range(min(count, len(dataset))):
        row = dataset[index]
        text = describe(row, processor, kind, needs, budget, family, reads, tools)
        blocks.append(f"--- record {index} ---\n{text}")
    return "\n".join(blocks)


def describe(
    row: dict,
    processor: Any,
    kind: str,
    needs: dict[str, list[str]],
    budget: videos.Budget,
    family: Family,
    reads: dict[str, list[str]] | None = None,
    tools: Tools | None = None,
) -> str:
    images = row.get("images") or []
    sizes = [image.size for image in images]
    count = token_counter(processor, family)
    tokens = [count(w, h, len(sizes)) for w, h in sizes]
    lines = []
    for number, ((w, h), n) in enumerate(zip(sizes, tokens, strict=True)):
        lines.append(f"image {number}: {w}x{h} px, {resized(processor, family, w, h)}: {n} tokens")
    video_tokens = []
    for number, video in enumerate(row.get("videos") or []):
        loaded = videos.load(video, budget)
        video_tokens.append(loaded.tokens_for(processor))
        lines.append(f"video {number}: {video_line(video, loaded)}: {video_tokens[-1]} tokens")

    def render(turns: list, generation: bool) -> str:
        return compact(template(processor, turns, generation), family, tokens, video_tokens)

    if schema.of(kind).rewards and tools is not None:
        lines += rollout_turns(row, processor, family, tokens, tools)
        lines += received(row, needs, reads or {})
    elif schema.of(kind).rewards:
        lines.append(render(row["prompt"], True))
        lines += received(row, needs, reads or {})
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


def received(row: dict, needs: dict[str, list[str]], reads: dict[str, list[str]]) -> list[str]:
    """'reward R receives: col=value, ...' per reward: the columns it needs, then those it may
    read that the record has (gold boxes as the loader put them in the model's frame)."""
    lines = []
    for reward in dict.fromkeys([*needs, *reads]):
        required = needs.get(reward, [])
        optional = [
            c for c in reads.get(reward, []) if c not in required and row.get(c) is not None
        ]
        given = ", ".join(f"{c}={row.get(c)!r}" for c in [*required, *optional])
        lines.append(f"reward {reward} receives: {given or '(no data column)'}")
    return lines


def resized(processor: Any, family: Family, width: int, height: int) -> str:
    """'resized to WxH': the size the family's processor gives the image (`Family.resize`)."""
    return "resized to {}x{}".format(*family.load("resize")(family, processor)(width, height))


def template(processor: Any, turns: list, generation: bool, tools: list | None = None) -> str:
    return processor.apply_chat_template(
        turns, tokenize=False, add_generation_prompt=generation, tools=tools or None
    )


def rollout_turns(
    row: dict, processor: Any, family: Family, tokens: list[int], tools: Tools
) -> list[str]:
    """The prompt with the tools' schema (as GRPOTrainer renders it), then the turns a rollout
    may add: the environment's example call (trained on, through the end token, as TRL's
    completion ids are) and the tool's result (not trained on), each image with its tokens."""
    from trl.data_utils import prepare_multimodal_messages

    prompt = template(processor, row["prompt"], True, tools.tools)
    lines = [f"turn 1 · prompt (with the tools' schema):\n{compact(prompt, family, tokens)}"]
    turns = tools.example(row)
    if not turns:
        return [*lines, f"then the model answers or calls a tool; {tools.limits}"]
    turns = prepare_multimodal_messages(turns)
    call = template(processor, [*row["prompt"], turns[0]], False, tools.tools)[len(prompt) :]
    end = processor.tokenizer.eos_token
    call = call[: call.index(end) + len(end)] if end in call else call
    after = template(processor, [*row["prompt"], *turns], True, tools.tools)
    result = after[len(prompt) + len(call) :]
    returned = [p["image"] for p in turns[1]["content"] if p.get("type") == "image"]
    count = token_counter(processor, family)
    costs = [count(*image.size, 1) for image in returned]
    pairs = zip(returned, costs, strict=True)
    sizes = ", ".join(f"{image.width}x{image.height} px: {n} tokens" for image, n in pairs)
    lines.append(f"turn 2 · model, an example call (trained on):\n{call}")
    lines.append(
        f"turn 3 · tool result{' (' + sizes + ')' if sizes else ''}, not trained on:\n"
        + compact(result, family, costs)
    )
    lines.append(f"turn 4 · model: the answer, or another call; {tools.limits}")
    return lines


def compact(text: str, family: Family, tokens: list[int], video_tokens: list[int] = ()) -> str:
    """Each image's and video's one placeholder (the family's: `<|image_pad|>`, Gemma 3's
    `<start_of_image>`, ...), followed by the count the processor expands it to (images and
    videos numbered apart, in the order the text has them)."""
    counts = {family.image_placeholder: iter(tokens), family.video_placeholder: iter(video_tokens)}
    marks = "|".join(re.escape(mark) for mark in counts if mark)
    return re.sub(marks, lambda m: f"{m.group()}x{next(counts[m.group()], '?')}", text)


def video_line(video: dict, loaded: videos.Loaded) -> str:
    """'4 of 8 frames, 112x112 px, resized to 56x56': frames sampled (of the video's), the
    original frame size when it can be read, the size the model sees."""
    count, _, height, width = loaded.frames.shape
    total = loaded.metadata.get("total_num_frames")
    frames = f"{count} of {round(total)} frames" if total else f"{count} frames"
    original = frame_size(video)
    size = f", {original[0]}x{original[1]} px" if original else ""
    return f"{frames}{size}, resized to {width}x{height}"


def frame_size(video: dict) -> tuple[int, int] | None:
    """(width, height) of a video's frames: its first frame file, or its file's video stream."""
    try:
        if video.get("frames"):
            from PIL import Image

            with Image.open(video["frames"][0]) as image:
                return image.size
        import av

        with av.open(str(video["path"])) as container:
            stream = container.streams.video[0]
            return stream.width, stream.height
    except Exception:  # a size we cannot read is left out, never a failed --show
        return None


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
