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


def test_rollout_engine_table_sets_hf_fast_beside_hf():
    gpu = _gpu_module()
    hf = gpu.Result("3b", "grpo_ckpt_hf", "ok", planner_gib=41.0)
    hf.metrics = {"perf/tokens_per_second_per_gpu": 600.0, "timing_s/step": 20.0,
                  "timing_s/generate": 17.0}  # fmt: skip
    fast = gpu.Result("3b", "grpo_ckpt_hf_fast", "ok", planner_gib=41.0)
    fast.metrics = {"perf/tokens_per_second_per_gpu": 1800.0, "timing_s/step": 6.0,
                    "timing_s/generate": 3.0, "perf/recompiles": 2.0}  # fmt: skip
    other = gpu.Result("3b", "sft_full", "ok")
    lines = gpu.engine_table([hf, fast, other]).splitlines()
    assert len(lines) == 4  # header, rule, one row per engine; sft_full is not a pair
    assert "| 3b | grpo_ckpt | hf | ok | 600 | 20.00 | 17.0 (85%) | - |" in lines[2]
    assert "| 3b | grpo_ckpt | hf_fast | ok | 1800 | 6.00 | 3.0 (50%) | 2 |" in lines[3]
    assert lines[3].endswith("| 3.00x |")
    assert gpu.engine_table([other]) == ""


def test_rollout_bench_plan_pairs_every_case_and_composes():
    # The GPU call must not die on a config error: every case of --plan rollout composes and
    # validates as the bench runs it, under both engines.
    from tests.helpers import compose
    from vlexp.validate import validate

    gpu = _gpu_module()
    sizes = gpu.Sizes()
    table = gpu.cases(sizes, eos_ids=[1, 2])
    names = {case for _, case in gpu.ROLLOUT_PLAN}
    bases = {name.rpartition("_hf")[0] for name in names}
    assert names == {f"{b}_{e}" for b in bases for e in gpu.ROLLOUT_ENGINES}
    for model, name in gpu.ROLLOUT_PLAN:
        case = table[name]
        cfg = compose([f"model={gpu.MODEL_OPTIONS[model]}", "data=jsonl", "data.train=x.jsonl",
                       *case.overrides])  # fmt: skip
        validate(cfg, machine=False)
        assert cfg.rollout.name == ("hf_fast" if name.endswith("_hf_fast") else "hf")
        rows = cfg.train.per_device_train_batch_size * cfg.train.gradient_accumulation_steps
        if "_big_" in name:  # 8 prompts x 8 completions x 512 tokens in one generation
            assert rows == sizes.big_prompts * sizes.generations == 64
            assert cfg.algo.args.max_completion_length == 512
        else:
            assert rows == 16 and cfg.algo.args.max_completion_length == 256


def test_rollout_plan_measures_the_issue_targets_first():
    # One device call must measure issue 27's targets (the realistic 8 x 8 x 512 batch, both
    # engines, 3B and 8B) before the budget runs out: the big pairs lead the plan.
    gpu = _gpu_module()
    first = gpu.ROLLOUT_PLAN[:4]
    assert {model for model, _ in first} == {"3b", "q3_8b"}
    assert all("_big_" in name for _, name in first)
    assert {name.rsplit("_hf", 1)[-1] for _, name in first} == {"", "_fast"}
