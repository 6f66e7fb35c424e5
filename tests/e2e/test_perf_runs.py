"""Every run reports its speed: perf/* and timing_s/* in metrics.jsonl (vlexp.recipe.perf).

On CPU: tokens/s and seconds per step (and per rollout phase for algorithms that generate);
the GPU-only metrics (perf/mfu, perf/max_memory_*) are absent. The token count is checked
against TRL's own `num_tokens`: the two count the same tokens independently."""

from __future__ import annotations

import pytest

from tests.helpers import build_trainer, read_metrics

SMALL = ["data.prepare.num_train=32", "data.prepare.num_eval=16", "train.logging_steps=1"]


def _train(overrides: list[str], run_dir, check=None):
    trainer, _ = build_trainer([*SMALL, *overrides], run_dir)
    if check is not None:
        check(trainer)
    trainer.train()
    return [row for row in read_metrics(run_dir) if "loss" in row]


def _suppresses_placeholders(trainer) -> None:
    """Generation never samples a vision placeholder (recipe.run.keep_placeholders_out)."""
    config = trainer.processing_class.tokenizer
    image_pad = config.convert_tokens_to_ids("<|image_pad|>")
    assert image_pad in trainer.generation_config.suppress_tokens


def _tokens_match_trl(rows: list[dict]) -> None:
    previous = 0.0
    for row in rows:
        counted = row["perf/tokens_per_second_per_gpu"] * row["timing_s/step"]
        assert counted == pytest.approx(row["num_tokens"] - previous, rel=1e-6)
        previous = row["num_tokens"]


def test_sft_logs_tokens_per_second_and_step_time(tmp_path, shapes_dir, tiny_model):
    rows = _train(
        ["algo=sft", "train.max_steps=3", "train.per_device_train_batch_size=4"], tmp_path
    )
    assert len(rows) == 3
    for row in rows:
        assert row["perf/tokens_per_second_per_gpu"] > 0 and row["timing_s/step"] > 0
        assert not any(
            k.startswith(("perf/mfu", "perf/max_memory", "timing_s/generate")) for k in row
        )
    _tokens_match_trl(rows)


def test_grpo_logs_generate_logprobs_and_update_seconds(tmp_path, shapes_dir, tiny_model):
    rows = _train(
        ["algo=grpo", "train.max_steps=2", "algo.args.beta=0.04"],
        tmp_path,
        _suppresses_placeholders,
    )
    assert len(rows) == 2
    for row in rows:
        phases = [row[f"timing_s/{p}"] for p in ("generate", "logprobs", "update")]
        assert all(seconds > 0 for seconds in phases)  # beta > 0: reference log-probs
        assert sum(phases) <= row["timing_s/step"]
    _tokens_match_trl(rows)


def test_ppo_logs_its_rollout_phases(tmp_path, shapes_dir, tiny_model):
    rows = _train(
        ["algo=ppo", "train.max_steps=2", "train.per_device_train_batch_size=2",
         "algo.args.ppo_epochs=1", "algo.args.max_completion_length=8"],
        tmp_path,
        _suppresses_placeholders,
    )  # fmt: skip
    assert len(rows) == 2
    for row in rows:
        # The policy and value pass over the rollout plus the reference pass: no-grad forwards.
        assert row["timing_s/generate"] > 0 and row["timing_s/logprobs"] > 0
        assert row["timing_s/update"] > 0
        assert row["perf/tokens_per_second_per_gpu"] > 0
