"""Every model family with a tiny build (from the family table): LoRA presets adapt what they
say (experts included or not) and never the vision tower; video data stops before loading
where the family takes none; the reward model and PPO critic on new families; the Qwen3-VL
presets with the tiny swapped in. The family x algorithm matrix, GRPO on every family included
(final/ reloaded and generating from an image), is test_family_matrix.py; the GRPO command per
family that was here ran the same run a second time in the whole suite (about 4 minutes)."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers import (
    build_trainer,
    compose,
    read_metrics,
    run_cli,
    tiny_families,
    tiny_preset,
)
from vlexp.families import FAMILIES as TABLE

# Every family with a tiny build but the default model's, from the family table.
FAMILIES = tiny_families(default=False)
MOE = {name for name in FAMILIES if TABLE[name].expert_parameters}
SMALL = ["train.max_steps=2", "train.save_steps=1000", "data.prepare.num_train=64"]


@pytest.mark.parametrize(
    "family, memory, experts",
    [
        ("qwen3_vl_moe", "lora", False),
        ("qwen3_vl_moe", "lora_experts", True),
        ("qwen3_5_moe", "lora_experts", True),
        ("gemma3", "lora", False),
    ],
)
def test_lora_presets_adapt_experts_only_when_asked(family, memory, experts, tmp_path, shapes_dir):
    from vlexp import families

    overrides = [f"model={tiny_preset(family)}", "algo=sft", f"memory={memory}", *SMALL]
    trainer, _ = build_trainer(overrides, tmp_path)
    adapted = {n.split(".lora_")[0] for n, _ in trainer.model.named_parameters() if ".lora_" in n}
    vision = families.FAMILIES[family].vision_modules
    import re

    assert adapted and not any(
        re.fullmatch(vision, n.removeprefix("base_model.model.")) for n in adapted
    )
    assert any(".self_attn.q_proj" in n for n in adapted)
    assert any(".mlp.experts" in n for n in adapted) == experts
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert all(".lora_" in n for n in trainable)


def test_lora_experts_on_a_dense_model_stops_before_loading(tmp_path):
    result = run_cli("model=tiny_qwen3_vl", "memory=lora_experts", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "vlexp: config error:" in result.stderr and "has none: use memory=lora" in result.stderr
    assert not (tmp_path / "final").exists()


def _geometry_records(shapes_dir, path, count: int = 16):
    """Shapes counting questions in the geometry preset's format (`\\boxed{}` solutions)."""
    lines = (shapes_dir / "train.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if '"count"' in line][:count]
    rows = [
        {"image": r["image"], "problem": r["prefix"], "solution": f"\\boxed{{{r['solution']}}}"}
        for r in records
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_qwen3_vl_8b_geometry_preset_runs_with_the_tiny_swapped_in(tmp_path, shapes_dir):
    from tests.e2e.inprocess import train_in_process

    preset = compose(["experiment=qwen3_vl_8b_geometry_grpo"])
    assert preset.model.name_or_path == "Qwen/Qwen3-VL-8B-Instruct"
    assert preset.model.max_pixels == 1024 * 32 * 32
    assert list(preset.reward.funcs) == ["think_format", "accuracy"]
    assert preset.algo.args.num_generations == 8

    train = _geometry_records(shapes_dir, tmp_path / "geometry.jsonl")
    trainer, rows = train_in_process(
        [
            "experiment=qwen3_vl_8b_geometry_grpo",
            "model=tiny_qwen3_vl",
            "train.max_steps=2",
            "train.save_steps=1000",
            "algo.args.max_completion_length=48",
            f"data.train={train}",
            f"data.image_root={shapes_dir}",
        ],
        tmp_path / "run",
    )
    assert trainer.num_generations == 8 and trainer.reward_func_names == [
        "think_format",
        "accuracy",
    ]
    prompt = trainer.train_dataset[0]["prompt"][-1]["content"][-1]["text"]
    assert prompt.endswith("give the final answer as \\boxed{} inside <answer> </answer> tags.")
    assert [row["step"] for row in rows] == [1, 2]
    assert all("rewards/accuracy/mean" in row and "kl" in row for row in rows)


def test_qwen3_vl_30b_a3b_lora_zero3_preset_runs_with_the_tiny_moe_swapped_in(tmp_path, shapes_dir):
    from tests.e2e.inprocess import train_in_process

    preset = compose(["experiment=qwen3_vl_30b_a3b_lora_zero3"])
    assert preset.model.name_or_path == "Qwen/Qwen3-VL-30B-A3B-Instruct"
    assert preset.memory.deepspeed.zero_optimization.stage == 3
    assert preset.memory.peft.r == 32 and preset.memory.gradient_checkpointing
    assert "target_parameters" not in preset.memory.peft  # experts stay frozen
    assert preset.launcher.num_processes == 8

    # One process here: ZeRO-3 needs the launcher (tests/distributed runs it on the tiny MoE).
    train = _geometry_records(shapes_dir, tmp_path / "geometry.jsonl")
    trainer, rows = train_in_process(
        [
            "experiment=qwen3_vl_30b_a3b_lora_zero3",
            "model=tiny_qwen3_vl_moe",
            "memory=[lora,grad_ckpt]",
            "launcher=local",
            "train.max_steps=2",
            "train.save_steps=1000",
            "algo.args.max_completion_length=48",
            f"data.train={train}",
            f"data.image_root={shapes_dir}",
        ],
        tmp_path / "run",
    )
    assert trainer.beta == 0.0 and trainer.ref_model is None
    assert [row["step"] for row in rows] == [1, 2]
    assert all(row["aux_loss"] > 0 and "rewards/accuracy/mean" in row for row in rows)
    assert (tmp_path / "run" / "final" / "adapter_config.json").is_file()


@pytest.mark.slow  # 6 short runs, ~2 minutes
@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5_moe", "gemma3"])
def test_reward_model_then_ppo_on_a_new_family(family, tmp_path, shapes_dir):
    """The value head uses the family's backbone (Qwen3VLModel, Gemma3Model, ...); PPO's
    critic starts from the trained reward model. Each algorithm alone, with and without LoRA,
    on every family: test_family_matrix.py."""
    from vlexp.recipe.run import train

    reward_dir = tmp_path / "rm"
    train(compose([f"model={tiny_preset(family)}", "algo=reward_model", *SMALL]), reward_dir)
    config = json.loads((reward_dir / "final" / "config.json").read_text())
    assert config["architectures"][0].endswith("ForRewardModel")
    rows = read_metrics(reward_dir)
    assert all(math.isfinite(row["loss"]) for row in rows)

    ppo_dir = tmp_path / "ppo"
    overrides = [
        f"model={tiny_preset(family)}",
        "algo=ppo",
        "reward=[think_format,accuracy]",
        *SMALL,
    ]
    train(compose([*overrides, f"algo.args.critic_init={reward_dir}"]), ppo_dir)
    rows = read_metrics(ppo_dir)
    assert [row["step"] for row in rows] == [1, 2]
    assert all(math.isfinite(row["loss/value"]) for row in rows)
    assert "objective/kl" in rows[0] and "rewards/accuracy/mean" in rows[0]
    if family in MOE:  # the critic loaded from the reward model routes, and is balanced too
        assert all(row["aux_loss"] > 0 and row["val/aux_loss"] > 0 for row in rows)


@pytest.mark.parametrize("family", tiny_families(video=False))
def test_a_family_without_video_refuses_video_data_before_loading(family, tmp_path):
    preset = f"model={tiny_preset(family)}"
    result = run_cli(preset, "data=shapes_video", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"the {family} family reads images only" in result.stderr


@pytest.mark.parametrize("family, algo", [("qwen3_vl_moe", "sft"), ("gemma3", "grpo")])
def test_in_training_evaluation_generates_on_a_new_family(family, algo, tmp_path, shapes_dir):
    """Batched generation mid-run: on the MoE right after TRL turned router logits on."""
    from vlexp.recipe.run import train

    overrides = [
        f"model={tiny_preset(family)}",
        f"algo={algo}",
        "train.eval_steps=2",
        "eval.limit=8",
    ]
    if algo == "grpo":
        overrides.append("reward=[think_format,accuracy]")
    train(compose([*overrides, *SMALL]), tmp_path)
    evaluated = [row for row in read_metrics(tmp_path) if "eval/reward" in row]
    assert evaluated and 0.0 <= evaluated[-1]["eval/rewards/think_format/mean"] <= 1.0


def test_resume_auto_continues_a_moe_run(tmp_path, shapes_dir):
    run_dir = tmp_path / "run"
    base = [
        "model=tiny_qwen3_vl_moe",
        "algo=grpo",
        "reward=[think_format,accuracy]",
        "train.save_steps=1",
        f"hydra.run.dir={run_dir}",
    ]
    first = run_cli(*base, "train.max_steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli(*base, "train.max_steps=3", "resume=auto")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "continuing from" in second.stderr + second.stdout
    steps = [row["step"] for row in read_metrics(run_dir)]
    assert steps[-1] == 3 and steps.count(1) == 1  # step 1 was not trained again


@pytest.mark.parametrize("family", sorted(MOE))
def test_value_head_router_loss_is_the_causal_lms(family, vlexp_cache):
    """The reward model and the PPO critic add the same load-balancing loss transformers'
    own MoE class computes on the same backbone weights and inputs."""
    import torch
    from transformers import AutoModelForImageTextToText

    from vlexp.algorithms.reward_model import reward_class
    from vlexp.models import tiny

    path = tiny.ensure(family)
    lm = AutoModelForImageTextToText.from_pretrained(path)
    head = reward_class(family).from_pretrained(path)
    ids = torch.randint(10, 200, (2, 9))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9])  # left padding is masked out
    with torch.no_grad():
        expected = lm(input_ids=ids, attention_mask=mask, output_router_logits=True).aux_loss
        out = head(input_ids=ids, attention_mask=mask, output_router_logits=True)
        plain = head(input_ids=ids, attention_mask=mask)
    assert out.aux_loss is not None and out.aux_loss > 0
    assert torch.allclose(out.aux_loss, expected)
    assert plain.aux_loss is None and torch.equal(plain.logits, out.logits)
