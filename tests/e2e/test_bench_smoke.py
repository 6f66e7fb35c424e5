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
