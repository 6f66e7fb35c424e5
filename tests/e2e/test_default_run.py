"""The embedded default experiment, run as a user runs it: `python -m vlexp`."""

from __future__ import annotations

import json
import math

from PIL import Image

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


# Lines libraries print that vlexp silences or replaces (vlexp.recipe.console).
NOISE = (
    "{'loss'",  # transformers' per-step metrics dict
    "FutureWarning",
    "is deprecated",
    "Setting accelerator to CPU",
    "Writing model shards",
    "Loading weights",
    "Casting the dataset",
    "huggingface.co/None",
    "Timeout is disabled",  # math-verify, off the main thread (vlexp keeps the deadline)
)


def test_the_console_is_one_bar_and_ends_with_the_runs_answer(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    result = run_cli("train.max_steps=4", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    for noise in NOISE:
        assert noise not in console, noise
    # Nor any other warning: the default run has nothing to warn about.
    assert not [line for line in console.splitlines() if "warning" in line.lower()], console
    bar = result.stderr.replace("\r", "\n").splitlines()
    assert any("4/4" in line and "reward " in line and "kl " in line for line in bar)

    rows = read_metrics(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["algo"] == "grpo" and summary["model"] == "tiny://qwen2_5_vl"
    assert summary["steps"] == 4 and summary["data"]["name"] == "shapes"
    assert summary["metrics"]["reward"]["first"] == rows[0]["reward"]
    assert summary["metrics"]["reward"]["last"] == rows[-1]["reward"]
    assert summary["tokens_per_s"] > 0 and summary["peak_memory_gb"] > 0
    assert summary["paths"]["final"] == str(run_dir / "final")

    # The console ends with the answer: what ran, first -> last, where things are, what next.
    lines = result.stdout.strip().splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith("vlexp: grpo on ")]
    tail = lines[start:]
    assert tail[0].startswith("vlexp: grpo on tiny://qwen2_5_vl over shapes: 4 steps in ")
    reward = summary["metrics"]["reward"]
    shown = ["reward", f"{reward['first']:.4g}", "->", f"{reward['last']:.4g}"]
    assert shown in [line.split() for line in tail]
    assert f"vlexp: done. run dir: {run_dir}" in tail
    assert tail[-2:] == [
        f"  python -m vlexp.evaluate run={run_dir}",
        f"  python -m vlexp.compare {run_dir}",
    ]

    image = Image.open(run_dir / "curves.png")
    image.verify()
    assert image.size[0] >= 900
    card = (run_dir / "README.md").read_text()
    assert card == (run_dir / "final" / "README.md").read_text()
    assert "from the base model `tiny://qwen2_5_vl`" in card and "with **grpo**" in card
    assert f"| reward | {reward['first']:.4g} | {reward['last']:.4g} |" in card
    assert f'from_pretrained("{run_dir}/final")' in card and "None" not in card
    # The whole dict of every step is still in the log file.
    assert (run_dir / "app.log").read_text().count('"grad_norm"') == 4


def test_metrics_are_written_once_per_logging_step(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    result = run_cli("train.max_steps=4", "train.logging_steps=2", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == [2, 4, 4]  # two logging steps, then the end-of-training summary
