"""rollout=hf_fast through the command's own builder, on CPU: every algorithm that generates
gets its completions through the engine (vlexp.rollout.fast.FastGenerate), LoRA merged while
generating, and `perf/recompiles` is in every logged row."""

from __future__ import annotations

import pytest

from tests.helpers import build_trainer, read_metrics

SMALL = ["data.prepare.num_train=32", "data.prepare.num_eval=16", "train.logging_steps=1"]


@pytest.fixture
def engine_calls(monkeypatch):
    from vlexp.rollout.fast import FastGenerate

    calls = []
    real = FastGenerate.__call__

    def counted(self, *args, **kwargs):
        calls.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FastGenerate, "__call__", counted)
    return calls


def test_rollout_hf_fast_lora_grpo_logs_recompiles(
    tmp_path, shapes_dir, tiny_model, engine_calls, monkeypatch
):
    # The command: python -m vlexp rollout=hf_fast memory=lora train.max_steps=4
    from peft.tuners.lora import LoraLayer
    from transformers import GenerationMixin

    trainer, _ = build_trainer(
        [*SMALL, "rollout=hf_fast", "memory=lora", "train.max_steps=4"], tmp_path
    )
    merged_during_generate = []
    real = GenerationMixin.generate

    def watch(self, *args, **kwargs):  # the decoding the policy class's generate reaches
        layers = [m for m in trainer.model.modules() if isinstance(m, LoraLayer)]
        merged_during_generate.append(all(layer.merged for layer in layers))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", watch)
    trainer.train()
    rows = [row for row in read_metrics(tmp_path) if "loss" in row]
    assert len(rows) == 4
    assert all(row["perf/recompiles"] == 0.0 for row in rows)  # CPU: compile auto = off
    assert len(engine_calls) == 4 and merged_during_generate == [True] * 4
    assert not any(getattr(m, "merged", False) for m in trainer.model.modules())


@pytest.mark.parametrize("algo", ["rloo", "online_dpo", "ppo"])
def test_rollout_hf_fast_serves_other_generating_trainers(
    algo, tmp_path, shapes_dir, tiny_model, engine_calls
):
    batch = ["train.per_device_train_batch_size=2"] if algo == "online_dpo" else []
    trainer, _ = build_trainer(
        [*SMALL, f"algo={algo}", "rollout=hf_fast", "train.max_steps=1", *batch], tmp_path
    )
    trainer.train()
    assert engine_calls, f"algo={algo} generated without the rollout engine"
    assert "perf/recompiles" in read_metrics(tmp_path)[0]
