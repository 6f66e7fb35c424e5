"""env=: the zoom tool in each family's box frame, its box rules (verl's ImageZoomInTool), the
limits and faults every tool call obeys, and the prompt length the data check counts with the
tools' schema. No model: processors and transformers' own `smart_resize` are the references."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.helpers import compose
from vlexp import environments, families, runplan
from vlexp.environments import Limits, ToolCalls
from vlexp.environments.zoom import ZoomEnv
from vlexp.paths import config_dir

TINY_MODELS = sorted(p.stem for p in (config_dir() / "model").glob("tiny*.yaml"))
ENVS = sorted(p.stem for p in (config_dir() / "env").glob("*.yaml"))
TARGET = (300, 80, 340, 120)  # a 40 px red square on a 448 px white canvas


def canvas() -> Image.Image:
    image = Image.new("RGB", (448, 448), (255, 255, 255))
    ImageDraw.Draw(image).rectangle(
        [TARGET[0], TARGET[1], TARGET[2] - 1, TARGET[3] - 1], fill=(220, 40, 40)
    )
    return image


def zoom_env(model: str, **env: object) -> tuple[ZoomEnv, object]:
    overrides = [f"model={model}", "env=zoom", *(f"env.{k}={v}" for k, v in env.items())]
    cfg = compose(overrides)
    made = environments.factory(cfg.env, runplan.of(cfg).tool_limits())()
    made.reset(images=[canvas()], prompt=[], solution="square")
    return made, cfg


def in_model_frame(box, size, family, cfg) -> list[float]:
    """`box` (original pixels) as the family writes it: transformers' smart_resize for
    Qwen2.5-VL's resized pixels, 0..1000 for Qwen2-VL/Qwen3, the pixels themselves for Gemma 3."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    width, height = size
    if family.box_frame == "relative_1000":
        sx, sy = 1000 / width, 1000 / height
    elif family.box_frame == "pixels":
        new_h, new_w = smart_resize(
            height, width, family.pixels_per_token, cfg.model.min_pixels, cfg.model.max_pixels
        )
        sx, sy = new_w / width, new_h / height
    else:
        sx = sy = 1.0
    return [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]


@pytest.mark.parametrize("model", TINY_MODELS)
def test_a_box_in_the_family_frame_returns_that_region_of_the_original_enlarged(model):
    env, cfg = zoom_env(model)
    family = families.resolve(cfg.model)
    out = env.image_zoom_in_tool(in_model_frame(TARGET, (448, 448), family, cfg))
    assert isinstance(out, list) and out[0]["type"] == "image", out
    image = out[0]["image"]
    assert image.mode == "RGB" and image.width > TARGET[2] - TARGET[0]  # enlarged, not shrunk
    # The crop is the red square, nothing else (within a pixel of rounding at each edge).
    red = (np.asarray(image) == (220, 40, 40)).all(axis=-1).mean()
    assert red > 0.85, red
    assert env.failures == 0


@pytest.mark.parametrize("model", ["tiny", "tiny_qwen3_vl"])
def test_the_returned_image_fills_one_turn_s_budget_as_the_processor_counts_it(model):
    from vlexp.models.loading import load_processor

    env, cfg = zoom_env(model, max_image_tokens_per_turn=9)
    image = env.image_zoom_in_tool(
        in_model_frame(TARGET, (448, 448), families.resolve(cfg.model), cfg)
    )[0]["image"]
    processor = load_processor(cfg.model, runplan.of(cfg).family)
    grid = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"]
    tokens = int(grid.prod()) // processor.image_processor.merge_size**2
    assert 4 < tokens <= 9  # the budget, filled (a 40 px crop alone would be 1-2 tokens)
    assert processor.image_processor(images=[image])["pixel_values"].shape[0] == int(grid.prod())


