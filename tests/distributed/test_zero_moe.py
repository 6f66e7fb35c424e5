"""2-process ZeRO-3 on CPU with the tiny Qwen3-VL-MoE: its experts load into partitioned
parameters (vlexp.patches.zero3_aware_expert_transpose), the router aux loss is logged and
final/ holds the gathered weights."""

from __future__ import annotations

import json

import pytest

from tests.distributed.helpers import TWO_RANKS
from tests.helpers import read_metrics, run_cli


@pytest.mark.slow  # two ranks on 2 cores, ~1 minute once DeepSpeed's comm op is compiled
def test_zero3_grpo_on_the_tiny_moe_partitions_experts(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        *TWO_RANKS,
        "model=tiny_qwen3_vl_moe",
        "memory=zero3",
        "reward=[think_format,accuracy]",
        "train.max_steps=2",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = read_metrics(run_dir)
    assert [row["step"] for row in rows] == [1, 2]
    assert all(row["aux_loss"] > 0 and "reward" in row for row in rows)
    report = json.loads((run_dir / "distributed.json").read_text())
    assert report["world_size"] == 2 and report["zero_stage"] == 3
    for row in report["ranks"]:
        assert row["local_param_numel"] * 2 >= row["param_numel"] > row["local_param_numel"]
    config = json.loads((run_dir / "final" / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl_moe"
    assert config["text_config"]["output_router_logits"] is False
