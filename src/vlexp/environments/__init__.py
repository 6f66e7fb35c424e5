"""Environments for agentic RL: tools the model calls during a GRPO rollout (`env=` group).

An environment follows TRL 1.16's `environment_factory` protocol (`GRPOTrainer`): one
instance per rollout, `reset(**row)` before each, its public methods are the tools (their
type hints and docstrings are the schema the chat template shows the model), an optional
`get_reward()` is one more reward column. TRL runs the loop (`_tool_call_loop`): it parses
tool calls, calls the methods, appends each result as a `tool` turn (images included) and
generates again; the tool turns are masked out of the loss (`tool_mask`).

What vlexp adds sits here: the limits every tool call obeys (`Limits`, `ToolCalls`: calls
per rollout, image tokens per turn and in total, a per-call deadline, results checked), and
the factory the trainer gets (`factory`). Adding a tool is one class and one YAML file under
conf/env/ (`_target_` the class); docs/agentic.md.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from vlexp import families
from vlexp.data.boxes import BoxFrame, frame_of_family

log = logging.getLogger("vlexp")


@dataclass(frozen=True)
class Limits:
    """What one rollout's tool calls may use (conf/env/*.yaml), in the model's units."""

    max_tool_calls: int = 4  # calls per rollout; later calls get an error message
    max_image_tokens_per_turn: int = 16  # LLM image tokens one returned image may cost
    max_image_tokens: int = 64  # all images the tools return in one rollout
    deadline_s: float = 10.0  # a call running longer is abandoned (error message, counted)
    pixels_per_token: int = 28  # side of the square one image token covers
    min_pixels: int = 3136  # the processor's lower bound: a returned image is at least this
    frame: BoxFrame = BoxFrame("original")  # how the model writes boxes (family seam)

    @property
    def max_pixels_per_turn(self) -> int:
        return self.max_image_tokens_per_turn * self.pixels_per_token**2


def of(node: Any) -> Any:
    """The `env` node, or None when the run has no environment (`env=none`)."""
    return node if node is not None and node.get("factory") is not None else None


def limits(env: Any, family: families.Family, model: Any) -> Limits:
    """`Limits` from the `env` node and the model (its `model` node and its family, resolved
    at start-up): image budgets default to one prompt image's (`model.max_pixels`), boxes in
    the model family's frame (`vlexp.families`)."""
    per_token = family.pixels_per_token
    image_tokens = max(1, int(model.max_pixels) // per_token**2) if family.pixel_budget else 256
    per_turn = env.get("max_image_tokens_per_turn") or image_tokens
    return Limits(
        max_tool_calls=int(env.max_tool_calls),
        max_image_tokens_per_turn=int(per_turn),
        max_image_tokens=int(env.get("max_image_tokens") or per_turn * env.max_tool_calls),
        deadline_s=float(env.deadline_s),
        pixels_per_token=per_token,
        min_pixels=int(model.min_pixels) if family.pixel_budget else per_token**2,
        frame=frame_of_family(family, model.min_pixels, model.max_pixels),
    )


def factory(env: Any, run_limits: Limits) -> Any:
    """What `GRPOTrainer(environment_factory=...)` calls once per rollout: `env.factory`
    (`_target_` a class, `_partial_: true`), given the run's `Limits` when it takes `limits`."""
    from hydra.utils import get_class, instantiate

    node = env.factory
    made = instantiate(node, _partial_=True)
    if "limits" in inspect.signature(get_class(node._target_)).parameters:
        made = functools.partial(made, limits=run_limits)
    return made


def tools_of(env: Any, run_limits: Limits | None) -> list | None:
    """The tools one environment instance offers, picked as TRL picks them (public functions
    of the class but `reset` and `get_reward`), bound: what the chat template renders into
    every prompt (the data check counts them). None without an environment."""
    if of(env) is None or run_limits is None:
        return None
    instance = factory(env, run_limits)()
    names = [
        name
        for name, _ in inspect.getmembers(type(instance), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    ]
    return [getattr(instance, name) for name in names]


def example_turns(env: Any, run_limits: Limits | None, row: dict) -> list[dict] | None:
    """The turns a rollout may add after `row`'s prompt, for `check_data --show`: the call the
    environment shows on this record (its `_example_call(**row)`, e.g. ZoomEnv's zoom on the
    record's target), run by the run's own environment (`env` node, its `Limits`), as TRL
    appends them (the assistant's tool call, then the tool turn). None when there is no
    environment or it shows no call."""
    if of(env) is None or run_limits is None:
        return None
    instance = factory(env, run_limits)()
    instance.reset(**row)
    call = getattr(instance, "_example_call", lambda **_: None)(**row)
    if call is None:
        return None
    result = getattr(instance, call["name"])(**call["arguments"])
    content = result if isinstance(result, list) else [{"type": "text", "text": str(result)}]
    return [
        {
            "role": "assistant",
            "content": [],
            "tool_calls": [{"type": "function", "function": call}],
        },
        {"role": "tool", "name": call["name"], "content": content},
    ]


def check_trainer(env: Any, trainer_cls: type, algo_name: str) -> None:
    """Tools run inside GRPOTrainer's rollouts (TRL 1.16: only it takes
    `environment_factory`); any other trainer stops here, before the model loads."""
    from trl import GRPOTrainer

    env = of(env)
    if env is not None and not issubclass(trainer_cls, GRPOTrainer):
        raise ValueError(
            f"env={env.name} runs tools inside GRPOTrainer's rollouts, and algo={algo_name} "
            f"trains with {trainer_cls.__name__}, which takes no tools: use env=none or a "
            f"GRPO-family algo (grpo, dapo, dr_grpo, gspo, ...)"
        )


# Tokens a tool result costs besides its image tokens: the turn's scaffolding (role markers,
# <tool_response> tags) and a short message, on the Qwen templates.
RESULT_SCAFFOLDING = 24


def problems(env: Any, family: families.Family, model: Any, completion_budget: int) -> list[str]:
    """Limits that cannot work, said before anything loads: a completion budget (TRL counts
    tool turns inside algo.args.max_completion_length, `completion_budget`, and drops a result
    that does not fit) too small for one tool result, non-positive limits."""
    env = of(env)
    if env is None:
        return []
    out = [
        f"env.{key}={env.get(key)}: must be at least {least}"
        for key, least in (("max_turns", 1), ("max_tool_calls", 0))
        if env.get(key) is None or int(env.get(key)) < least
    ]
    if env.get("deadline_s") is None or float(env.deadline_s) <= 0:
        out.append(f"env.deadline_s={env.get('deadline_s')}: must be a positive number of seconds")
    if out or int(env.max_turns) < 2 or int(env.max_tool_calls) == 0:
        return out
    out += _over_model_budget(env, family, model) + _packed_images(env, family)
    per_turn = limits(env, family, model).max_image_tokens_per_turn
    budget = int(completion_budget or 0)
    if budget < per_turn + RESULT_SCAFFOLDING:
        out.append(
            f"algo.args.max_completion_length={budget} cannot hold one tool result "
            f"({per_turn} image tokens + ~{RESULT_SCAFFOLDING} of "
            f"scaffolding): TRL would drop every result; raise it (conf/env/{env.name}.yaml "
            f"sets 384) or lower env.max_image_tokens_per_turn"
        )
    return out


def _packed_images(env: Any, family: families.Family) -> list[str]:
    """A family that packs a call's images into one row (MiniCPM-V): TRL's tool loop puts each
    result's image into the completion, and the per-prompt packed rows that carry its images
    through GRPO (vlexp.algorithms.packed_images) hold the prompt's images only."""
    if not family.packed_images:
        return []
    return [
        f"env={env.name} on a {family.name} model: its processor packs every image of a call "
        "into one row of pixel_values, and the packed rows vlexp carries through GRPO hold the "
        "prompt's images, not the images the tools return; train tools on a family with "
        "per-image inputs (Qwen, InternVL, GLM-4.xV, LLaVA-OneVision)"
    ]


def _over_model_budget(env: Any, family: families.Family, model: Any) -> list[str]:
    """A per-turn image budget above the model's: the processor shrinks every image, a tool's
    result too, to model.max_pixels, so the extra tokens would never reach the model (and the
    rollout's image budget would count tokens that are not there)."""
    asked = env.get("max_image_tokens_per_turn")
    if asked is None or not family.pixel_budget:
        return []
    model_tokens = int(model.max_pixels) // family.pixels_per_token**2
    if int(asked) <= model_tokens:
        return []
    return [
        f"env.max_image_tokens_per_turn={asked} is more than model.max_pixels="
        f"{model.max_pixels} allows ({model_tokens} image tokens): the processor shrinks "
        f"every image, tool results too, to model.max_pixels; raise model.max_pixels or lower "
        f"env.max_image_tokens_per_turn (null: the model's budget)"
    ]


def max_turns(env: Any) -> int | None:
    """TRL's `max_tool_calling_iterations`: model turns after the first (None: no env)."""
    env = of(env)
    return None if env is None else int(env.max_turns) - 1


class ToolsUnsupported(ValueError):
    """The model's chat template renders no tool calls and vlexp has none for its family."""


def tools_refusal(processor: Any, family: Any) -> str | None:
    """`speak_tools`, or why it cannot (the one line an entry point prints)."""
    try:
        speak_tools(processor, family)
    except ToolsUnsupported as err:
        return str(err)
    return None


def speak_tools(processor: Any, family: Any) -> None:
    """Make `processor` render and parse tool calls (TRL checks both before training): its own
    chat template when it can (`trl.chat_template_utils.supports_tool_calling`), else the
    family's tool template (`tool_template`, parsed with TRL's Qwen3 response template: the
    `<tool_call>` JSON format all Qwen-VL families write)."""
    from trl.chat_template_utils import qwen3_template, supports_tool_calling

    if supports_tool_calling(processor):
        return
    if family.tool_template is None:
        raise ToolsUnsupported(
            f"env: the {family.name} chat template renders no tool calls, and vlexp has no tool "
            f"template for that family (vlexp.families, field tool_template): use env=none, or "
            f"a model whose chat template renders tool calls (Qwen2.5-VL, Qwen3-VL, Qwen3.5)"
        )
    template = family.load("tool_template")()
    processor.chat_template = template
    processor.tokenizer.chat_template = template
    processor.tokenizer.response_template = qwen3_template


class ToolCalls:
    """One rollout's tool calls: limits enforced, results checked, failures counted.

    Every outcome the model should hear about becomes a short text (the call past the limit,
    a tool that raises, hangs past the deadline, returns something that is not text or an
    image): the rollout goes on, and `failures` counts it (vlexp.patches adds it to TRL's
    `tools/failure_frequency`, which counts only raised exceptions)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.calls = self.failures = self.image_tokens = 0
        self.turns: list[dict] = []  # what each call returned, in order (tests, inspection)

    def reset(self) -> None:
        self.calls = self.failures = self.image_tokens = 0
        self.turns = []

    def run(self, name: str, call: Any, *args: Any, **kwargs: Any) -> list[dict] | str:
        """`call(*args, **kwargs)` under the limits; its result as TRL's tool content."""
        self.calls += 1
        if self.calls > self.limits.max_tool_calls:
            return self.fail(name, f"no calls left (limit {self.limits.max_tool_calls})")
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tool-{name}")
        try:
            result = pool.submit(call, *args, **kwargs).result(timeout=self.limits.deadline_s)
        except FutureTimeout:
            return self.fail(name, f"timed out after {self.limits.deadline_s:g} s")
        except Exception as err:  # a tool's bug is the model's message, never the run's end
            return self.fail(name, str(err)[:120] or type(err).__name__)
        finally:
            pool.shutdown(wait=False)  # a hung call is abandoned, not waited for
        return self.content(name, result)

    def fail(self, name: str, message: str) -> str:
        self.failures += 1
        self.turns.append({"tool": name, "error": message})
        return f"Error: {message}"

    def content(self, name: str, result: Any) -> list[dict] | str:
        """A tool's result as content parts: text as it is, images checked and budgeted."""
        from PIL import Image

        if isinstance(result, str):
            self.turns.append({"tool": name, "text": result})
            return result
        parts = result if isinstance(result, list) else [result]
        out: list[dict] = []
        for part in parts:
            image = part.get("image") if isinstance(part, dict) else part
            if isinstance(part, dict) and part.get("type") == "text":
                out.append({"type": "text", "text": str(part.get("text", ""))})
            elif isinstance(image, Image.Image):
                fitted = self.fit(image)
                if isinstance(fitted, str):
                    return self.fail(name, fitted)
                out.append({"type": "image", "image": fitted})
            else:
                return self.fail(name, f"returned {type(image).__name__}, not an image")
        self.turns.append({"tool": name, "parts": out})
        return out

    def fit(self, image: Any) -> Any:
        """`image` in RGB, resized within the per-turn budget, charged to the rollout's total
        (a message instead when the total is spent)."""
        width, height = fitted_size(image.size, self.limits)
        tokens = (width // self.limits.pixels_per_token) * (height // self.limits.pixels_per_token)
        if self.image_tokens + tokens > self.limits.max_image_tokens:
            return f"image budget spent ({self.limits.max_image_tokens} tokens)"
        self.image_tokens += tokens
        image = image.convert("RGB") if image.mode != "RGB" else image
        return image if image.size == (width, height) else image.resize((width, height))


def fitted_size(size: tuple[int, int], limits: Limits) -> tuple[int, int]:
    """(width, height) of a returned image: scaled (up or down, aspect kept) to fill the
    per-turn pixel budget, on the processor's grid (transformers' `smart_resize`), so the
    processor's own resize leaves it as it is."""
    from vlexp.data.boxes import resized_size

    width, height = size
    scale = math.sqrt(limits.max_pixels_per_turn / max(1, width * height))
    factor = limits.pixels_per_token
    target = (max(factor, int(width * scale)), max(factor, int(height * scale)))
    low = min(limits.min_pixels, limits.max_pixels_per_turn)
    return resized_size(*target, low, limits.max_pixels_per_turn, factor)
