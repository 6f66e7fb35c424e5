"""bench/gpu.py: stops clearly without CUDA; reads a run's metrics back; reports failures."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.helpers import REPO


def _gpu_module():
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_bench_without_cuda_says_so():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "bench/gpu.py needs a CUDA GPU and none is visible" in result.stderr
    assert "--smoke-cpu" in result.stderr and "Traceback" not in result.stderr


def test_summary_skips_the_warm_up_step_and_keeps_the_memory_peak():
    gpu = _gpu_module()
    rows = [
        {"step": 1, "loss": 1.0, "perf/tokens_per_second_per_gpu": 10.0, "timing_s/step": 9.0,
         "perf/max_memory_allocated_gb": 30.0, "perf/max_memory_reserved_gb": 33.0},
        {"step": 2, "loss": 1.0, "perf/tokens_per_second_per_gpu": 500.0, "timing_s/step": 2.0,
         "perf/max_memory_allocated_gb": 40.0, "perf/max_memory_reserved_gb": 44.0},
        {"step": 3, "loss": 1.0, "perf/tokens_per_second_per_gpu": 700.0, "timing_s/step": 1.0,
         "perf/max_memory_allocated_gb": 40.0, "perf/max_memory_reserved_gb": 44.0},
        {"step": 3, "train_runtime": 12.0},
    ]  # fmt: skip
    medians, allocated, reserved = gpu.summarize(rows)
    assert medians == {"perf/tokens_per_second_per_gpu": 600.0, "timing_s/step": 1.5}
    assert (allocated, reserved) == (40.0, 44.0)
    assert gpu.summarize([]) == ({}, None, None)  # a run that died before its first log


def test_an_out_of_memory_is_told_from_a_crash():
    gpu = _gpu_module()
    oom = "Traceback ...\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert gpu.failure(oom, 1) == ("oom", "CUDA out of memory")
    assert gpu.failure("Traceback ...\nValueError: bad thing\n", 1) == (
        "failed",
        "ValueError: bad thing",
    )


def test_the_table_shows_every_case_with_its_status():
    gpu = _gpu_module()
    ok = gpu.Result("3b", "grpo_ckpt", "ok", planner_gib=42.3, planner_error_pct=1.2)
    ok.metrics = {"perf/tokens_per_second_per_gpu": 530.0, "perf/mfu": 0.136,
                  "timing_s/step": 16.5, "timing_s/generate": 9.0}  # fmt: skip
    skipped = gpu.Result("3b", "grpo", "skipped", note="planner: 124 GiB > card")
    lines = gpu.table([ok, skipped]).splitlines()
    assert len(lines) == 4
    assert "| 3b | grpo_ckpt | ok | 530 | 13.6% | 16.50 | 9.0 / - / - |" in lines[2]
    assert "+1%" in lines[2] and "42.3" in lines[2]
    assert "skipped (planner: 124 GiB > card)" in lines[3]


def test_runs_are_model_case_pairs():
    gpu = _gpu_module()
    assert gpu.parse_runs(["3b:grpo", "7b:sft_lora"], smoke=False) == [
        ("3b", "grpo"),
        ("7b", "sft_lora"),
    ]
    with pytest.raises(SystemExit, match="MODEL:CASE"):
        gpu.parse_runs(["13b:grpo"], smoke=False)
