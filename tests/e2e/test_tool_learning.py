"""The tiny model learns to use the zoom tool on `shapes_zoom` (env=zoom): over a short GRPO run
the tool-call rate and the accuracy reward rise, and the same run without the tool ends lower.

On `model=tiny_tools` (the tiny Qwen2.5-VL with a tool-use warm-up, vlexp.models.tool_warmup):
it calls the tool in about half its rollouts, every call well-formed, the zoom returning the
whole canvas at 64 image tokens (twice the prompt's resolution). Not met yet (strict xfail, so
it is noticed when it starts passing): the model does not read the shape's kind from the
returned image (sampled: 5 of 35 right after a zoom, 10 of 29 answering at once), so GRPO has no
better answer after a zoom to reinforce. Measured on this machine (CPU, 2 cores shared), 6 steps
of 8 rollouts, first half -> second half of the steps:
seed 42: tools/call_frequency 0.54 -> 0.50, rewards/accuracy/mean 0.25 -> 0.29 (train 86 s);
without the tool (env=none) 0.17 -> 0.29 (33 s). seed 1: calls 0.50 -> 0.83, accuracy
0.33 -> 0.21 (40 s); without the tool 0.08 -> 0.25 (11 s). Building model=tiny_tools the
first time takes ~7 min more (800 warm-up steps).
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
    reason="model=tiny_tools calls the tool (about half its rollouts, all well-formed) but does "
    "not read the returned image: over 6 steps, calls 0.54 -> 0.50 and accuracy 0.25 -> 0.29 "
    "(seed 42), calls 0.50 -> 0.83 and accuracy 0.33 -> 0.21 (seed 1); without the tool "
    "accuracy ends at 0.29 and 0.25",
)
def test_the_tiny_model_learns_to_call_the_zoom_tool_and_answers_better_than_without(tmp_path):
    with_tool = _train(tmp_path, "zoom", "env=zoom", "env.max_image_tokens_per_turn=64")
    first, last = with_tool[: STEPS // 2], with_tool[STEPS // 2 :]
    calls = _mean(first, "tools/call_frequency"), _mean(last, "tools/call_frequency")
    accuracy = _mean(first, "rewards/accuracy/mean"), _mean(last, "rewards/accuracy/mean")
    assert calls[1] > calls[0] + 0.1, calls
    assert accuracy[1] > accuracy[0] + 0.1, accuracy
    # Only once the tool run has learned: the same run without the tool ends lower (while the
    # test is an xfail this saves the suite a second run that cannot change the verdict).
    without = _train(tmp_path, "plain", "env=none", "algo.args.max_completion_length=384")
    assert accuracy[1] > _mean(without[STEPS // 2 :], "rewards/accuracy/mean") + 0.1
