"""Fast paths are config options that stop with a clear message where they cannot run."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.helpers import compose, run_cli
from vlexp.validate import ConfigError, validate
from vlexp.validate import machine as checks

HAS_CUDA = importlib.util.find_spec("torch") is not None and __import__("torch").cuda.is_available()


def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        validate(compose(overrides))
    return str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn present")
def test_flash_attention_without_the_package_stops_before_loading(tmp_path):
    result = run_cli("model.attn_implementation=flash_attention_2", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "vlexp: config error: model.attn_implementation=flash_attention_2" in result.stderr
    assert "pip install flash-attn" in result.stderr and "sdpa" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "config.resolved.yaml").exists()


def test_flash_attention_without_cuda_names_sdpa(monkeypatch):
    monkeypatch.setattr(checks, "_installed", lambda module: True)
    monkeypatch.setattr(checks, "_cuda_available", lambda: False)
    message = _error(["model.attn_implementation=flash_attention_2"])
    assert "CUDA GPUs only" in message and "model.attn_implementation=sdpa" in message


def test_unknown_attention_lists_the_known_ones():
    message = _error(["model.attn_implementation=flash"])
    assert "flash_attention_2" in message and "sdpa" in message


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is not None, reason="liger present")
def test_liger_without_the_package_says_how_to_install():
    message = _error(["memory=liger"])
    assert "memory=liger" in message and "pip install liger-kernel" in message


def test_liger_without_cuda_stops(monkeypatch):
    monkeypatch.setattr(checks, "_installed", lambda module: True)
    monkeypatch.setattr(checks, "_cuda_available", lambda: False)
    assert "CUDA GPUs only" in _error(["memory=liger"])


def test_liger_preset_turns_on_trl_use_liger_kernel(tmp_path):
    from vlexp.recipe.run import build_args

    args = build_args(compose(["memory=liger", "algo=sft"]), tmp_path)
    assert args.use_liger_kernel is True
    assert build_args(compose(["algo=sft"]), tmp_path).use_liger_kernel is False


def test_planner_skips_machine_checks_for_a_gpu_job():
    validate(
        compose(["memory=liger", "model.attn_implementation=flash_attention_2"]), machine=False
    )


@pytest.mark.parametrize("key", ["packing", "padding_free"])
def test_sft_packing_and_padding_free_are_refused_for_images_with_trls_reason(key):
    message = _error(["algo=sft", f"+algo.args.{key}=true"])
    assert f"algo.args.{key}=true" in message and "not supported for vision datasets" in message


def test_sft_padding_free_is_allowed_for_text_only_jsonl(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"prefix": "2+2?", "suffix": "4"}) + "\n")
    validate(
        compose(["algo=sft", "data=jsonl", f"data.train={data}", "+algo.args.padding_free=true"])
    )
    data.write_text(json.dumps({"image": "a.png", "prefix": "2+2?", "suffix": "4"}) + "\n")
    with pytest.raises(ConfigError):
        validate(
            compose(
                ["algo=sft", "data=jsonl", f"data.train={data}", "+algo.args.padding_free=true"]
            )
        )


def test_dpo_padding_free_is_refused_instead_of_silently_dropped():
    message = _error(["algo=dpo", "+algo.args.padding_free=true"])
    assert "DPOTrainer disables it" in message


def test_torch_compile_without_a_compiler_stops(monkeypatch):
    monkeypatch.setattr(checks.shutil, "which", lambda name: None)
    message = _error(["train.torch_compile=true"])
    assert "train.torch_compile=true" in message and "compiler" in message


def test_torch_compile_reaches_the_trl_args(tmp_path):
    from vlexp.recipe.run import build_args

    assert build_args(compose(["train.torch_compile=true"]), tmp_path).torch_compile is True


@pytest.mark.parametrize("key", ["use_transformers_continuous_batching", "use_transformers_paged"])
def test_continuous_batching_generation_is_refused_for_image_prompts(key):
    message = _error([f"+algo.args.{key}=true"])
    assert f"algo.args.{key}=true" in message and "without" in message and "use_vllm" in message


def test_liger_grpo_loss_is_gone_from_trl():
    assert "use_liger_loss" in _error(["+algo.args.use_liger_loss=true"])


def test_static_cache_preset_reaches_generation(tmp_path):
    from vlexp.recipe.run import build_args

    args = build_args(compose(["speed=static_cache"]), tmp_path)
    assert args.generation_kwargs == {"cache_implementation": "static"}
    ppo = build_args(compose(["algo=ppo", "reward=[think_format]", "speed=static_cache"]), tmp_path)
    assert ppo.generation_kwargs == {"cache_implementation": "static"}


def test_rl_gpu_preset_turns_on_checkpointing_liger_and_static_cache(tmp_path):
    cfg = compose(["speed=rl_gpu"])
    assert cfg.memory.gradient_checkpointing and cfg.memory.liger_kernel
    assert cfg.algo.args.generation_kwargs.cache_implementation == "static"


def test_speed_presets_need_an_algorithm_that_generates():
    message = _error(["algo=sft", "speed=static_cache"])
    assert "generation_kwargs" in message and "algo=sft does not" in message
