"""bench/gpu.py --smoke-cpu: the GPU bench's own code (random-weight checkpoint, data sets,
`python -m vlexp` per case, metrics read back, planner next to it) on CPU at toy sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

RUNS = {
    "fast": ["smoke:grpo_ckpt"],
    "all": ["smoke:sft_full", "smoke:dpo_lora", "smoke:grpo_ckpt"],
}


@pytest.mark.parametrize(
    "runs", [RUNS["fast"], pytest.param(RUNS["all"], marks=pytest.mark.slow)], ids=list(RUNS)
)
def test_smoke_cpu_runs_the_real_command_and_reads_its_metrics(runs, tmp_path, tiny_model):
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--smoke-cpu", "--runs", *runs,
         "--work", str(tmp_path / "work"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (report,) = out.glob("gpu-cpu-*-smoke.json")
    record = json.loads(report.read_text())
    assert [(r["model"], r["case"], r["status"]) for r in record["results"]] == [
        tuple(run.split(":")) + ("ok",) for run in runs
    ]
    for entry in record["results"]:
        assert entry["metrics"]["perf/tokens_per_second_per_gpu"] > 0
        assert entry["planner_gib"] > 0
        if entry["case"].startswith("grpo"):
            assert all(entry["metrics"][f"timing_s/{p}"] > 0 for p in ("generate", "update"))
    # The checkpoint is a random-weight model of the tiny config, loadable by from_pretrained.
    checkpoint = tmp_path / "work" / "models" / "random-smoke"
    assert (checkpoint / "config.json").is_file() and (checkpoint / "tokenizer.json").is_file()
    assert report.with_suffix(".md").read_text().count("| smoke |") == len(runs)


@pytest.mark.slow  # two `python -m vlexp` runs: 1-2.5 minutes on 2 shared cores
def test_rollout_bench_smoke_runs_both_engines_side_by_side(tmp_path, tiny_model):
    # bench/gpu.py --plan rollout at toy sizes on CPU: each case under rollout=hf and
    # rollout=hf_fast in one run, and the comparison table written last.
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--smoke-cpu", "--plan", "rollout",
         "--runs", "smoke:grpo_ckpt_hf", "smoke:grpo_ckpt_hf_fast",
         "--work", str(tmp_path / "work"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (report,) = out.glob("gpu-cpu-*-smoke.json")
    entries = {r["case"]: r for r in json.loads(report.read_text())["results"]}
    assert {case: e["status"] for case, e in entries.items()} == {
        "grpo_ckpt_hf": "ok", "grpo_ckpt_hf_fast": "ok"
    }  # fmt: skip
    assert "perf/recompiles" in entries["grpo_ckpt_hf_fast"]["metrics"]
    assert "perf/recompiles" not in entries["grpo_ckpt_hf"]["metrics"]
    markdown = report.with_suffix(".md").read_text()
    assert "| smoke | grpo_ckpt | hf_fast | ok |" in markdown and "x |" in markdown
    assert result.stdout.rstrip().splitlines()[-2].startswith("| smoke | grpo_ckpt | hf_fast")
