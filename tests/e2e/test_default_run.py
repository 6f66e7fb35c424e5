"""The embedded default experiment, run as a user runs it: `python -m vlexp`."""

from __future__ import annotations

import json
import math

from tests.helpers import read_metrics, run_cli

REQUIRED_METRICS = (
    "loss",
    "reward",
    "reward_std",
    "kl",
    "entropy",
    "completions/mean_length",
    "rewards/think_format/mean",
    "rewards/accuracy/mean",
)


def test_default_experiment_trains_into_a_run_dir(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    result = run_cli("train.max_steps=4", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"run dir: {run_dir}" in result.stdout

    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "train.max_steps=4" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    resolved = (run_dir / "config.resolved.yaml").read_text()
    assert "${" not in resolved and "trl.GRPOTrainer" in resolved

    rows = read_metrics(run_dir)
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    for row in rows:
        for name in REQUIRED_METRICS:
            assert isinstance(row[name], float | int) and math.isfinite(row[name]), (name, row)
    assert rows[0]["kl"] >= 0.0 and rows[0]["completions/mean_length"] > 0

    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(run_dir / "final")
    processor = AutoProcessor.from_pretrained(run_dir / "final")
    assert model.config.model_type == "qwen2_5_vl"
    assert processor.image_processor.size["longest_edge"] == 12544


def test_metrics_are_written_once_per_logging_step(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    result = run_cli("train.max_steps=4", "train.logging_steps=2", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == [2, 4, 4]  # two logging steps, then the end-of-training summary
