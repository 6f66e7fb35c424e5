"""No secret on disk: every file of a run dir, binary ones included, is free of the secrets
given as overrides (`+algo.args.hub_token=...`, `+model.token=...`) or in the environment."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli

HUB_TOKEN = "hf_vlexpTestHubToken0123456789"
MODEL_TOKEN = "hf_vlexpTestModelToken987654321"
ENV_SECRET = "sk-vlexpTestEnvSecret4567"
SECRETS = (HUB_TOKEN, MODEL_TOKEN, ENV_SECRET)


def _files_with_secrets(run_dir) -> dict[str, list[str]]:
    found = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits = [s for s in SECRETS if s.encode() in data or s.encode("utf-16-le") in data]
        if hits:
            found[str(path.relative_to(run_dir))] = hits
    return found


def _run(tmp_path, *args: str):
    run_dir = tmp_path / "run"
    result = run_cli(
        *args,
        f"+algo.args.hub_token={HUB_TOKEN}",
        f"+model.token={MODEL_TOKEN}",
        "logger=wandb",
        "logger.mode=offline",
        "train.save_steps=1",
        f"hydra.run.dir={run_dir}",
        env={"MY_SERVICE_API_KEY": ENV_SECRET},
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(run_dir.glob("checkpoint-*")) and (run_dir / "final").is_dir()
    assert list((run_dir / "wandb").rglob("*.wandb"))  # the W&B run file was written
    return run_dir


def test_no_secret_in_any_file_of_an_sft_run(tmp_path, tiny_model):
    run_dir = _run(tmp_path, "algo=sft", "train.max_steps=2")
    assert _files_with_secrets(run_dir) == {}
    assert "hub_token=<redacted>" in (run_dir / ".hydra" / "hydra.yaml").read_text()


@pytest.mark.slow
def test_no_secret_in_any_file_of_a_grpo_run(tmp_path, tiny_model):
    run_dir = _run(tmp_path, "algo=grpo", "train.max_steps=1")
    assert _files_with_secrets(run_dir) == {}


@pytest.mark.slow
def test_no_secret_in_any_file_of_a_two_process_run(tmp_path, tiny_model):
    run_dir = _run(tmp_path, "algo=sft", "train.max_steps=2", "launcher=accelerate")
    assert _files_with_secrets(run_dir) == {}
