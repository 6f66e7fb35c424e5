"""Run naming, W&B config flattening, mode choice, run-id persistence and secret redaction."""

from __future__ import annotations

import json
import os

import pytest
from omegaconf import OmegaConf

from tests.helpers import compose
from vlexp.recipe import redact, sweep, tracking


def test_run_name_reads_like_the_overrides():
    overrides = [
        "algo=grpo",
        "algo.args.beta=0.04",
        "reward=[think_format,accuracy]",
        "model.name_or_path=/models/Qwen2.5-VL-3B",
        "logger.mode=offline",
        "+logger.api_key=${oc.env:WANDB_API_KEY}",
        "resume=auto",
    ]
    name = tracking.run_name("grpo", overrides)
    assert name == "grpo-beta=0.04-reward=think_format,accuracy-name_or_path=Qwen2.5-VL-3B"
    assert tracking.run_name("dpo", []) == "dpo"


def test_wandb_config_is_flat_dotted_and_names_the_choices():
    cfg = compose(["logger=wandb", "algo.args.beta=0.07"])
    flat = tracking.wandb_config(cfg)
    assert flat["algo.args.beta"] == 0.07
    assert flat["model.name_or_path"] == cfg.model.name_or_path
    assert flat["reward.weights.accuracy"] == 1.0
    assert (flat["algo"], flat["model"], flat["data"]) == ("grpo", "tiny", "shapes")
    assert flat["reward"] == "think_format+accuracy"
    assert not any(isinstance(value, dict) for value in flat.values())
    assert flat["logger.tags"] == ["grpo", "tiny", "shapes"]


def test_flatten_indexes_lists_of_mappings():
    assert tracking.flatten({"a": {"b": [1, 2], "c": [{"d": 3}]}}) == {"a.b": [1, 2], "a.c.0.d": 3}


def test_mode_auto_is_online_only_with_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # an exported WANDB_MODE would win
    assert tracking.wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.wandb_mode("auto") == "online"
    assert tracking.wandb_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match="logger.mode='onlin'"):
        tracking.wandb_mode("onlin")


def test_configure_sets_wandb_env_and_keeps_the_run_id(monkeypatch, tmp_path):
    cfg = compose(["logger=wandb", "logger.mode=offline", "logger.group=g1", "logger.tags=[a,b]"])
    for key in ("WANDB_ENTITY", "WANDB_NAME", "WANDB_RUN_ID", "RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_ENTITY", "left-over-from-a-previous-job")
    assert tracking.configure(cfg.logger, tmp_path) == ["wandb"]
    run_id = (tmp_path / tracking.WANDB_ID_FILE).read_text().strip()
    assert os.environ["WANDB_RUN_ID"] == run_id and len(run_id) == 8
    assert os.environ["WANDB_DIR"] == str(tmp_path)
    assert (os.environ["WANDB_MODE"], os.environ["WANDB_RUN_GROUP"]) == ("offline", "g1")
    assert os.environ["WANDB_TAGS"] == "a,b"
    assert os.environ["WANDB_RESUME"] == "allow"
    assert "WANDB_ENTITY" not in os.environ  # entity: null clears it
    # A resumed run in the same run dir continues the same W&B run.
    tracking.configure(cfg.logger, tmp_path)
    assert os.environ["WANDB_RUN_ID"] == run_id


def test_tensorboard_logs_under_the_run_dir(monkeypatch, tmp_path):
    cfg = compose(["logger=tensorboard"])
    assert tracking.configure(cfg.logger, tmp_path) == ["tensorboard"]
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "tb")
    assert tracking.configure(compose(["logger=none"]).logger, tmp_path) == []


SECRET = "hf_0123456789abcdefSECRET"


def test_secrets_are_redacted_from_resolved_config(monkeypatch):
    monkeypatch.setenv("MY_HF_TOKEN", SECRET)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "falsefalse")  # not a secret name
    cfg = compose(
        [
            "+extra.from_env=${oc.env:MY_HF_TOKEN}",
            f"+extra.url='https://user:{SECRET}@example.com/x'",
            "+extra.api_key=typed-in-literally",
            "+extra.pad_token='<|endoftext|>'",
            "+extra.para=${oc.env:TOKENIZERS_PARALLELISM}",
        ]
    )
    text = redact.to_yaml(cfg)
    assert SECRET not in text and "typed-in-literally" not in text
    extra = OmegaConf.create(text).extra
    assert extra.from_env == redact.REDACTED
    assert extra.url == f"https://user:{redact.REDACTED}@example.com/x"
    assert extra.api_key == redact.REDACTED
    assert extra.pad_token == "<|endoftext|>"
    assert extra.para == "falsefalse"
    assert SECRET not in json.dumps(tracking.wandb_config(cfg))


def test_scrub_files_cleans_hydra_yaml(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    (tmp_path / "overrides.yaml").write_text(f"- +logger.api_key={SECRET}\n- train.max_steps=3\n")
    (tmp_path / "config.yaml").write_text("logger:\n  api_key: abc123\n  project: vlexp\n")
    redact.scrub_files(tmp_path)
    overrides = (tmp_path / "overrides.yaml").read_text()
    assert SECRET not in overrides and "train.max_steps=3" in overrides
    config = (tmp_path / "config.yaml").read_text()
    assert "abc123" not in config and "project: vlexp" in config


def test_objective_is_the_mean_of_the_last_logged_rewards(tmp_path):
    rows = [{"step": i, "reward": float(i)} for i in range(1, 21)]
    rows.append({"step": 20, "train_runtime": 3.0})
    rows.append({"step": 20, "eval_reward": 99.0})
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{trunc")
    assert sweep.objective(tmp_path, "reward", 10) == pytest.approx(15.5)
    assert sweep.objective(tmp_path, "reward", 1) == 20.0
    assert sweep.objective(tmp_path, "kl", 10) is None
    assert sweep.objective(tmp_path / "missing") is None
