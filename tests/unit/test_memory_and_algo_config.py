"""Memory options compose; GPU-only options and removed TRL arguments stop before any load."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.helpers import compose, run_cli
from vlexp.validate import ConfigError, validate
from vlexp.validate import machine as validate_module


def test_memory_options_compose_in_any_order():
    both = compose(["memory=[lora,grad_ckpt]"]).memory
    assert both.peft.r == 16 and both.gradient_checkpointing is True
    assert compose(["memory=[grad_ckpt,lora]"]).memory == both
    stacked = compose(["memory=[qlora,grad_ckpt,adamw_8bit]", "model=qwen2_5_vl_3b"]).memory
    assert stacked.peft._target_ == "peft.LoraConfig"
    assert stacked.quantization.bnb_4bit_quant_type == "nf4"
    assert stacked.quantization.bnb_4bit_use_double_quant is True
    assert stacked.quantization.bnb_4bit_compute_dtype == "bfloat16"  # follows model.dtype
    assert stacked.gradient_checkpointing and stacked.optim == "adamw_bnb_8bit"


def test_memory_none_is_full_fine_tuning():
    memory = compose(["memory=none"]).memory
    assert OmegaConf.to_container(memory) == {
        "peft": None,
        "quantization": None,
        "gradient_checkpointing": False,
        "optim": None,
        "deepspeed": None,
        "liger_kernel": False,
    }


def test_qlora_config_instantiates_to_4bit_nf4_double_quant():
    from hydra.utils import instantiate

    quantization = instantiate(compose(["memory=qlora", "model=qwen2_5_vl_3b"]).memory.quantization)
    assert quantization.load_in_4bit and quantization.bnb_4bit_quant_type == "nf4"
    assert quantization.bnb_4bit_use_double_quant
    assert str(quantization.bnb_4bit_compute_dtype) == "torch.bfloat16"


def test_grad_ckpt_is_non_reentrant_in_the_trainer_args(tmp_path):
    from vlexp.recipe.run import build_args

    args = build_args(compose(["algo=sft", "memory=[lora,grad_ckpt]"]), tmp_path)
    assert args.gradient_checkpointing is True
    assert args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert build_args(compose(["algo=sft"]), tmp_path).gradient_checkpointing is False


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["memory=qlora"], "memory.quantization (QLoRA, 4-bit) needs"),
        (
            ["memory=adamw_8bit"],
            "the 8-bit optimizer 'adamw_bnb_8bit' (memory=adamw_8bit, or optim) needs",
        ),
        (["+algo.args.optim=paged_adamw_8bit"], "the 8-bit optimizer 'paged_adamw_8bit'"),
    ],
)
def test_gpu_only_options_stop_with_a_clear_message(overrides, names):
    cfg = compose(["algo=sft", *overrides])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert names in message
    # this machine has neither
    assert "bitsandbytes package (pip install 'vlexp[gpu]')" in message and "a CUDA GPU" in message


def test_gpu_only_checks_pass_on_a_cuda_machine_with_bitsandbytes(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(validate_module, "_runs_on_cpu", lambda cfg: False)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    validate(compose(["algo=sft", "memory=[qlora,grad_ckpt,adamw_8bit]"]))
    assert validate_module.check_optimizer(compose(["memory=adamw_8bit"])) == []


def test_qlora_stops_before_loading_through_the_cli(tmp_path):
    run_dir = tmp_path / "never"
    result = run_cli("algo=sft", "memory=[qlora,grad_ckpt]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 1
    assert "vlexp: config error: memory.quantization (QLoRA, 4-bit) needs" in result.stderr
    assert "bitsandbytes" in result.stderr and "a CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run_dir / "config.resolved.yaml").exists()  # nothing ran


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        (
            "rpo_alpha=0.5",
            "'algo.args.loss_type=[sigmoid,sft]' 'algo.args.loss_weights=[1.0,ALPHA]'",
        ),
        ("max_prompt_length=512", "only algo.args.max_length"),
        ("reference_free=true", "algo=simpo"),
        ("precompute_ref_log_probs=true", "memory=lora"),
    ],
)
def test_dpo_rejects_what_trl_removed_and_names_the_replacement(key, hint):
    prefix = "" if key.startswith("precompute") else "+"
    cfg = compose(["algo=dpo", f"{prefix}algo.args.{key}"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert f"algo.args.{key.split('=')[0]}" in str(err.value) and hint in str(err.value)


def test_orpo_keeps_the_knobs_its_own_trl_config_has():
    # Same record kind as DPO, but ORPOConfig still defines padding_value (DPOConfig dropped it).
    validate(compose(["algo=orpo", "+algo.args.padding_value=0"]))
    with pytest.raises(ConfigError, match="algo.args.padding_value does not exist"):
        validate(compose(["algo=dpo", "+algo.args.padding_value=0"]))


def test_sft_rejects_max_seq_length():
    with pytest.raises(ConfigError, match="use algo.args.max_length"):
        validate(compose(["algo=sft", "+algo.args.max_seq_length=1024"]))


def test_dpo_loss_knobs_pass_through_to_trl(tmp_path):
    from vlexp.recipe.run import build_args

    cfg = compose(
        [
            "algo=dpo",
            "algo.args.loss_type=[sigmoid,sft]",
            "algo.args.loss_weights=[1.0,0.5]",
            "algo.args.beta=0.25",
            "algo.args.label_smoothing=0.1",
        ]
    )
    args = build_args(cfg, tmp_path)
    assert args.loss_type == ["sigmoid", "sft"] and args.loss_weights == [1.0, 0.5]
    assert args.beta == 0.25 and args.label_smoothing == 0.1
