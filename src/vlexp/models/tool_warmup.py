"""The tool-use warm-up of the tiny builds' `+tools` variant (`tiny://qwen2_5_vl+tools`,
conf/model/tiny_tools.yaml): multi-turn zoom examples on `shapes_zoom`, so the tiny model
emits a well-formed `image_zoom_in_tool` call some of the time and env=zoom's GRPO run has
tool calls to reinforce.

After the plain build's warm-up (vlexp.models.tiny: `shapes` answers), the variant trains on
conversations rendered exactly as TRL's `GRPOTrainer` renders a rollout with `env=zoom`: the
tools' schema in the system prompt (the family's tool template, `vlexp.environments.
speak_tools`), the user's image and question, then either

- a zoom call, the tool turn holding the image `ZoomEnv` returns, and the answer; or
- the answer at once (the kind guessed from a blob too small to read).

`CALL_SHARE` of the examples zoom, so sampling starts with some calls and some direct answers:
GRPO then has both to compare. The loss covers only the model's own turns (each through its
end token), as TRL's `tool_mask` does in training.

A zoom turn is four calls, one per quarter of the image, each returned at the prompt's 16
image tokens (twice the resolution: the processor shrinks any image to `model.max_pixels`, so
a bigger per-turn budget would not reach the model). One box around the shape (a half-image
window, one of 3 x 3) was tried first: after 800 steps the 0.4M-parameter model wrote
well-formed calls but placed 7 of 37 on the shape, since nothing in its image tokens says
where they are but rotary phases. The quarters need no placing; what is left to learn is
whether to zoom, and reading the shape in the quarter that holds it. Measured: docs/agentic.md.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from vlexp.data import shapes_zoom
from vlexp.paths import cache_dir

VARIANT = "tools"
# Steps over batches of conversations (each ~330 tokens on the tiny Qwen2.5-VL); lr as the
# plain warm-up's. Records are shapes_zoom's generator with a seed of their own (1): the
# RL data (data=shapes_zoom, seed 0) stays unseen.
TOOL_WARMUP = dict(steps=800, batch_size=8, learning_rate=3e-3, num_records=1024, data_seed=1)
CALL_SHARE = 0.5  # examples that zoom; the rest answer at once
# Calls of a zoom turn: the four quarters (runs of model=tiny_tools set env.max_tool_calls=4).
# Why not one box around the shape: see the module docstring.
ZOOM_CALLS = 4
VOCAB_SIZE = 1024  # room for every word of the schema, the calls and the answers (~780 used)
TOOL = "image_zoom_in_tool"


def pre_tokenizer() -> Any:
    """The variant BPE's pre-tokenizer: words (split at spaces, newlines apart) in bytes.

    The plain build's GPT-2 split cuts at every punctuation mark, so a zoom call is ~50
    tokens of single characters; the 0.4M-parameter model, sampling at temperature 1, then
    got none of 26 calls well-formed after 240 warm-up steps (`image_zoom_zoom_tool`, boxes
    with 3 or 7 numbers). Split into words, a call is 9 tokens (`{"name": `,
    `"image_zoom_in_tool", `, ..., `[28, `, `0, `, `84, `, `56]}}`), about what a real
    vocabulary spends on it, and what is left to learn is the choice: zoom or not, where.
    Newlines stay apart so no token spans the end of a prompt and the start of an answer
    (TRL tokenizes the two apart)."""
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Split(" ", behavior="merged_with_previous"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def records(num_records: int, seed: int) -> tuple[list[dict], Path]:
    """(train records, data dir) of a shapes_zoom set generated for the warm-up."""
    out = cache_dir() / "data" / f"shapes-zoom-v{shapes_zoom.VERSION}-n{num_records}-e8-s{seed}"
    data_dir = shapes_zoom.generate(out, num_train=num_records, num_eval=8, seed=seed)
    lines = (data_dir / "train.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], data_dir


def limits_of(family: Any, processor: Any) -> Any:
    """The zoom tool's `Limits` at the tiny processor's own pixel budget (conf/model/tiny*.yaml
    sets the same), so the crops here are the ones a run's tool returns."""
    from vlexp.data.boxes import frame_of_family
    from vlexp.environments import Limits

    size = processor.image_processor.size
    low, high = int(size["shortest_edge"]), int(size["longest_edge"])
    per_token = family.pixels_per_token
    return Limits(
        max_tool_calls=ZOOM_CALLS,
        max_image_tokens_per_turn=high // per_token**2,
        max_image_tokens=ZOOM_CALLS * high // per_token**2,
        pixels_per_token=per_token,
        min_pixels=low,
        frame=frame_of_family(family, low, high),
    )


def answer(record: dict) -> str:
    """The final answer in the think/answer format the rewards read."""
    kind = record["solution"]
    return f"<think>The mark is a {kind}.</think><answer>{kind}</answer>"


def quadrants(extent: tuple[int, int]) -> list[list[int]]:
    """The four quarter boxes of an image of `extent` (the model's box frame), row by row.

    >>> quadrants((112, 112))
    [[0, 0, 56, 56], [56, 0, 112, 56], [0, 56, 56, 112], [56, 56, 112, 112]]
    """
    width, height = extent
    half_w, half_h = width // 2, height // 2
    return [
        [x, y, x + half_w if x == 0 else width, y + half_h if y == 0 else height]
        for y in (0, half_h)
        for x in (0, half_w)
    ]


