"""A W&B server that cannot be reached costs a bounded time; training goes on."""

from __future__ import annotations

import time

import pytest

from tests.helpers import read_metrics, run_cli


@pytest.mark.slow
def test_an_unreachable_wandb_server_gives_up_in_bounded_time(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = run_cli(
        "algo=sft",
        "train.max_steps=2",
        "logger=wandb",
        "logger.mode=online",
        "logger.init_timeout=5",
        f"hydra.run.dir={run_dir}",
        env={
            "WANDB_API_KEY": "k" * 40,
            "WANDB_BASE_URL": "http://127.0.0.1:9",  # nothing listens on the discard port
            "WANDB_SILENT": "true",
        },
        timeout=400,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["step"] for row in read_metrics(run_dir) if "loss" in row] == [1, 2]
    log = result.stdout + result.stderr
    assert "switched off for this run" in log, log[-3000:]
    assert elapsed < 240, elapsed