@pytest.mark.parametrize(
    "box",
    [
        [1, 2],  # too few numbers
        "a red box",  # not numbers
        [float("nan"), 0, 10, 10],
        [50, 50, 50, 50],  # empty
        [40, 40, 10, 10],  # corners swapped
        [2000, 2000, 3000, 3000],  # outside the image
        [0, 0, 448, 1],  # aspect ratio over 100 (verl's rule)
        None,
        {"x": 1},
    ],
)
def test_a_malformed_or_out_of_range_box_is_a_short_message_never_an_exception(box):
    env, _ = zoom_env("tiny_gemma3")  # Gemma 3: boxes in the image's own pixels
    out = env.image_zoom_in_tool(box)
    assert isinstance(out, str) and out.startswith("Error: ") and len(out) <= 80, out
    assert env.failures == 1 and env.turns[0]["error"]


def test_a_tiny_box_grows_to_one_image_token_about_its_centre_as_verl_does():
    env, _ = zoom_env("tiny_gemma3")
    image = env.image_zoom_in_tool([318, 98, 322, 102])[0]["image"]  # 4 px inside the square
    assert image.width == image.height and (np.asarray(image) == (220, 40, 40)).all()


def test_calls_past_the_limit_and_images_past_the_total_budget_get_a_message():
    env, _ = zoom_env("tiny", max_tool_calls=3, max_image_tokens_per_turn=16, max_image_tokens=20)
    box = [0, 0, 100, 100]
    assert isinstance(env.image_zoom_in_tool(box), list)
    assert "image budget spent (20 tokens)" in env.image_zoom_in_tool(box)  # 16 + 16 > 20
    assert "image budget spent" in env.image_zoom_in_tool([0, 0, 10, 200])
    assert "no calls left (limit 3)" in env.image_zoom_in_tool(box)
    env.reset(images=[canvas()])
    assert env.failures == 0 and isinstance(env.image_zoom_in_tool(box), list)


def _limits() -> Limits:
    return Limits(
        max_tool_calls=10, max_image_tokens_per_turn=4, max_image_tokens=100, deadline_s=0.5
    )


def _raises():
    raise RuntimeError("disk on fire")


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        (_raises, "disk on fire"),
        (lambda: time.sleep(5), "timed out after 0.5 s"),
        (lambda: 42, "returned int, not an image"),
        (lambda: [{"type": "image", "image": "img.png"}], "returned str, not an image"),
    ],
)
def test_a_tool_that_raises_hangs_or_returns_no_image_becomes_a_counted_message(tool, message):
    calls = ToolCalls(_limits())
    started = time.monotonic()
    out = calls.run("t", tool)
    assert out == f"Error: {message}" and calls.failures == 1
    assert time.monotonic() - started < 2  # a hung call is abandoned at the deadline


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_an_image_of_another_mode_comes_back_rgb_within_the_budget(mode):
    calls = ToolCalls(_limits())
    out = calls.run("t", lambda: Image.new(mode, (300, 200)))
    image = out[0]["image"]
    assert image.mode == "RGB" and image.width * image.height <= 4 * 28 * 28
    assert calls.failures == 0 and calls.image_tokens == (image.width // 28) * (image.height // 28)


@pytest.mark.parametrize("env", ENVS)
def test_every_env_option_composes_and_says_its_turns(env):
    cfg = compose([f"env={env}"])
    plan = runplan.of(cfg)
    turns = environments.max_turns(plan.env)
    if env == "none":
        assert environments.of(cfg.env) is None and plan.env is None and turns is None
    else:
        assert turns == cfg.env.max_turns - 1 >= 0
        # at least one tool, picked as TRL picks them
        assert environments.tools_of(plan.env, plan.tool_limits()), env


def test_the_data_check_counts_the_tool_schema_the_trainer_renders_into_each_prompt(tmp_path):
    """The prompt length DataCheck reports equals the length of what TRL's GRPOTrainer
    tokenizes for the prompt (`apply_chat_template(..., tools=...)`, images expanded)."""
    from vlexp.data import build_datasets
    from vlexp.data.check import DataCheck
    from vlexp.models.loading import load_processor

    cfg = compose(
        ["env=zoom", "data=shapes_zoom", "data.prepare.num_train=4", "data.prepare.num_eval=2"]
    )
    plan = runplan.of(cfg)
    processor = load_processor(cfg.model, plan.family)
    environments.speak_tools(processor, plan.family)
    tools = environments.tools_of(plan.env, plan.tool_limits())
    check = DataCheck(plan.data, processor, tools=tools)
    train, _ = build_datasets(cfg.data, cfg.algo.kind, check)
    row = train[0]
    messages = [
        {
            **m,
            "content": [
                {"type": "image", "image": row["images"][0]} if p["type"] == "image" else p
                for p in m["content"]
            ],
        }
        if isinstance(m["content"], list)
        else m
        for m in row["prompt"]
    ]
    ids = processor.apply_chat_template(
        [messages], tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"][0]
    reported = check.stats["train"]["prompt_tokens"]
    assert max(reported) == len(ids) and len(ids) > 300  # the schema is most of it
    assert not math.isnan(len(ids))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algo.args.max_completion_length=32"], "algo.args.max_completion_length=32 cannot hold"),
        (["env.max_turns=0"], "env.max_turns=0: must be at least 1"),
        (["env.deadline_s=0"], "env.deadline_s=0: must be a positive number"),
    ],
)
def test_limits_that_cannot_work_stop_before_anything_loads(overrides, message):
    from vlexp.validate import ConfigError, validate

    with pytest.raises(ConfigError, match=message):
        validate(compose(["env=zoom", *overrides]), machine=False)


