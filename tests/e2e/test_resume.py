"""Resume after SIGTERM, one process: the run continues where it stopped, as if never stopped."""

from __future__ import annotations

import json
import math

import pytest

from tests.distributed.helpers import sigterm_after_step, start_cli
from tests.helpers import read_metrics, run_cli


def _interrupted_then_resumed(tmp_path, *args: str, stop_after: int):
    run_dir = tmp_path / "resumed"
    first = start_cli(*args, f"hydra.run.dir={run_dir}", log=tmp_path / "first.log")
    code = sigterm_after_step(first, run_dir, step=stop_after)
    assert code == 143, (tmp_path / "first.log").read_text()[-3000:]
    (checkpoint,) = run_dir.glob("checkpoint-*")
    stopped_at = int(checkpoint.name.split("-")[1])
    result = run_cli(*args, f"hydra.run.dir={run_dir}", "resume=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, stopped_at


def _losses(run_dir) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in read_metrics(run_dir)}


def assert_session_throughput(run_dir, tokens: float) -> None:
    """summary.json's tokens/s is the session's `tokens` over its train_runtime."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    (runtime,) = [json.loads(line)["train_runtime"] for line in lines if "train_runtime" in line]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["tokens"] == tokens, (summary["tokens"], tokens)
    assert summary["tokens_per_s"] == pytest.approx(tokens / runtime)


@pytest.mark.slow
def test_sft_resume_after_sigterm_matches_an_uninterrupted_run(tmp_path, tiny_model):
    args = ("algo=sft", "train.per_device_train_batch_size=2", "train.max_steps=6")
    straight = run_cli(*args, f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    run_dir, stopped_at = _interrupted_then_resumed(tmp_path, *args, stop_after=2)

    assert 2 <= stopped_at < 6
    state = json.loads((run_dir / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and (run_dir / "final").is_dir()
    expected, got = _losses(tmp_path / "straight"), _losses(run_dir)
    assert sorted(got) == list(range(1, 7))  # each step logged once, no gap, no repeat
    # TRL's SFT counts its tokens again from 0 after a resume: the last count is the session's.
    assert_session_throughput(run_dir, read_metrics(run_dir)[-1]["num_tokens"])
    for step in range(stopped_at + 1, 7):  # after the resume point: same data, same state
        assert math.isclose(got[step], expected[step], rel_tol=1e-4, abs_tol=1e-6), (
            step,
            got,
            expected,
        )


@pytest.mark.slow
def test_grpo_resume_after_sigterm_finishes_at_the_same_step(tmp_path, tiny_model):
    args = ("train.max_steps=4",)
    straight = run_cli(*args, f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    run_dir, stopped_at = _interrupted_then_resumed(tmp_path, *args, stop_after=1)

    assert 1 <= stopped_at < 4
    state = json.loads((run_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and (run_dir / "final").is_dir()
    expected = {r["step"]: r for r in read_metrics(tmp_path / "straight")}
    got = {r["step"]: r for r in read_metrics(run_dir)}
    assert sorted(got) == list(range(1, 5))
    # With one generation per optimizer step (steps_per_generation = gradient accumulation =
    # 1, num_iterations = 1) nothing is buffered across steps: the restored RNG and data
    # order draw the same completions, so the resumed steps repeat the uninterrupted ones.
    # tokens/s counts the resumed session only: TRL's GRPO restores its count
    # (num_input_tokens_seen), so the session's tokens are the count's growth since the resume.
    session = state["num_input_tokens_seen"] - got[stopped_at]["num_tokens"]
    assert_session_throughput(run_dir, session)
    for step in range(stopped_at + 1, 5):
        for key in ("loss", "reward", "completions/mean_length"):
            assert math.isclose(got[step][key], expected[step][key], rel_tol=1e-4, abs_tol=1e-6), (
                step,
                key,
                got[step][key],
                expected[step][key],
            )
