"""One run, one number: a real tiny GRPO run's tokens/s in the live bar, the end-of-run block,
summary.json, `python -m vlexp.compare` and the model card agree with each other and with
tokens / training time read from the run's own records (the checkpoint's trainer_state.json
and metrics.jsonl's end-of-training row); its summary and curves.png split the reward per
function. A run that stops before training is not a row of `compare`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, read_metrics, run_cli

STEPS = 8
FAST = [
    f"train.max_steps={STEPS}",
    f"train.save_steps={STEPS}",  # the checkpoint's trainer_state.json: TRL's own token count
    "train.per_device_train_batch_size=4",
    "algo.args.num_generations=2",
]
REWARD_FUNCTIONS = ("rewards/accuracy/mean", "rewards/think_format/mean")


def number(pattern: str, text: str) -> float:
    """The last number `pattern` captures in `text` (thousands separators allowed)."""
    found = re.findall(pattern, text)
    assert found, (pattern, text[-2000:])
    return float(found[-1].replace(",", ""))


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, tiny_model, shapes_dir) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("numbers") / "run"
    result = run_cli(*FAST, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_tokens_per_second_is_one_number_on_every_surface(grpo_run, tmp_path):
    run_dir, result = grpo_run
    # The truth, from records vlexp does not compute: transformers' checkpoint state (TRL's
    # GRPO counts num_input_tokens_seen) and its train_runtime (the training loop's seconds).
    state = json.loads((run_dir / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    tokens = state["num_input_tokens_seen"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    (runtime,) = [json.loads(x)["train_runtime"] for x in lines if "train_runtime" in x]
    assert tokens == read_metrics(run_dir)[-1]["num_tokens"] > 0
    truth = tokens / runtime

    summary = json.loads((run_dir / "summary.json").read_text())
    bar = number(r"tok/s ([\d.,]+)", result.stderr)  # the bar's last drawn value
    block = number(r"([\d.,]+) tokens/s", result.stdout)  # the end-of-run block
    card = number(r"([\d.,]+) tokens/s", (run_dir / "README.md").read_text())
    compared = subprocess.run(
        [sys.executable, "-m", "vlexp.compare", str(run_dir), "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    header, row = list(csv_rows(tmp_path / "compare.csv"))
    shown = {
        "bar": bar,
        "summary block": block,
        "summary.json": summary["tokens_per_s"],
        "compare": float(row[header.index("tokens/s")]),
        "model card": card,
    }
    assert compared.returncode == 0
    for surface, value in shown.items():
        assert value == pytest.approx(truth, rel=0.03), (surface, shown, truth)
    assert summary["tokens"] == tokens and summary["train_runtime_s"] == runtime


def test_the_summary_and_curves_split_the_reward_per_function(grpo_run):
    run_dir, result = grpo_run
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = read_metrics(run_dir)
    for metric in REWARD_FUNCTIONS:
        values = [row[metric] for row in rows]
        shown = summary["metrics"][metric]
        assert (shown["first"], shown["last"]) == (values[0], values[-1])  # 8 steps: window 1
        name = metric.split("/")[1]
        assert re.search(
            rf"reward: {name} +{shown['first']:.4g} -> {shown['last']:.4g}", result.stdout
        )

    from vlexp.recipe import console, curves

    headline = console.headline(json_cfg(run_dir).algo)
    panels = curves.panels(rows, headline)  # the panels of the run's curves.png
    assert {"reward: accuracy", "reward: think_format"} <= {p.label for p in panels}
    assert set(REWARD_FUNCTIONS) <= {p.metric for p in panels}
    for panel in panels:
        if panel.metric in REWARD_FUNCTIONS:  # the logged points are the ones drawn
            assert panel.values == pytest.approx([row[panel.metric] for row in rows])


def test_a_run_that_stops_before_training_is_no_row_of_compare(tmp_path):
    failed = tmp_path / "failed"
    result = run_cli("data.train=/nonexistent/train.jsonl", f"hydra.run.dir={failed}")
    assert result.returncode == 1 and "data file not found" in result.stderr
    assert (failed / "app.log").is_file()  # kept: it says why the run stopped
    compared = subprocess.run(
        [sys.executable, "-m", "vlexp.compare", str(failed), "--out", str(tmp_path / "cmp")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert compared.returncode == 1
    assert f"skipped {failed}: no metrics" in compared.stderr
    assert "no run to compare" in compared.stderr


def csv_rows(path: Path):
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.reader(handle)


def json_cfg(run_dir: Path):
    from omegaconf import OmegaConf

    return OmegaConf.load(run_dir / "config.resolved.yaml")