def conversation(record: dict, image: Any, env: Any, zoom: bool) -> list[dict]:
    """One example as TRL's rollout holds it: the user turn, then four zoom calls in one turn
    (the quarters of the image), their tool turns (the crops `env` returns) and the answer, or
    the answer alone."""
    user = {
        "role": "user",
        "content": [{"type": "image", "image": image}, {"type": "text", "text": record["prefix"]}],
    }
    final = {"role": "assistant", "content": [{"type": "text", "text": answer(record)}]}
    if not zoom:
        return [user, final]
    env.reset(images=[image])
    boxes = quadrants(env.limits.frame.extent(image.size))
    calls = [
        {"type": "function", "function": {"name": TOOL, "arguments": {"bbox_2d": box}}}
        for box in boxes
    ]
    results = [env.image_zoom_in_tool(box) for box in boxes]
    assert all(isinstance(r, list) for r in results), results  # quarters always crop
    tools = [{"role": "tool", "name": TOOL, "content": result} for result in results]
    return [user, {"role": "assistant", "content": [], "tool_calls": calls}, *tools, final]


def conversations(family: Any, processor: Any, recs: list[dict], data_dir: Path) -> list:
    """Every record as a conversation; a seeded `CALL_SHARE` of them zoom."""
    from PIL import Image

    from vlexp.environments.zoom import ZoomEnv

    env = ZoomEnv(limits_of(family, processor))
    rng = random.Random(0)
    out = []
    for record in recs:
        image = Image.open(data_dir / record["image"]).convert("RGB")
        out.append(conversation(record, image, env, rng.random() < CALL_SHARE))
    return out


def _images(messages: list[dict]) -> list:
    return [
        part["image"]
        for message in messages
        for part in (message.get("content") or [])
        if isinstance(part, dict) and part.get("type") == "image"
    ]


def _tokens(processor: Any, text: str, images: list) -> list[int]:
    return processor(text=[text], images=[images], padding=False)["input_ids"][0]


def example(processor: Any, messages: list[dict], tools: list) -> dict:
    """The conversation's text and images, and the token spans the loss covers: each
    assistant turn from its first token through its end token (TRL's completion ids: what
    the model generated, never the "\\n" the template writes after the end token)."""
    render = processor.apply_chat_template
    text = render(messages, tools=tools, tokenize=False)
    ids = _tokens(processor, text, _images(messages))
    end = processor.tokenizer.eos_token_id
    spans = []
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        head = render(messages[:turn], tools=tools, tokenize=False, add_generation_prompt=True)
        assert text.startswith(head), "the chat template is not prefix-preserving"
        start = len(_tokens(processor, head, _images(messages[:turn])))
        stop = ids.index(end, start) + 1
        spans.append((start, stop))
    return {"text": text, "images": _images(messages), "spans": spans}


def batch_inputs(processor: Any, batch: list[dict]) -> dict:
    """Model inputs of `batch` (right-padded) with labels on the assistant spans only."""
    inputs = processor(
        text=[e["text"] for e in batch],
        images=[e["images"] for e in batch],
        return_tensors="pt",
        padding=True,
    )
    labels = inputs["input_ids"].clone().fill_(-100)  # (B, T)
    for row, e in enumerate(batch):
        for start, stop in e["spans"]:
            labels[row, start:stop] = inputs["input_ids"][row, start:stop]
    inputs["labels"] = labels
    return inputs


def tool_warm_up(model: Any, processor: Any, family: Any, seed: int) -> list[float]:
    """`TOOL_WARMUP` SFT steps on zoom conversations (see the module docstring)."""
    import torch

    from vlexp.environments import speak_tools
    from vlexp.environments.zoom import ZoomEnv

    tokenizer = processor.tokenizer
    saved = processor.chat_template, tokenizer.chat_template, vars(tokenizer).copy()
    speak_tools(processor, family)  # the template a run renders its prompts with
    try:
        recs, data_dir = records(TOOL_WARMUP["num_records"], TOOL_WARMUP["data_seed"])
        tools = [ZoomEnv(limits_of(family, processor)).image_zoom_in_tool]
        chats = conversations(family, processor, recs, data_dir)
        examples = [example(processor, chat, tools) for chat in chats]
    finally:
        # Saved as built (as model=tiny): at run time env= installs the tool template and
        # TRL's response parser again, and env=none must not parse turns with it.
        processor.chat_template, tokenizer.chat_template, attributes = saved
        for name in set(vars(tokenizer)) - set(attributes):
            delattr(tokenizer, name)
        vars(tokenizer).update(attributes)  # response_template as built (None)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=TOOL_WARMUP["learning_rate"])
    model.train()
    losses, size = [], TOOL_WARMUP["batch_size"]
    order = random.Random(seed)
    for step in range(TOOL_WARMUP["steps"]):
        if step * size % len(examples) == 0:
            order.shuffle(examples)
        start = (step * size) % len(examples)
        loss = model(**batch_inputs(processor, examples[start : start + size])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(round(loss.item(), 4))
    model.eval()
    return losses


def corpus_texts(family: Any, processor: Any) -> list[str]:
    """Texts for the variant's BPE: every warm-up conversation as the template renders it
    (schema, calls with their numbers, tool turns, answers), rendered with the plain build's
    processor (only the strings count here)."""
    from vlexp.environments import speak_tools
    from vlexp.environments.zoom import ZoomEnv

    speak_tools(processor, family)
    recs, data_dir = records(TOOL_WARMUP["num_records"], TOOL_WARMUP["data_seed"])
    tools = [ZoomEnv(limits_of(family, processor)).image_zoom_in_tool]
    chats = conversations(family, processor, recs[:64], data_dir)
    texts = [processor.apply_chat_template(c, tools=tools, tokenize=False) for c in chats]
    for token in family.special_tokens:  # one id each already: no merges spent on them
        texts = [text.replace(token, "\n") for text in texts]
    return texts
