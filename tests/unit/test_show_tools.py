"""`python -m vlexp.check_data env=zoom data=shapes_zoom --show 1` renders a rollout turn by
turn: the prompt as GRPOTrainer renders it (the tools' schema in it), the model's tool call
as TRL parses it, and the tool's turn as TRL appends it (`_get_tool_suffix_ids`), each image
with the processor's own token count."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

from tests.helpers import compose
from vlexp import environments, runplan
from vlexp.models.loading import load_processor

RUN = ["env=zoom", "data=shapes_zoom", "data.prepare.num_train=8", "data.prepare.num_eval=2"]


def _expanded(text: str) -> str:
    """`<|image_pad|>x16` back to 16 pad tokens, as the processor expands the placeholder."""
    return re.sub(r"<\|image_pad\|>x(\d+)", lambda m: "<|image_pad|>" * int(m.group(1)), text)


def _turns(out: str) -> dict[str, str]:
    """Each `turn N · head` block of the first record: {"turn N": body, "turn N head": head}."""
    record = out.split("--- record 0 ---\n")[1]
    found = {}
    for block in re.split(r"^(?=turn \d · )", record, flags=re.M)[1:]:
        head, _, body = block.partition("\n")
        name = head[: len("turn N")]
        found[name], found[f"{name} head"] = body, head
    return found


def _tool_suffix(processor, message: dict) -> str:
    """TRL's own tool turn for `message`: GRPOTrainer._get_tool_suffix_ids, decoded."""
    from trl import GRPOTrainer

    trainer = SimpleNamespace(
        processing_class=processor,
        chat_template=None,
        chat_template_kwargs={},
        _is_vlm=True,
        _tokenizer=processor.tokenizer,
    )
    ids = GRPOTrainer._get_tool_suffix_ids(trainer, [message])
    return processor.tokenizer.decode(ids)


def test_show_renders_a_zoom_rollout_turn_by_turn(capsys):
    from PIL import Image
    from trl.chat_template_utils import parse_response

    from vlexp.check_data import main

    assert main([*RUN, "--show", "1"]) == 0
    out = capsys.readouterr().out
    turns = _turns(out)
    cfg = compose(RUN)
    plan = runplan.of(cfg)
    processor = load_processor(cfg.model, plan.family)
    environments.speak_tools(processor, plan.family)
    tools = environments.tools_of(plan.env, plan.tool_limits())
    # Turn 1: the prompt exactly as the trainer renders it, tools' schema included.
    question = re.search(r"(What shape is the small \w+ mark\?)", turns["turn 1"]).group(1)
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    prompt = processor.apply_chat_template(
        [user], tools=tools, tokenize=False, add_generation_prompt=True
    )
    assert "<tools>" in prompt and "image_zoom_in_tool" in prompt
    assert _expanded(turns["turn 1"]).rstrip("\n") == prompt.replace(
        "<|image_pad|>", "<|image_pad|>" * 16
    ).rstrip("\n")
    # Turn 2: a call TRL parses into the zoom tool with a 4-number box.
    tokenizer = processor.tokenizer
    ids = tokenizer(turns["turn 2"].rstrip("\n"), add_special_tokens=False)["input_ids"]
    prefix = tokenizer(_expanded(turns["turn 1"]), add_special_tokens=False)["input_ids"]
    parsed = parse_response(tokenizer, ids, prefix=prefix, tools=tools)
    (call,) = parsed["tool_calls"]
    assert call["function"]["name"] == "image_zoom_in_tool"
    assert len(call["function"]["arguments"]["bbox_2d"]) == 4
    # Turn 3: TRL's own tool turn for an image of the size shown, with the processor's count.
    width, height, tokens = map(
        int, re.search(r"\((\d+)x(\d+) px: (\d+) tokens\)", turns["turn 3 head"]).groups()
    )
    crop = Image.new("RGB", (width, height))
    grid = processor.image_processor(images=[crop], return_tensors="pt")["image_grid_thw"]
    assert tokens == int(grid.prod()) // processor.image_processor.merge_size**2
    message = {
        "role": "tool",
        "name": "image_zoom_in_tool",
        "content": [{"type": "image", "image": crop}],
    }
    assert _expanded(turns["turn 3"]).rstrip("\n") == _tool_suffix(processor, message).rstrip("\n")
    assert "env.max_turns=3" in turns["turn 4 head"]


def test_the_example_call_zooms_on_the_record_shape():
    """The call `--show` demonstrates returns the record's shape (found from its pixels)."""
    from PIL import Image

    plan = runplan.of(compose(RUN))
    image = Image.new("RGB", (448, 448), (255, 255, 255))
    image.paste((200, 30, 30), (300, 80, 318, 98))
    call, result = environments.example_turns(
        plan.env, plan.tool_limits(), {"images": [image], "target_box": "[300, 80, 318, 98]"}
    )
    assert call["tool_calls"][0]["function"]["name"] == "image_zoom_in_tool"
    crop = np.asarray(result["content"][0]["image"]).astype(int)
    # The 18 px square, halved in the 224 px window enlarged to 112 px: ~81 of 12,544 px.
    assert (crop != 255).any(axis=-1).mean() > 0.004
