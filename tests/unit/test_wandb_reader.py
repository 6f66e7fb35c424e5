"""tests/wandb_reader.py, the one reader of offline W&B runs that the W&B tests share, gives what
wandb's own `leet inspect --json` printed for a recorded run, whichever wandb is installed: the
CLI where it has `leet inspect`, else wandb's datastore reader (wandb 0.25.0, which the bench
extra's lmms-eval pins). The run was written by wandb 0.25.0 and the golden output printed by
wandb 0.31.0's CLI (tests/data/wandb_run/make_fixture.py says how to re-record both)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import wandb_reader
from tests.wandb_reader import wandb_records, wandb_summary

DATA = Path(__file__).resolve().parents[1] / "data" / "wandb_run"
RUN = DATA / "run-fixture.wandb"
RERECORD = "re-record with tests/data/wandb_run/make_fixture.py if wandb's leet output changed"


def golden_records() -> list[dict]:
    return [json.loads(line) for line in (DATA / "leet-inspect.jsonl").read_text().splitlines()]


def test_records_are_what_wandb_leet_printed():
    records = wandb_records(RUN)
    golden = golden_records()
    assert [r["type"] for r in records] == [r["type"] for r in golden]
    for got, want in zip(records, golden, strict=True):
        assert got == want, (wandb_reader.reader(), RERECORD)


def test_summary_is_what_wandb_leet_printed():
    summary = wandb_summary(RUN)
    golden = json.loads((DATA / "leet-inspect-summary.json").read_text())
    for key in wandb_reader.LIVENESS_KEYS:  # the file's mtime and path differ from the golden's
        summary.pop(key, None)
        golden.pop(key)
    assert summary == golden, (wandb_reader.reader(), RERECORD)


def test_what_the_wandb_tests_read_is_what_the_run_logged():
    """The values make_fixture.py logged, by hand: a check that needs no golden file."""
    records = wandb_records(RUN.parent)  # a folder holding the run file is found too
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    rows = [row for row in history if "train/reward" in row]
    logged = [(r["train/global_step"], r["train/reward"], r["train/kl"]) for r in rows]
    assert logged == [(1, 0.25, 0.5), (2, 0.5, 0.25)]
    assert [r["train/grad_norm"] for r in rows] == ["NaN", 1]  # leet's spelling of a NaN
    (table,) = [row for row in history if "completions._type" in row]
    assert table["completions._type"] == "table-file" and table["completions.nrows"] == 1
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    assert (run["display_name"], run["run_group"]) == ("grpo-max_steps=2", "grpo-shapes")
    (artifact,) = [r["artifact"] for r in records if r["type"] == "artifact"]
    paths = {entry["path"] for entry in artifact["manifest"]["contents"]}
    assert "completions.table.json" in paths
    assert any(p.startswith("media/images/") and p.endswith(".png") for p in paths)
    summary = wandb_summary(RUN)
    assert summary["tags"] == ["grpo", "tiny", "shapes"] and summary["run_id"] == "fixture"
    assert summary["config"] == {
        "algo.args.beta": 0.04,
        "reward": "think_format+accuracy",
        "seed": 0,
        "peft_config": {"default": {"r": 16}},  # leet's summary leaves the empty map out
    }
    assert summary["summary"]["eval/accuracy"] == 0.5 and summary["step"] == 2


def test_a_folder_without_one_run_is_named():
    with pytest.raises(AssertionError, match="expected one offline W&B run under"):
        wandb_reader.offline_run_file(DATA.parent.parent / "unit")
