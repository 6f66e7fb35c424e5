"""Evaluation with an environment (`env=`): each sample is a rollout as GRPOTrainer runs one.

TRL's `_tool_call_loop` in small: generate; parse the turn with TRL's `parse_response` (the
tokenizer's response template, as in training); call each tool on this rollout's own
environment (`reset(**row)` first); append the results, images included, as tool turns;
generate again, up to `env.max_turns` model turns. The rewards score the whole conversation
(TRL's completion messages), and the turns, with the images the tools returned, go to the
gallery (`samples.html` shows them turn by turn).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from vlexp import environments
from vlexp.evaluation.generation import Completion, completion_of, open_images


@dataclass(frozen=True)
class Agent:
    """What an evaluation needs of `env=`: a fresh environment per rollout, and its turns."""

    factory: Any  # () -> one environment (TRL's environment_factory protocol)
    max_turns: int

    @classmethod
    def of(cls, env: Any, run_limits: environments.Limits | None) -> Agent | None:
        """The run's environment (the run plan's `env` node and `tool_limits()`), or None
        without one (`env=none`, or a config without env)."""
        env = environments.of(env)
        if env is None or run_limits is None:
            return None
        return cls(environments.factory(env, run_limits), int(env.max_turns))


def tools_of(instance: Any) -> list:
    """The instance's tools, picked as TRL picks them (public functions but reset/get_reward)."""
    return [
        getattr(instance, name)
        for name, _ in inspect.getmembers(type(instance), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    ]


def call_tool(tools: list, call: dict) -> Any:
    """One parsed tool call's result; an unknown tool or a raising one is a message, as in
    TRL's loop (`{"error": ...}`), never the evaluation's end."""
    function = call.get("function") or {}
    by_name = {tool.__name__: tool for tool in tools}
    try:
        return by_name[function["name"]](**(function.get("arguments") or {}))
    except KeyError:
        return {"error": f"Tool {function.get('name')} not found."}
    except Exception as err:  # the model's malformed call, not the evaluation's bug
        return {"error": str(err)}


def tool_turn(name: str, result: Any) -> tuple[dict, dict]:
    """(the tool message the model reads, the gallery's turn): TRL's content rule, a list of
    parts kept as it is (images in it), anything else as its text."""
    content = result if isinstance(result, list) else str(result)
    parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
    images = [p["image"] for p in parts if isinstance(p, dict) and p.get("type") == "image"]
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
    return {"role": "tool", "name": name, "content": content}, {
        "role": "tool",
        "name": name,
        "text": text,
        "images": images,
    }


def rollout(model: Any, processor: Any, example: dict, agent: Agent, generate: Any) -> Completion:
    """One sample of `example`: model turns and tool turns until the model stops calling or
    `agent.max_turns` model turns are spent. `generate(inputs) -> new token ids`."""
    from trl.chat_template_utils import parse_response
    from trl.data_utils import prepare_multimodal_messages

    images = open_images(example["images"])
    env = agent.factory()
    env.reset(**{**example, "images": images})
    tools = tools_of(env)
    messages = prepare_multimodal_messages(example["prompt"], images=images)
    turns, said, ids = [], [], []
    for _ in range(agent.max_turns):
        inputs = processor.apply_chat_template(
            [messages], tools=tools or None, add_generation_prompt=True, tokenize=True,
            return_dict=True, return_tensors="pt",
        )  # fmt: skip
        own = completion_of(model, processor, generate(inputs, messages))
        ids += own.ids
        prefix = inputs["input_ids"][0].tolist()
        parsed = parse_response(processor.tokenizer, own.ids, prefix=prefix, tools=tools)
        turns.append({"role": "assistant", "text": own.text})
        said.append({"role": "assistant", "content": parsed.get("content") or own.text})
        messages.append({"role": "assistant", **parsed})
        calls = parsed.get("tool_calls")
        if not calls or own.clipped:
            break
        for call in calls:
            name = (call.get("function") or {}).get("name", "unknown")
            message, turn = tool_turn(name, call_tool(tools, call))
            messages.append(prepare_multimodal_messages([message])[0])
            said.append({"role": "tool", "content": turn["text"]})
            turns.append(turn)
    text = "".join(t["text"] for t in turns if t["role"] == "assistant")
    return Completion(text=text, ids=ids, clipped=own.clipped, turns=turns, messages=said)


def generate_with_tools(
    model: Any,
    processor: Any,
    examples: list[dict],
    *,
    agent: Agent,
    max_new_tokens: int,
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    repetition_penalty: float = 1.0,
    progress: bool = True,
    desc: str = "eval",
    **_: Any,
) -> list[list[Completion]]:
    """`vlexp.evaluation.generation.generate` with the environment: `num_samples` rollouts
    per example, one at a time (each turn's prompt depends on that rollout's tool results);
    `max_new_tokens` per model turn."""
    import torch
    from tqdm.auto import tqdm

    from vlexp.evaluation.generation import decoding_settings

    device = next(model.parameters()).device
    settings = decoding_settings(
        model, processor.tokenizer, temperature, top_p, top_k, repetition_penalty
    )

    def new_tokens(inputs: Any, _messages: list) -> list[int]:
        inputs = inputs.to(device)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, **settings)
        return out[0, inputs["input_ids"].shape[1] :].tolist()

    results = []
    for example in tqdm(examples, desc=desc, unit="prompt", disable=not progress, leave=False):
        results.append(
            [rollout(model, processor, example, agent, new_tokens) for _ in range(num_samples)]
        )
    return results
