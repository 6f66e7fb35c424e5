"""python -m vlexp.compare on hand-made run dirs: table rows, differing columns, files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from vlexp import compare


def make_run(folder: Path, overrides: list[str], rows: list[dict], runtime: float | None = 2.0):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  runtime:\n    choices:\n      algo: grpo\n      model: tiny\n"
    )
    (folder / "config.resolved.yaml").write_text(
        "algo:\n  args:\n    beta: 0.04\ntrain:\n  learning_rate: 0.001\n  max_steps: 3\n"
    )
    lines = [json.dumps(row) for row in rows]
    if runtime is not None:
        lines.append(json.dumps({"step": rows[-1]["step"], "train_runtime": runtime}))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def grpo_rows(reward0: float, kl: float = 0.01) -> list[dict]:
    return [
        {
            "step": step,
            "reward": reward0 + 0.1 * step,
            "kl": kl * step,
            "entropy": 1.0 - 0.1 * step,
            "completions/mean_length": 20.0 + step,
        }
        for step in (1, 2, 3)
    ]


@pytest.fixture
def sweep_dir(tmp_path) -> Path:
    """A 3-job sweep dir: two finished runs that differ in beta, one failed job."""
    sweep = tmp_path / "sweep"
    make_run(sweep / "0", ["algo.args.beta=0.0", "train.max_steps=3"], grpo_rows(0.2, 0.0))
    make_run(sweep / "1", ["algo.args.beta=0.1", "train.max_steps=3"], grpo_rows(0.5))
    (sweep / "2" / ".hydra").mkdir(parents=True)
    records = [
        {"job": 1, "overrides": [], "run_dir": str(sweep / "1"), "status": "completed"},
        {"job": 0, "overrides": [], "run_dir": str(sweep / "0"), "status": "completed"},
        {
            "job": 2,
            "overrides": ["algo.args.beta=x", "train.max_steps=3"],
            "run_dir": str(sweep / "2"),
            "status": "failed",
            "wall_time_s": 0.5,
        },
    ]
    (sweep / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return sweep


def test_table_has_a_row_per_job_and_only_differing_overrides(sweep_dir):
    runs = compare.find_runs([sweep_dir])
    header, body = compare.table(runs)
    assert header[:3] == ["run", "algo.args.beta", "status"]
    assert "train.max_steps" not in header  # the same in every run
    assert [row[0] for row in body] == ["sweep/0", "sweep/1", "sweep/2"]
    by_run = {row[0]: dict(zip(header, row, strict=True)) for row in body}
    # first -> last: the run summary's window (1 of 3 logged steps)
    assert by_run["sweep/1"]["reward"] == "0.6 -> 0.8" and by_run["sweep/1"]["best reward"] == "0.8"
    assert by_run["sweep/1"]["kl"] == "0.01 -> 0.03" and by_run["sweep/1"]["steps"] == "3"
    assert by_run["sweep/0"]["algo.args.beta"] == "0.0"
    assert by_run["sweep/2"]["status"] == "failed" and by_run["sweep/2"]["reward"] == "-"
    assert "margin" not in header  # no run logged DPO metrics
    assert [run.label for run in runs] == ["beta=0.0", "beta=0.1", "beta=x"]


def test_missing_override_falls_back_to_the_config_value(tmp_path):
    a = make_run(tmp_path / "a", [], grpo_rows(0.1))
    b = make_run(tmp_path / "b", ["train.learning_rate=0.003"], grpo_rows(0.1))
    header, body = compare.table(compare.find_runs([a, b]))
    column = header.index("train.learning_rate")
    assert [row[column] for row in body] == ["0.001", "0.003"]


def test_cli_writes_markdown_csv_and_a_png(sweep_dir, tmp_path, capsys):
    dpo = make_run(
        tmp_path / "dpo",
        ["algo=dpo"],
        [{"step": s, "rewards/margins": 0.1 * s, "rewards/accuracies": 0.5} for s in (1, 2)],
        runtime=None,
    )
    out = tmp_path / "out"
    assert compare.main([str(sweep_dir), str(dpo), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "algo" in printed and "margin" in printed and "running or stopped" in printed
    rows = list(csv.reader((out / "compare.csv").open()))
    assert len(rows) == 1 + 4 and rows[0][0] == "run"
    assert (out / "compare.md").read_text().count("\n| ") == 2 + 4  # header, separator, 4 runs
    image = Image.open(out / "compare.png")
    image.verify()
    assert image.size[0] >= 1000 and image.size[1] >= 600


def test_a_dir_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="holds no run"):
        compare.main([str(tmp_path)])


def test_speed_columns_show_medians_after_the_warm_up_step(tmp_path):
    def rows(speeds: list[float], peak: float) -> list[dict]:
        return [
            {"step": i + 1, "loss": 1.0, "perf/tokens_per_second_per_gpu": s,
             "timing_s/step": 1000 / s, "perf/max_memory_allocated_gb": peak * (i + 1) / 4}
            for i, s in enumerate(speeds)
        ]  # fmt: skip

    slow = make_run(tmp_path / "a", ["memory=grad_ckpt"], rows([10.0, 400.0, 500.0, 600.0], 42.0))
    fast = make_run(tmp_path / "b", ["memory=none"], rows([20.0, 900.0, 1000.0, 1100.0], 120.0))
    header, body = compare.table(compare.find_runs([slow, fast]))
    column = {name: header.index(name) for name in ("tokens/s/GPU", "s/step", "peak GiB")}
    assert "MFU" not in header and "generate s" not in header  # no run logged them
    assert [row[column["tokens/s/GPU"]] for row in body] == ["500", "1000"]  # first step left out
    assert [row[column["s/step"]] for row in body] == ["2", "1"]
    assert [row[column["peak GiB"]] for row in body] == ["42", "120"]
