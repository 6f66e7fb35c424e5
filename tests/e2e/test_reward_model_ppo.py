"""End to end on the tiny model: reward-model training, reward=model in GRPO, PPO (full, LoRA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import read_metrics, run_cli

SMALL_DATA = ["data.prepare.num_train=32", "data.prepare.num_eval=16"]
PPO_SMALL = [
    "algo=ppo",
    "train.max_steps=4",
    "train.per_device_train_batch_size=4",
    "algo.args.ppo_epochs=2",
    "algo.args.num_mini_batches=2",
    "algo.args.max_completion_length=12",
    "reward=[think_format,accuracy]",
]
PPO_METRICS = {
    "objective/kl",
    "objective/entropy",
    "objective/scores",
    "policy/clipfrac",
    "policy/approxkl",
    "loss/policy",
    "loss/value",
    "val/mean",
    "completions/mean_length",
}


def _ok(result) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


@pytest.fixture(scope="module")
def reward_run(tiny_model, tmp_path_factory) -> Path:
    """A reward model trained for 40 steps (10 epochs) on 32 shapes pairs, evaluated on the
    same pairs before and after training."""
    run_dir = tmp_path_factory.mktemp("rm") / "run"
    _ok(
        run_cli(
            "algo=reward_model",
            *SMALL_DATA,
            "data.eval=${data.train}",
            "train.max_steps=40",
            "+algo.args.eval_strategy=steps",
            "+algo.args.eval_steps=40",
            "+algo.args.eval_on_start=true",
            f"hydra.run.dir={run_dir}",
        )
    )
    return run_dir


@pytest.fixture(scope="module")
def untrained_reward_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model's backbone with a fresh value head, saved as a reward-model dir."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlexp.algorithms.reward_model import from_causal_lm

    out = tmp_path_factory.mktemp("untrained_rm")
    from_causal_lm(AutoModelForImageTextToText.from_pretrained(tiny_model)).save_pretrained(out)
    AutoProcessor.from_pretrained(tiny_model).save_pretrained(out)
    return out


@pytest.mark.slow
def test_reward_model_learns_shapes_pairs(reward_run):
    rows = read_metrics(reward_run)
    train_rows = [r for r in rows if "loss" in r]
    assert {"accuracy", "margin", "min_reward", "mean_reward", "max_reward"} <= set(train_rows[-1])
    before, after = [r["eval/accuracy"] for r in rows if "eval/accuracy" in r]
    assert after >= 0.75, f"pair accuracy {before:.2f} -> {after:.2f} (chance is 0.5)"
    assert after > before
    config = (reward_run / "final" / "config.json").read_text()
    assert "Qwen2_5_VLForRewardModel" in config


def test_grpo_with_reward_model_and_rule_reward(untrained_reward_model, tmp_path):
    result = run_cli(
        "reward=[model,think_format]",
        f"reward.funcs.model.path={untrained_reward_model}",
        "reward.weights.model=0.5",
        "train.max_steps=2",
        "train.per_device_train_batch_size=4",
        "algo.args.max_completion_length=12",
        f"hydra.run.dir={tmp_path}",
    )
    _ok(result)
    rows = read_metrics(tmp_path)
    assert "rewards/reward_model/mean" in rows[0] and "rewards/think_format/mean" in rows[0]
    assert rows[0]["rewards/reward_model/std"] > 0  # a real score per completion, not a constant


def test_reward_model_path_is_checked_before_loading(tmp_path):
    result = run_cli("reward=[model]", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "reward.funcs.model.path=<run dir of an algo=reward_model run>" in result.stderr
    result = run_cli("reward=[model]", f"reward.funcs.model.path={tmp_path}", "train.max_steps=1")
    assert result.returncode != 0 and "no trained model there" in result.stderr


def test_ppo_rule_reward_logs_metrics_and_saves_loadable_final(tiny_model, tmp_path):
    _ok(run_cli(*PPO_SMALL, "train.save_steps=2", f"hydra.run.dir={tmp_path}"))
    rows = read_metrics(tmp_path)
    assert len(rows) == 4
    rollout_rows = [r for r in rows if "objective/kl" in r]
    assert len(rollout_rows) == 1  # 4 steps = 1 rollout x 2 epochs x 2 mini-batches
    assert set(rows[0]) >= PPO_METRICS
    assert rows[0]["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # policy == reference
    assert 0 < rows[0]["completions/mean_length"] <= 12
    assert rows[0]["policy/approxkl"] == pytest.approx(0.0, abs=1e-6)  # first step: same params
    assert any(r["policy/approxkl"] > 0 for r in rows[1:])  # later steps moved the policy

    from transformers import AutoModelForImageTextToText

    from vlexp.algorithms.reward_model import load_reward_model

    policy = AutoModelForImageTextToText.from_pretrained(tmp_path / "final")
    assert policy.config.model_type == "qwen2_5_vl"
    critic = load_reward_model(tmp_path / "final" / "critic")
    assert critic.score.weight.shape[0] == 1

    # Resume from the mid-run checkpoint: policy and critic come back, training continues.
    resumed = tmp_path / "resumed"
    checkpoint = tmp_path / "checkpoint-2"
    assert (checkpoint / "critic" / "model.safetensors").exists()
    _ok(run_cli(*PPO_SMALL, f"+resume={checkpoint}", f"hydra.run.dir={resumed}"))
    assert [r["step"] for r in read_metrics(resumed)] == [3, 4]


def test_ppo_with_lora_saves_an_adapter(tiny_model, tmp_path):
    _ok(run_cli(*PPO_SMALL, "memory=lora", "train.max_steps=2", f"hydra.run.dir={tmp_path}"))
    rows = read_metrics(tmp_path)
    assert rows[0]["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # adapter-off reference
    assert (tmp_path / "final" / "adapter_config.json").exists()
    assert (tmp_path / "final" / "critic" / "adapter_config.json").exists()


def test_ppo_mini_batches_must_divide_the_batch(tmp_path):
    result = run_cli("algo=ppo", "algo.args.num_mini_batches=3", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "algo.args.num_mini_batches (3)" in result.stderr
