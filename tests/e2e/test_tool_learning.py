"""The tiny model learns to use the zoom tool on `shapes_zoom` (env=zoom): over a short GRPO run
the tool-call rate and the accuracy reward rise, and the same run without the tool ends lower.

Not met yet (strict xfail, so it is noticed when it starts passing): the tiny builds' warm-up
(vlexp.models.tiny) never showed them a tool call, so they emit none and GRPO has nothing to
reinforce. Measured 2026-12-07 on this machine (CPU, 6 steps of 8 rollouts, `python -m vlexp
env=zoom data=shapes_zoom train.max_steps=6`): tools/call_frequency 0 at every step on model=tiny
(3m46s) and on model=tiny_qwen3_vl (4m38s); rewards/accuracy/mean and rewards/think_format/mean
0 at every step, with the tool and without it (env=none, 77 s). docs/agentic.md says the same."""

from __future__ import annotations

import pytest

from tests.helpers import read_metrics, run_cli

STEPS = 6
RUN = ["data=shapes_zoom", f"train.max_steps={STEPS}", "train.per_device_train_batch_size=8"]


def _mean(rows: list[dict], key: str) -> float:
    values = [row[key] for row in rows if key in row]
    return sum(values) / len(values)


def _train(tmp_path, name: str, *overrides: str) -> list[dict]:
    run_dir = tmp_path / name
    done = run_cli(*RUN, *overrides, f"hydra.run.dir={run_dir}", timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return read_metrics(run_dir)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="the tiny model emits no tool call (tools/call_frequency 0 at every step; accuracy "
    "0 with and without the tool): its warm-up has no tool-call examples yet",
)
def test_the_tiny_model_learns_to_call_the_zoom_tool_and_answers_better_than_without(tmp_path):
    with_tool = _train(tmp_path, "zoom", "env=zoom")
    first, last = with_tool[: STEPS // 2], with_tool[STEPS // 2 :]
    calls = _mean(first, "tools/call_frequency"), _mean(last, "tools/call_frequency")
    accuracy = _mean(first, "rewards/accuracy/mean"), _mean(last, "rewards/accuracy/mean")
    assert calls[1] > calls[0] + 0.1, calls
    assert accuracy[1] > accuracy[0] + 0.1, accuracy
    # Only once the tool run has learned: the same run without the tool ends lower (while the
    # test is an xfail this saves the suite a second run that cannot change the verdict).
    without = _train(tmp_path, "plain", "env=none", "algo.args.max_completion_length=384")
    assert accuracy[1] > _mean(without[STEPS // 2 :], "rewards/accuracy/mean") + 0.1