def test_a_tool_image_budget_above_the_models_is_refused():
    """The processor (the reference) shrinks a tool's image to model.max_pixels: a 224 px
    result, 64 tokens by env.max_image_tokens_per_turn=64, reaches model=tiny as 16."""
    from PIL import Image

    from vlexp.models.loading import load_processor
    from vlexp.validate import ConfigError, validate

    cfg = compose(["env=zoom", "env.max_image_tokens_per_turn=64"])
    processor = load_processor(cfg.model, families.resolve(cfg.model))
    grid = processor.image_processor(images=[Image.new("RGB", (224, 224))])["image_grid_thw"]
    assert int(grid[0].prod()) // 4 == 16 < 64
    with pytest.raises(
        ConfigError,
        match=r"max_image_tokens_per_turn=64 is more than model\.max_pixels=12544 allows \(16",
    ):
        validate(cfg, machine=False)
    validate(compose(["env=zoom", "env.max_image_tokens_per_turn=16"]), machine=False)


def test_a_trainer_without_tools_is_named_before_the_model_loads():
    from trl import DPOTrainer, GRPOTrainer

    cfg = compose(["env=zoom", "algo=dpo"])
    with pytest.raises(ValueError, match="algo=dpo trains with DPOTrainer, which takes no tools"):
        environments.check_trainer(cfg.env, DPOTrainer, cfg.algo.name)
    environments.check_trainer(cfg.env, GRPOTrainer, cfg.algo.name)  # the GRPO family passes


def test_the_rewarded_zoom_adds_one_reward_column_as_trl_reads_it():
    """TRL 1.16 takes an environment's reward from a `get_reward` function of its class (and
    exposes every other public function as a tool): the rewarded variant has one, zoom stays
    its only tool, and the bonus follows a successful zoom only."""
    import inspect

    cfg = compose(["env=zoom", "env.factory._target_=vlexp.environments.zoom.RewardedZoomEnv"])
    limits = runplan.of(cfg).tool_limits()
    env = environments.factory(cfg.env, limits)()
    members = dict(inspect.getmembers(type(env), predicate=inspect.isfunction))
    tools = environments.tools_of(cfg.env, limits)
    assert "get_reward" in members and [t.__name__ for t in tools] == ["image_zoom_in_tool"]
    env.reset(images=[canvas()])
    assert env.get_reward() == 0.0
    env.image_zoom_in_tool([1, 2])  # an error message earns nothing
    assert env.get_reward() == 0.0
    env.image_zoom_in_tool([0, 0, 200, 200])
    assert env.get_reward() == pytest.approx(0.1)
    zoom = compose(["env=zoom"]).env
    assert not hasattr(environments.factory(zoom, limits)(), "get_reward")
