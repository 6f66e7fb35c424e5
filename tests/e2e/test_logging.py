"""logger=wandb (offline) and logger=tensorboard on the tiny model, read back with the
loggers' own readers (no server); secrets never reach the run dir or the W&B run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import read_metrics, run_cli
from tests.wandb_reader import wandb_history, wandb_records, wandb_summary

# A few quick steps: batch 4, 2 generations (the warmed tiny model ends ~20 tokens in).
FAST = [
    "train.max_steps=3",
    "train.per_device_train_batch_size=4",
    "algo.args.num_generations=2",
]
SECRET = "wk_0123456789abcdef0123456789abcdef"
TOKEN = "hf_tok_ABCDEFGHIJKLMNOP"


def wandb_train_by_step(run_dir: Path) -> dict[int, dict]:
    """step -> the `train/*` values W&B logged at that step."""
    by_step: dict[int, dict] = {}
    for item in wandb_history(run_dir):
        metrics = [k for k in item if k.startswith("train/") and k != "train/global_step"]
        if metrics:
            by_step.setdefault(int(item["train/global_step"]), {}).update(item)
    return by_step


def assert_same_values(run_dir: Path, names: list[str]) -> None:
    rows = read_metrics(run_dir)
    history = wandb_train_by_step(run_dir)
    assert rows, "metrics.jsonl is empty"
    for row in rows:
        for name in names:
            assert row[name] == pytest.approx(history[row["step"]][f"train/{name}"], rel=1e-6), (
                name,
                row["step"],
            )


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, tiny_model, shapes_dir) -> Path:
    run_dir = tmp_path_factory.mktemp("wandb") / "grpo"
    result = run_cli(
        *FAST,
        "logger=wandb",
        "logger.mode=offline",
        "logger.project=vlexp-tests",
        "algo.args.beta=0.04",
        "+logger.hub_token=${oc.env:VLEXP_TEST_HF_TOKEN}",
        f"hydra.run.dir={run_dir}",
        env={"WANDB_API_KEY": SECRET, "VLEXP_TEST_HF_TOKEN": TOKEN},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_grpo_metrics_in_wandb_match_metrics_jsonl(grpo_run):
    names = [
        "reward",
        "rewards/think_format/mean",
        "rewards/accuracy/mean",
        "kl",
        "entropy",
        "completions/mean_length",
    ]
    assert_same_values(grpo_run, names)
    assert sorted(wandb_train_by_step(grpo_run)) == [1, 2, 3]


def test_wandb_run_is_named_grouped_tagged_and_has_the_flat_config(grpo_run):
    summary = wandb_summary(grpo_run)
    assert (
        summary["name"]
        == "grpo-max_steps=3-per_device_train_batch_size=4-num_generations=2-beta=0.04"
    )
    assert summary["project"] == "vlexp-tests"
    assert summary["tags"] == ["grpo", "tiny", "shapes"]
    assert summary["run_id"] == (grpo_run / "wandb-run-id").read_text().strip()
    config = summary["config"]
    assert config["algo.args.beta"] == 0.04 and config["reward"] == "think_format+accuracy"
    assert config["train.max_steps"] == 3 and config["logger.hub_token"] == "<redacted>"
    run_record = next(r for r in wandb_records(grpo_run) if r["type"] == "run")["run"]
    assert run_record["run_group"] == "grpo-shapes"  # a single run groups by experiment


def test_secrets_reach_neither_disk_nor_wandb(grpo_run):
    leaked = []
    for path in grpo_run.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaked += [str(path) for secret in (SECRET, TOKEN) if secret.encode() in data]
    assert leaked == []
    resolved = (grpo_run / "config.resolved.yaml").read_text()
    assert "hub_token: <redacted>" in resolved
    # A key that names a secret is masked in .hydra/ too, even as `${oc.env:...}` text.
    assert "+logger.hub_token=<redacted>" in (grpo_run / ".hydra" / "overrides.yaml").read_text()


def test_dpo_metrics_in_wandb(tmp_path, tiny_model, shapes_dir):
    run_dir = tmp_path / "dpo"
    result = run_cli(
        "algo=dpo",
        "train.max_steps=2",
        "train.per_device_train_batch_size=2",
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = ["rewards/margins", "rewards/chosen", "rewards/rejected", "rewards/accuracies"]
    assert_same_values(run_dir, names)


def test_tensorboard_writes_event_files_in_the_run_dir(tmp_path, tiny_model, shapes_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "tb-run"
    result = run_cli(*FAST, "logger=tensorboard", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (run_dir / "wandb").exists()
    (events,) = {p.parent for p in (run_dir / "tb").rglob("events.out.tfevents.*")}
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    logged = {e.step: e.value for e in accumulator.Scalars("train/reward")}
    assert logged == pytest.approx({r["step"]: r["reward"] for r in read_metrics(run_dir)})
