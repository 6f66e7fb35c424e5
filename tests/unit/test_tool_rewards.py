"""Rewards on completions as TRL hands them over with `env=` tools: each turn parsed by the
tokenizer's response template (TRL's `parse_response`), which moves `<think>…</think>` into
`reasoning_content`. On main, think_format scored every such completion 0 (measured: 0 at every
step of an env=zoom run), whether or not the model called a tool."""

from __future__ import annotations

import pytest

from tests.helpers import compose
from vlexp import environments, runplan
from vlexp.models.loading import load_processor
from vlexp.rewards.library import accuracy, think_format

ANSWER = "<think>The mark is a square.</think><answer>square</answer>"
CALL = '<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, 112, 112]}}\n</tool_call>'


@pytest.fixture(scope="module")
def parse(tiny_model):
    """`text -> message` exactly as GRPOTrainer parses a generated turn under env=zoom."""
    from trl.chat_template_utils import parse_response

    cfg = compose(["env=zoom", "data=shapes_zoom"])
    plan = runplan.of(cfg)
    processor = load_processor(cfg.model, plan.family)
    environments.speak_tools(processor, plan.family)
    tools = environments.tools_of(plan.env, plan.tool_limits())
    user = [{"role": "user", "content": [{"type": "text", "text": "What shape?"}]}]
    prefix = processor.apply_chat_template(
        user, tools=tools, add_generation_prompt=True, tokenize=True
    )
    prefix = prefix[0] if isinstance(prefix[0], list) else prefix
    tokenizer = processor.tokenizer

    def parsed(text: str) -> dict:
        ids = tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        return parse_response(tokenizer, ids, prefix=list(prefix), tools=tools)

    return parsed


def test_a_direct_answer_keeps_its_thinking(parse):
    message = parse(ANSWER)
    assert message.get("reasoning_content")  # TRL moved the thinking out of the text
    assert think_format([[message]]) == [1.0]
    assert accuracy([[message]], solution=["square"]) == [1.0]


def test_an_answer_after_a_zoom_is_scored_on_the_whole_conversation(parse):
    from PIL import Image

    call = parse(CALL)
    assert call["tool_calls"][0]["function"]["name"] == "image_zoom_in_tool"
    tool = {
        "role": "tool",
        "name": "image_zoom_in_tool",
        "content": [{"type": "image", "image": Image.new("RGB", (8, 8))}],
    }
    completion = [call, tool, parse(ANSWER)]  # TRL's completion messages after the loop
    assert think_format([completion]) == [1.0]
    assert accuracy([completion], solution=["square"]) == [1.0]
    assert think_format([[parse("<answer>square</answer>")]]) == [0.0]  # still a format check
