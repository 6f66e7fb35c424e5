"""The tiny model learns to use the zoom tool on `shapes_zoom` (env=zoom): over a short GRPO run
the tool-call rate and the accuracy reward rise, and the same run without the tool ends lower.

On `model=tiny_tools` (the tiny Qwen2.5-VL with a tool-use warm-up, vlexp.models.tool_warmup):
it zooms in about a third of its rollouts, each zoom four well-formed calls (one per quarter of
the image, so the runs set env.max_tool_calls=4). Not met yet (strict xfail, so it is noticed
when it starts passing): the model does not read the shape's kind from the crops (sampled: 9
of 24 right after a zoom, 17 of 40 answering at once), so GRPO has no better answer after a
zoom to reinforce. Measured on this machine (CPU, 2 cores shared), 6 steps of 8 rollouts,
first three steps -> last three: seed 42: tools/call_frequency 0.46 -> 0.46,
rewards/accuracy/mean 0.29 -> 0.38 (train 82 s); without the tool (env=none) 0.29 -> 0.25
(12 s). seed 1: calls 0.67 -> 0.21, accuracy 0.25 -> 0.42 (50 s); without the tool 0.29 ->
0.00 (12 s). The accuracy rises and ends above the run without the tool, the call rate does
not rise. Building model=tiny_tools the first time takes ~7 min more (800 warm-up steps).
docs/agentic.md says the same."""

from __future__ import annotations

import pytest

from tests.helpers import read_metrics, run_cli

STEPS = 6
RUN = [
    "model=tiny_tools",
    "data=shapes_zoom",
    f"train.max_steps={STEPS}",
    "train.per_device_train_batch_size=8",
]


def _mean(rows: list[dict], key: str) -> float:
    values = [row[key] for row in rows if key in row]
    return sum(values) / len(values)


def _train(tmp_path, name: str, *overrides: str) -> list[dict]:
    run_dir = tmp_path / name
    done = run_cli(*RUN, *overrides, f"hydra.run.dir={run_dir}", timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return read_metrics(run_dir)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="model=tiny_tools zooms (four well-formed calls) in about a third of its rollouts "
    "but does not read the crops: over 6 steps the call rate went 0.46 -> 0.46 (seed 42) and "
    "0.67 -> 0.21 (seed 1) while accuracy rose 0.29 -> 0.38 and 0.25 -> 0.42 (0.25 and 0.00 "
    "at the end without the tool)",
)
def test_the_tiny_model_learns_to_call_the_zoom_tool_and_answers_better_than_without(tmp_path):
    with_tool = _train(tmp_path, "zoom", "env=zoom", "env.max_tool_calls=4")
    first, last = with_tool[: STEPS // 2], with_tool[STEPS // 2 :]
    calls = _mean(first, "tools/call_frequency"), _mean(last, "tools/call_frequency")
    accuracy = _mean(first, "rewards/accuracy/mean"), _mean(last, "rewards/accuracy/mean")
    assert calls[1] > calls[0] + 0.1, calls
    assert accuracy[1] > accuracy[0] + 0.1, accuracy
    # Only once the tool run has learned: the same run without the tool ends lower (while the
    # test is an xfail this saves the suite a second run that cannot change the verdict).
    without = _train(tmp_path, "plain", "env=none", "algo.args.max_completion_length=384")
    assert accuracy[1] > _mean(without[STEPS // 2 :], "rewards/accuracy/mean") + 0.1
