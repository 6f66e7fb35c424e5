"""Mistakes answered in seconds with one line: a hub model with no network, a missing
mandatory value, a misspelt key, a reward the algorithm does not use, a missing checkpoint;
and `--help` naming every group."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, compose, run_cli
from vlexp import overrides
from vlexp.app import unused_reward_note
from vlexp.evaluate import EvalError, locate
from vlexp.models import loading
from vlexp.validate import ConfigError, validate

HUB_ID = "Qwen/Qwen2.5-VL-3B-Instruct"
NOT_CACHED = "not in the local cache and the hub is unreachable"


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    loading.hub_reachable.cache_clear()
    yield tmp_path / "hf"
    loading.hub_reachable.cache_clear()


def test_hub_model_without_network_stops_in_seconds(tmp_path, empty_hub_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the probe decides, not the flag
    started = time.monotonic()
    result = run_cli(
        f"model.name_or_path={HUB_ID}",
        f"hydra.run.dir={tmp_path}/run",
        # A closed local port: refused at once, whatever network this machine has.
        env={"HF_HOME": str(empty_hub_cache), "HF_ENDPOINT": "http://127.0.0.1:9"},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1 and elapsed < 10, (elapsed, result.stderr[-2000:])
    assert f"model.name_or_path={HUB_ID}: {NOT_CACHED}: download it with `hf download " in (
        result.stderr
    )
    assert "or set `model.name_or_path` to a local directory" in result.stderr
    assert "Traceback" not in result.stderr and "Retrying" not in result.stderr


def test_hf_hub_offline_is_respected(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    problem = loading.source_problem(HUB_ID)
    assert problem.endswith(
        f"{NOT_CACHED} (HF_HUB_OFFLINE is set): download it with `hf download {HUB_ID}` or "
        "set `model.name_or_path` to a local directory"
    )
    # In the cache: loads offline, no problem.
    snapshot = (
        empty_hub_cache / "hub" / "models--Qwen--Qwen2.5-VL-3B-Instruct" / "snapshots" / "abc"
    )
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert loading.source_problem(HUB_ID) is None


def test_a_local_path_that_is_missing_is_named(tmp_path):
    problem = loading.source_problem(str(tmp_path / "nowhere"))
    assert problem.startswith(f"model.name_or_path={tmp_path}/nowhere: no such directory")
    assert loading.source_problem(str(tmp_path)) is None
    assert loading.source_problem("tiny://qwen2_5_vl") is None


def test_a_missing_mandatory_value_is_one_line_with_an_example(tmp_path):
    with pytest.raises(ConfigError) as caught:
        validate(compose(["data=jsonl"]))
    assert str(caught.value) == (
        "data.train is required and not set: add it to the command, e.g. "
        "data.train=/data/train.jsonl"
    )
    result = run_cli("data=jsonl", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"vlexp: config error: {caught.value}"]


def test_a_misspelt_key_gets_did_you_mean(tmp_path):
    assert overrides.problem(["train.max_step=3", "algo=sft"]) == (
        "vlexp: train.max_step is not a key of the config: did you mean train.max_steps=3?"
    )
    assert overrides.problem(["train.max_steps=3"]) is None
    result = run_cli("train.max_step=3", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [overrides.problem(["train.max_step=3"])]
    assert not (tmp_path / "run").exists()  # stopped before a run dir was made


def test_the_old_gradient_checkpointing_name_is_refused():
    with pytest.raises(ConfigError, match="algo.args.gradient_checkpointing is transformers'"):
        validate(compose(["+algo.args.gradient_checkpointing=true"]))


def test_a_reward_for_an_algorithm_that_does_not_generate_is_noted():
    note = unused_reward_note(compose(["algo=sft"]), ["algo=sft", "reward=think_format"])
    assert note.startswith("reward=think_format: algo=sft does not generate while training")
    assert "serves evaluation only" in note
    assert unused_reward_note(compose([]), ["reward=think_format"]) is None
    assert unused_reward_note(compose(["algo=sft"]), ["algo=sft"]) is None


def test_help_lists_every_group_including_experiment():
    result = run_cli("--help")
    groups = [line.split(":")[0] for line in result.stdout.splitlines() if ": " in line]
    for group in ("algo", "data", "eval", "experiment", "launcher", "logger", "memory",
                  "model", "prompt", "reward"):  # fmt: skip
        assert group in groups, group
    assert "shapes_grpo" in result.stdout and result.stdout.startswith("vlexp is powered by")


def test_evaluate_names_a_missing_checkpoint_and_lists_the_existing_ones(tmp_path):
    (tmp_path / "config.resolved.yaml").write_text("{}")
    for name in ("checkpoint-40", "checkpoint-5", "final"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    with pytest.raises(EvalError) as caught:
        locate(str(tmp_path / "checkpoint-20"))
    assert f"no checkpoint-20/ with a model in {tmp_path}" in str(caught.value)
    assert "it has: checkpoint-5, checkpoint-40, final" in str(caught.value)


def test_evaluate_of_an_uncached_hub_model_stops_in_seconds(tmp_path, empty_hub_cache):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "vlexp.evaluate", "model=qwen2_5_vl_3b", "data=shapes",
         f"hydra.run.dir={tmp_path}/eval"],
        cwd=REPO, env={**os.environ, "HF_HOME": str(empty_hub_cache), "HF_HUB_OFFLINE": "1"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and time.monotonic() - started < 10
    assert result.stderr.startswith(f"vlexp.evaluate: model.name_or_path={HUB_ID}: {NOT_CACHED}")
