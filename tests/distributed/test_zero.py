"""Real 2-process DeepSpeed runs on CPU (DeepSpeed's CPU accelerator + gloo) of the tiny model.

The shared-memory comm op compiles once (~20 s, minutes on a busy machine) into
TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions), then loads from there.
"""

from __future__ import annotations

import json

import pytest

from tests.distributed.helpers import (
    TWO_RANKS,
    load_without_deepspeed,
    sigterm_after_step,
    start_cli,
)
from tests.helpers import read_metrics, run_cli


def _report(run_dir) -> dict:
    return json.loads((run_dir / "distributed.json").read_text())


def test_zero3_grpo_two_ranks_share_one_run_dir_and_partition_parameters(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    result = run_cli(
        *TWO_RANKS,
        "memory=zero3",
        "train.max_steps=2",
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no per-rank output dirs
    assert [row["step"] for row in read_metrics(run_dir)] == [1, 2]  # rank 0 alone writes
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1  # one logger run, rank 0

    report = _report(run_dir)
    assert report["world_size"] == 2 and report["zero_stage"] == 3
    assert [row["rank"] for row in report["ranks"]] == [0, 1]
    for row in report["ranks"]:
        # Each rank stores about half of every parameter (ZeRO-3 pads to a multiple of 2).
        assert row["local_param_numel"] * 2 >= row["param_numel"] > row["local_param_numel"]
        assert row["local_param_numel"] * 2 - row["param_numel"] < 1000

    # final/ holds the gathered full weights, loadable with no DeepSpeed at all.
    check = load_without_deepspeed(
        "from transformers import AutoModelForImageTextToText as M\n"
        f"a = M.from_pretrained({str(run_dir / 'final')!r})\n"
        f"b = M.from_pretrained({str(tiny_model)!r})\n"
        "n = sum(p.numel() for p in a.parameters())\n"
        "moved = sum(int((x - y).abs().max() > 0) for x, y in zip(a.parameters(), b.parameters()))\n"
        "print(n, moved)\n"
    )
    assert check.returncode == 0, check.stderr[-3000:]
    numel, moved = map(int, check.stdout.split())
    assert numel == report["ranks"][0]["param_numel"]
    assert moved > 0  # trained weights, not the initial ones or empty shards


@pytest.mark.slow
def test_zero2_shards_optimizer_states_but_not_parameters(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    result = run_cli(*TWO_RANKS, "memory=zero2", "train.max_steps=2", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [row["step"] for row in read_metrics(run_dir)] == [1, 2]
    report = _report(run_dir)
    assert report["world_size"] == 2 and report["zero_stage"] == 2
    for row in report["ranks"]:
        assert row["local_param_numel"] == row["param_numel"]
        assert row["local_optimizer_numel"] * 2 - row["param_numel"] in (0, 1)
    assert (run_dir / "final" / "model.safetensors").is_file()


@pytest.mark.slow
def test_lora_sft_under_zero3_survives_sigterm_and_resumes(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    args = (
        *TWO_RANKS,
        "algo=sft",
        "memory=[lora,zero3]",
        "train.per_device_train_batch_size=2",
        "train.max_steps=8",
        f"hydra.run.dir={run_dir}",
    )
    code = sigterm_after_step(start_cli(*args, log=tmp_path / "first.log"), run_dir, step=2)
    log = (tmp_path / "first.log").read_text()
    assert code == 143, log[-3000:]
    assert "stopped by SIGTERM" in log and "resume=auto" in log
    (checkpoint,) = run_dir.glob("checkpoint-*")
    stopped_at = int(checkpoint.name.split("-")[1])
    assert 2 <= stopped_at < 8 and not (run_dir / "final").exists()
    shards = sorted(p.name for p in checkpoint.glob("global_step*/*optim_states.pt"))
    assert len(shards) == 2  # each rank saved its own ZeRO-3 partition

    report = _report(run_dir)
    assert report["zero_stage"] == 3
    assert all(r["local_param_numel"] < r["param_numel"] for r in report["ranks"])

    result = run_cli(*args, "resume=auto")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [row["step"] for row in read_metrics(run_dir)] == list(range(1, 9))
    state = json.loads((run_dir / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8

    check = load_without_deepspeed(
        "from peft import PeftModel\n"
        "from transformers import AutoModelForImageTextToText as M\n"
        f"base = M.from_pretrained({str(tiny_model)!r})\n"
        f"model = PeftModel.from_pretrained(base, {str(run_dir / 'final')!r})\n"
        "lora = [p for n, p in model.named_parameters() if 'lora_B' in n]\n"
        "print(len(lora), sum(int(p.abs().sum() > 0) for p in lora))\n"
    )
    assert check.returncode == 0, check.stderr[-3000:]
    adapters, trained = map(int, check.stdout.split())
    assert adapters > 0 and trained == adapters  # lora_B starts at 0: these were trained


@pytest.mark.slow
def test_ppo_under_zero3_partitions_actor_and_critic_and_saves_both(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    result = run_cli(
        *TWO_RANKS,
        "algo=ppo",
        "memory=zero3",
        "train.max_steps=4",
        "train.per_device_train_batch_size=4",
        "algo.args.ppo_epochs=2",
        "algo.args.num_mini_batches=2",
        "algo.args.max_completion_length=12",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = read_metrics(run_dir)
    assert [row["step"] for row in rows if "loss/policy" in row] == [1, 2, 3, 4]
    assert any("objective/kl" in row for row in rows)
    report = _report(run_dir)
    assert report["zero_stage"] == 3
    for row in report["ranks"]:  # policy and critic: twice the tiny model, half on each rank
        assert row["local_param_numel"] * 2 >= row["param_numel"] > row["local_param_numel"]
    count = (
        "from transformers import AutoModelForImageTextToText as M\n"
        "print(sum(p.numel() for p in M.from_pretrained({!r}).parameters()))\n"
    )
    check = load_without_deepspeed(count.format(str(run_dir / "final")))
    built = load_without_deepspeed(count.format(str(tiny_model)))  # the model before training
    assert check.returncode == 0 and built.returncode == 0, check.stderr[-3000:]
    # final/ is the tiny model gathered whole: as many parameters as the build it started from.
    assert int(check.stdout.split()[-1]) == int(built.stdout.split()[-1])
    assert (run_dir / "final" / "critic" / "model.safetensors").is_file()
