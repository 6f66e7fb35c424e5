"""GPU-only checks (pytest -m gpu): the fast paths train, and runs log perf/mfu and memory.

Skipped without CUDA. bench/device_run.sh runs them on a lent GPU before the benchmark."""

from __future__ import annotations

import importlib.util
import math

import pytest

from tests.helpers import build_trainer, read_metrics


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")]
SMALL = ["data.prepare.num_train=32", "data.prepare.num_eval=16", "train.logging_steps=1"]


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="liger-kernel absent")
@pytest.mark.parametrize("algo", ["grpo", "sft"])
def test_liger_kernels_patch_the_model_and_train(algo, tmp_path, shapes_dir, tiny_model):
    trainer, _ = build_trainer(
        [*SMALL, f"algo={algo}", "memory=liger", "train.max_steps=2"], tmp_path
    )
    trainer.train()  # transformers applies liger when training starts
    model = trainer.accelerator.unwrap_model(trainer.model)
    layer = model.model.language_model.layers[0]
    assert layer.input_layernorm.forward.__func__.__qualname__ == "LigerRMSNorm.forward"
    rows = [r for r in read_metrics(tmp_path) if "loss" in r]
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)


def test_gpu_runs_log_mfu_and_peak_memory(tmp_path, shapes_dir, tiny_model):
    trainer, _ = build_trainer([*SMALL, "algo=sft", "train.max_steps=3"], tmp_path)
    trainer.train()
    rows = [r for r in read_metrics(tmp_path) if "loss" in r]
    for row in rows:
        assert 0 < row["perf/mfu"] < 1
        assert 0 < row["perf/max_memory_allocated_gb"] <= row["perf/max_memory_reserved_gb"]
