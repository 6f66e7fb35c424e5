"""Config rules: each bad combination stops before any model load, naming keys and fix."""

from __future__ import annotations

import sys
import time
import types

import pytest

from tests.helpers import compose, run_cli
from vlexp.paths import config_dir
from vlexp.validate import ConfigError, reward_columns, validate

QLORA = "memory.quantization={_target_:transformers.BitsAndBytesConfig,load_in_4bit:true}"


def _problems(*overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        validate(compose(list(overrides)))
    return str(caught.value)


ALGO_FILES = sorted(p.stem for p in (config_dir() / "algo").glob("*.yaml"))


def test_the_defaults_are_valid():
    validate(compose([]))


@pytest.mark.parametrize("algo", ALGO_FILES)
def test_every_algo_file_is_valid_and_binds_to_its_trl_config(algo, tmp_path):
    """Every file under conf/algo, listed from the folder (a new file is covered by itself):
    the config checks pass, and `algo.args` builds its TRL config class, which rejects a key
    it does not have (the validation alone does not know every TRL field)."""
    from vlexp.recipe.run import build_args

    cfg = compose([f"algo={algo}"])
    teacher = cfg.get("teacher")
    if teacher is not None and teacher.get("name_or_path") is None:
        # Required and model-specific (algo=distill): the student can be its own teacher.
        teacher.name_or_path = cfg.model.name_or_path
    validate(cfg)
    args = build_args(cfg, tmp_path)
    assert type(args).__name__ == cfg.algo.args._target_.rsplit(".", 1)[-1]


def test_grpo_needs_a_reward():
    assert "GRPO needs at least one reward" in _problems("reward=[]")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["algo.args.num_generations=3"],
            "launcher.num_processes = 8 is not a multiple of algo.args.num_generations = 3",
        ),
        (
            ["train.per_device_train_batch_size=2", "train.gradient_accumulation_steps=3"],
            "= 6 is not a multiple of algo.args.num_generations = 4",
        ),
        (
            ["+algo.args.generation_batch_size=12"],
            "algo.args.generation_batch_size=12 is not a multiple of train.per_device_train_batch_size x launcher.num_processes = 8",
        ),
        (
            ["+algo.args.generation_batch_size=16", "algo.args.num_generations=5"],
            "algo.args.generation_batch_size=16 is not a multiple of algo.args.num_generations=5",
        ),
        (
            ["+algo.args.steps_per_generation=3", "algo.args.num_generations=16"],
            "algo.args.steps_per_generation = 24 is not a multiple of algo.args.num_generations = 16",
        ),
        (
            ["+algo.args.steps_per_generation=2", "+algo.args.generation_batch_size=16"],
            "are both set: set only one of them",
        ),
        (["algo.args.num_generations=1"], "GRPO needs at least 2 per prompt"),
    ],
)
def test_generation_batch_rules(overrides, expected):
    assert expected in _problems(*overrides)


def test_generation_batch_counts_processes():
    validate(compose(["train.per_device_train_batch_size=2", "launcher.num_processes=2"]))
    assert "= 6 is not" in _problems(
        "train.per_device_train_batch_size=3", "launcher.num_processes=2"
    )


def test_qlora_needs_cuda_and_bitsandbytes():
    message = _problems("memory=lora", QLORA)
    assert "memory.quantization (QLoRA, 4-bit) needs" in message and "use memory=lora" in message
    assert "a CUDA GPU" in message  # this machine has none


def test_bf16_on_a_cpu_run():
    message = _problems("train.bf16=true", "train.use_cpu=true")
    assert "train.bf16=true on a CPU run" in message and "train.bf16=false" in message
    validate(compose(["train.bf16=null", "train.use_cpu=true"]))


def test_use_vllm_without_vllm(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    assert "algo.args.use_vllm=true (vllm_mode=colocate) needs the vllm package" in _problems(
        "algo.args.use_vllm=true"
    )


def test_reward_target_that_does_not_import():
    message = _problems("reward.funcs.accuracy._target_=vlexp.rewards.no_such_reward")
    assert message.startswith(
        "reward.funcs.accuracy._target_=vlexp.rewards.no_such_reward does not import"
    )


def test_reward_with_the_wrong_signature(monkeypatch):
    module = types.ModuleType("my_rewards")
    module.strict = lambda completions, solution: [0.0] * len(completions)  # no **kwargs
    module.fine = lambda completions, answer, box=None, **kwargs: [0.0]
    monkeypatch.setitem(sys.modules, "my_rewards", module)
    message = _problems("reward.funcs.accuracy._target_=my_rewards.strict")
    assert (
        "reward.funcs.accuracy._target_=my_rewards.strict: a reward must accept **kwargs" in message
    )
    cfg = compose(["reward.funcs.accuracy._target_=my_rewards.fine"])
    validate(cfg)
    # The columns a reward needs are its parameters without a default.
    assert reward_columns(cfg) == {"think_format": [], "accuracy": ["answer"]}


def test_min_pixels_above_max_pixels():
    assert "model.min_pixels (20000) > model.max_pixels (12544)" in _problems(
        "model.min_pixels=20000"
    )


def test_closed_choices():
    message = _problems("data.on_bad_record=ignore", "train.on_nan=zero", "data.check_sample=0")
    assert message.startswith("several problems:")
    for key in ("data.on_bad_record=ignore", "train.on_nan=zero", "data.check_sample=0"):
        assert key in message


def test_prompt_template_with_an_unknown_placeholder():
    message = _problems("data.prompt_template='Q: {questoin}'")
    assert message.startswith("data.prompt_template='Q: {questoin}' cannot be filled (KeyError")
    validate(compose(["data.prompt_template='Look: {question} Answer in <answer></answer>.'"]))


def test_trust_remote_code_is_off_in_every_model_config():
    from vlexp.paths import config_dir

    for path in sorted((config_dir() / "model").glob("*.yaml")):
        assert compose([f"model={path.stem}"]).model.trust_remote_code is False, path


def test_cli_fails_fast_before_importing_torch(tmp_path):
    start = time.monotonic()
    result = run_cli(
        "algo.args.num_generations=3",
        "train.bf16=true",
        "train.use_cpu=true",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert result.stderr.startswith("vlexp: config error: several problems:")
    assert "algo.args.num_generations = 3" in result.stderr and "train.bf16=true" in result.stderr
    assert not (tmp_path / "run" / "config.resolved.yaml").exists()
    assert elapsed < 15, elapsed  # no model, no torch: seconds even on a loaded machine
