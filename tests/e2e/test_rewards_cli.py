"""Rewards through the command line, as users run them: their own reward (one YAML file and
one function), a reward that raises, and the W&B completions table (offline)."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

from tests.helpers import read_metrics, run_cli
from tests.wandb_reader import wandb_records

USER_MODULE = '''
"""A user's reward module, outside vlexp."""


def no_counting(completions, task, **kwargs):
    """1.0 for every completion; refuses to score counting questions."""
    scores = []
    for completion, kind in zip(completions, task, strict=True):
        if kind == "count":
            raise ValueError("no counting questions here")
        scores.append(1.0)
    return scores
'''

USER_YAML = """
# conf/reward/no_counting.yaml in the user's own config folder
funcs:
  no_counting:
    _target_: my_rewards.no_counting
    _partial_: true
weights:
  no_counting: 0.5
"""


def _user_reward(tmp_path: Path) -> tuple[list[str], dict]:
    """Write the module and the YAML; return the CLI arguments and environment that use them."""
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "conf" / "reward").mkdir(parents=True)
    (tmp_path / "conf" / "reward" / "no_counting.yaml").write_text(USER_YAML)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    args = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "reward=[think_format,no_counting]"]
    return args, env


def test_a_user_reward_with_on_error_zero_counts_its_errors(tmp_path, tiny_model):
    args, env = _user_reward(tmp_path)
    run_dir = tmp_path / "run"
    result = run_cli(
        *args, "reward.on_error=zero", "train.max_steps=3", f"hydra.run.dir={run_dir}", env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_metrics(run_dir)
    assert len(rows) == 3
    for row in rows:
        # 8 completions per step (2 prompts x 4): a counting prompt's 4 completions score 0.
        errors = row["rewards/no_counting/errors"]
        assert errors in (0.0, 4.0, 8.0)
        assert row["rewards/no_counting/mean"] == (8 - errors) / 8
    assert sum(row["rewards/no_counting/errors"] for row in rows) > 0
    resolved = (run_dir / "config.resolved.yaml").read_text()
    assert "_target_: my_rewards.no_counting" in resolved and "no_counting: 0.5" in resolved


def test_a_raising_reward_stops_the_run_naming_it(tmp_path, tiny_model):
    args, env = _user_reward(tmp_path)
    result = run_cli(*args, "train.max_steps=3", f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert result.returncode != 0
    err = result.stderr
    assert "vlexp: reward function 'no_counting' (my_rewards.no_counting) raised ValueError" in err
    assert "no counting questions here" in err
    assert f"at {tmp_path / 'my_rewards.py'}:" in err
    assert re.search(r"on completion [1-8] of 8: '<", err)  # the quoted completion itself
    assert "reward.on_error=zero" in err
    assert "Traceback" not in err


def test_log_completions_sends_a_table_with_images_to_wandb_offline(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    result = run_cli(
        "logger=wandb",
        "logger.mode=offline",
        "algo.args.log_completions=true",
        "train.max_steps=2",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = wandb_records(run_dir)

    tables = [
        r["history"]["item"]
        for r in records
        if r.get("type") == "history" and "completions._type" in r["history"]["item"]
    ]
    assert tables and all(t["completions._type"] == "table-file" for t in tables)
    assert {t["completions.nrows"] for t in tables} == {8}  # one row per completion

    (artifact,) = [
        r["artifact"]
        for r in records
        if r.get("type") == "artifact" and r["artifact"]["type"] == "run_table"
    ][:1]
    files = {entry["path"]: entry["local_path"] for entry in artifact["manifest"]["contents"]}
    assert any(path.startswith("media/images/") and path.endswith(".png") for path in files)
    table = json.loads(Path(files["completions.table.json"]).read_text())
    assert table["columns"] == [
        "step",
        "prompt",
        "completion",
        "think_format",
        "accuracy",
        "advantage",
        "image",
    ]
    row = table["data"][0]
    assert row[1].startswith("user: <image>")  # prompts as text: W&B rejects mixed parts
    assert row[6][0]["_type"] == "image-file" and row[6][0]["path"].startswith("media/images/")

    history = [r["history"]["item"] for r in records if r.get("type") == "history"]
    logged = {key for item in history for key in item}
    for name in ("train/reward", "train/rewards/accuracy/mean", "train/kl", "train/entropy"):
        assert name in logged
