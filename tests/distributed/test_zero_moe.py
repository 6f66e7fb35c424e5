"""2-process ZeRO-3 on CPU with the tiny builds: on the Qwen3-VL-MoE the experts load into
partitioned parameters (vlexp.patches.zero3_aware_expert_transpose), the router aux loss is
logged and final/ holds the gathered weights; every other family runs one algorithm each."""

from __future__ import annotations

import json

import pytest

from tests.distributed.helpers import TWO_RANKS
from tests.helpers import read_metrics, run_cli, tiny_preset
from vlexp.families import FAMILIES as FAMILIES_TABLE


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


# Every other family under 2-rank ZeRO-3, each with a different algorithm, so the value head
# (reward model, PPO critic) and the MoE router loss are partitioned too. The reward model
# case failed on every family before: its meta shell was initialised as ZeRO-3 weights, and
# its output's `values` field hid the mapping method DeepSpeed's engine calls. InternVL's
# GRPO and LLaVA-OneVision's PPO failed when first added (2026-12-07): their second model
# lost the `kernels` init of Qwen3/Qwen2 attention (vlexp.patches.import_model_modules).
ZERO3_CASES = [
    ("qwen3_vl", "sft", "zero3", []),
    ("qwen3_5", "dpo", "zero3", []),
    ("gemma3", "grpo", "zero3", ["reward=[think_format,accuracy]"]),
    ("qwen3_5_moe", "reward_model", "zero3", []),
    ("qwen3_5_moe", "sft", "[lora_experts,zero3]", []),
    ("qwen3_vl_moe", "ppo", "zero3", ["reward=[think_format,accuracy]", "algo.args.ppo_epochs=1"]),
    ("internvl", "grpo", "zero3", ["reward=[think_format,accuracy]"]),
    ("glm4v", "reward_model", "zero3", []),
    (
        "llava_onevision",
        "ppo",
        "zero3",
        ["reward=[think_format,accuracy]", "algo.args.ppo_epochs=1"],
    ),
    ("llava_onevision1_5", "sft", "zero3", []),
]
LOGGED = {"sft": "loss", "dpo": "rewards/margins", "grpo": "reward"}
LOGGED |= {"reward_model": "accuracy", "ppo": "loss/value"}


def test_every_family_with_a_tiny_build_has_a_zero3_case():
    """Read from the family table, so a new family cannot skip the 2-rank run."""
    tiny = {family.name for family in FAMILIES_TABLE.values() if family.tiny}
    refused = {family.name for family in FAMILIES_TABLE.values() if family.zero3_refusal}
    covered = {case[0] for case in ZERO3_CASES} | {"qwen2_5_vl"}  # the default: test_zero.py
    assert not tiny - covered - refused, f"add a ZERO3_CASES row for {sorted(tiny - covered)}"
    assert not refused & covered, "a family ZeRO-3 refuses has a ZERO3_CASES row"


@pytest.mark.slow  # the refusal is instant; the ZeRO-2 run it advises takes ~40 s on 2 ranks
@pytest.mark.parametrize("family", [f.name for f in FAMILIES_TABLE.values() if f.zero3_refusal])
def test_zero3_is_refused_before_loading_where_the_family_cannot_run_it(family, tmp_path):
    """MiniCPM-V under 2-rank ZeRO-3 aborted in its first forward (gloo: "Received data size
    doesn't match expected size"); now one vlexp line with the reason, before anything loads."""
    result = run_cli(
        *TWO_RANKS,
        f"model={tiny_preset(family)}",
        "algo=sft",
        "memory=zero3",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode != 0
    assert f"memory=zero3 on {tiny_preset(family)} ({family}): " in result.stderr, result.stderr
    assert "Use memory=zero2 or one process" in result.stderr
    assert "Traceback" not in result.stderr and "starting 2 processes" not in result.stdout
    # The advice holds: ZeRO-2 (parameters whole on each rank) runs the same command.
    result = run_cli(
        *TWO_RANKS,
        f"model={tiny_preset(family)}",
        "algo=sft",
        "memory=zero2",
        "train.max_steps=1",
        "data.prepare.num_train=64",
        f"hydra.run.dir={tmp_path / 'zero2'}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [row["step"] for row in read_metrics(tmp_path / "zero2")] == [1]


@pytest.mark.slow  # ten 2-rank runs, ~1 minute each
@pytest.mark.parametrize("family, algo, memory, extra", ZERO3_CASES)
def test_zero3_two_ranks_on_every_family(family, algo, memory, extra, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        *TWO_RANKS,
        f"model={tiny_preset(family)}",
        f"algo={algo}",
        f"memory={memory}",
        *extra,
        "train.max_steps=1",
        "data.prepare.num_train=64",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = read_metrics(run_dir)
    assert [row["step"] for row in rows] == [1]
    assert isinstance(rows[0][LOGGED[algo]], float)
    assert ("aux_loss" in rows[0]) == family.endswith("_moe"), rows[0]
    report = json.loads((run_dir / "distributed.json").read_text())
    assert report["world_size"] == 2 and report["zero_stage"] == 3
    for row in report["ranks"]:
        assert row["local_param_numel"] * 2 >= row["param_numel"] > row["local_param_numel"]
    if "lora" in memory:  # adapters on the routed experts, gathered whole
        adapter = json.loads((run_dir / "final" / "adapter_config.json").read_text())
        assert adapter["target_parameters"] == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
        from safetensors.torch import load_file

        weights = load_file(run_dir / "final" / "adapter_model.safetensors")
        experts = {k: v for k, v in weights.items() if ".experts." in k}
        # r=16 rows per expert, 4 experts: whole tensors, not one rank's empty shard
        assert experts and all(16 * 4 in v.shape for v in experts.values()), experts.keys()
        return
    config = json.loads((run_dir / "final" / "config.json").read_text())
    assert config["model_type"] == family
    if algo == "reward_model":
        assert config["architectures"][0].endswith("ForRewardModel")
    if algo == "ppo":
        assert (run_dir / "final" / "critic" / "model.safetensors").is_file()


@pytest.mark.slow  # one 2-rank run
def test_the_30b_lora_zero3_preset_on_two_ranks_with_the_tiny_moe(tmp_path, shapes_dir):
    """The preset as written (LoRA + ZeRO-3 + activation checkpointing, accelerate) with only
    the model, the rank count and the sizes swapped for CPU."""
    from tests.e2e.test_family_runs import _geometry_records

    run_dir = tmp_path / "run"
    train = _geometry_records(shapes_dir, tmp_path / "geometry.jsonl")
    result = run_cli(
        "experiment=qwen3_vl_30b_a3b_lora_zero3",
        "model=tiny_qwen3_vl_moe",
        "launcher.num_processes=2",
        "train.max_steps=1",
        "algo.args.max_completion_length=32",
        f"data.train={train}",
        f"data.image_root={shapes_dir}",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = read_metrics(run_dir)
    assert [row["step"] for row in rows] == [1]
    assert rows[0]["aux_loss"] > 0 and "rewards/accuracy/mean" in rows[0]
    report = json.loads((run_dir / "distributed.json").read_text())
    assert report["world_size"] == 2 and report["zero_stage"] == 3
    adapter = json.loads((run_dir / "final" / "adapter_config.json").read_text())
    assert adapter["r"] == 32 and not adapter.get("target_parameters")  # experts frozen
