"""Shared fixtures: an isolated vlexp cache, the tiny model, config composition, CLI runs.

No test reaches the network: the tiny model and the `shapes` data are built locally, once
per test session, into a temporary cache (set VLEXP_TEST_CACHE to reuse one across runs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports vlexp or wandb: never prompt, never reach a server.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def vlexp_cache(tmp_path_factory) -> Path:
    path = Path(os.environ.get("VLEXP_TEST_CACHE") or tmp_path_factory.mktemp("vlexp-cache"))
    os.environ["VLEXP_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(vlexp_cache) -> Path:
    """Directory of the cached, warmed tiny Qwen2.5-VL (built on first use)."""
    from vlexp.models import tiny

    return tiny.ensure()


@pytest.fixture(scope="session")
def shapes_dir(vlexp_cache) -> Path:
    """The default `shapes` data set (512 train / 64 eval records)."""
    from vlexp.data import shapes

    return shapes.generate(shapes.default_dir(512, 64, 0), num_train=512, num_eval=64, seed=0)
