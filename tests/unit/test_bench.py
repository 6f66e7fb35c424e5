"""bench/gpu.py: stops clearly without CUDA; its FLOP count sees every tower's parameters."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.helpers import REPO, compose
from vlexp.recipe.estimate import meta_model


def _gpu_module():
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_bench_without_cuda_says_so():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--models", "3b"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "bench/gpu.py needs a CUDA GPU and none is visible" in result.stderr
    assert "Traceback" not in result.stderr


def test_flop_count_covers_text_and_vision_parameters():
    gpu = _gpu_module()
    model = meta_model(compose(["model=qwen2_5_vl_7b"]))
    seq, grid = 1000, (64, 64, 1024)  # an 896x896 image: 64x64 patches, 1024 tokens
    flops = gpu.train_flops(model, 1, seq, grid)
    named = dict(model.named_parameters())
    embed = model.get_input_embeddings().weight.numel()
    visual = sum(p.numel() for n, p in named.items() if ".visual." in f".{n}")
    norms = sum(p.numel() for n, p in named.items() if "language_model" in n and p.dim() == 1)
    text_matmul = sum(p.numel() for p in model.parameters()) - visual - embed - norms
    # Text: 6N per token for every matmul weight (LM head included) + attention.
    text = 6 * text_matmul * seq + 12 * 28 * 3584 * seq * seq
    vision_norms = sum(
        p.numel() for n, p in named.items() if ".visual." in f".{n}" and p.dim() == 1
    )
    vision_low = 6 * (visual - vision_norms) * 1024  # every vision weight at least once per token
    assert text + vision_low < flops < text + 6 * visual * 4096 + 12 * 1280 * 4096 * 4096 * 32
