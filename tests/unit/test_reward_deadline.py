"""Rewards with deadlines: a hung call scores as reward.on_error says, is counted and named."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.helpers import compose
from vlexp import runplan
from vlexp.rewards.guard import RewardError, guard


def stuck(completions, **kwargs):
    """Spins forever (pure Python, like a runaway sympy simplification) on "hang"."""
    scores = []
    for completion in completions:
        while completion == "hang":
            pass
        scores.append(1.0)
    return scores


def sleepy(completions, **kwargs):
    """Blocks in a system call (like a network request) on "hang"."""
    if "hang" in completions:
        time.sleep(30)
    return [1.0] * len(completions)


async def async_stuck(completions, **kwargs):
    if "hang" in completions:
        await asyncio.sleep(30)
    return [1.0] * len(completions)


@pytest.mark.parametrize("func", [stuck, sleepy], ids=["spinning", "sleeping"])
def test_a_hung_call_scores_zero_is_counted_and_named(func, caplog):
    logged = {}
    reward = guard(func, on_error="zero", timeout_s=0.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="vlexp"):
        scores = reward(["ok", "hang", "fine"], log_metric=logged.__setitem__)
    assert scores == [1.0, 0.0, 1.0]
    assert time.monotonic() - started < 3  # the batch, then one at a time: at most ~2 deadlines
    assert logged == {
        f"rewards/{func.__name__}/errors": 1.0,
        f"rewards/{func.__name__}/timeouts": 1.0,
    }
    assert (
        f"reward {func.__name__} (tests.unit.test_reward_deadline.{func.__name__}) did not "
        "return within reward.timeout_s=0.5 s, abandoned and scored 0" in caplog.text
    )
    assert "on completion 2 of 3: 'hang'" in caplog.text


def test_a_spinning_call_is_stopped_not_left_burning_a_core():
    import sys

    def spinning() -> bool:
        return any(frame.f_code is stuck.__code__ for frame in sys._current_frames().values())

    guard(stuck, on_error="zero", timeout_s=0.2)(["hang"])
    deadline = time.monotonic() + 5
    while spinning() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not spinning()


def test_a_hung_call_under_raise_stops_naming_function_and_completion():
    reward = guard(stuck, on_error="raise", timeout_s=0.3)
    with pytest.raises(RewardError) as caught:
        reward(["ok", "hang"])
    message = str(caught.value)
    assert message.startswith(
        "reward function 'stuck' (tests.unit.test_reward_deadline.stuck) did not return within "
        "reward.timeout_s=0.3 s and was abandoned\n  on completion 2 of 2: 'hang'"
    )
    assert "raise reward.timeout_s" in message


def test_async_rewards_get_the_deadline_too():
    reward = guard(async_stuck, on_error="zero", timeout_s=0.3)
    assert asyncio.run(reward(["ok", "hang"])) == [1.0, 0.0]


def test_the_deadline_is_on_for_vlexps_rewards_and_off_for_others_by_default():
    cfg = compose(["reward=[accuracy]"])
    assert runplan.of(cfg).reward_functions()["accuracy"].timeout_s == 60.0
    cfg.reward.funcs.accuracy._target_ = "tests.unit.test_reward_deadline.stuck"
    assert runplan.of(cfg).reward_functions()["accuracy"].timeout_s is None
    cfg.reward.timeout_s = 5
    assert runplan.of(cfg).reward_functions()["accuracy"].timeout_s == 5.0
    cfg.reward.timeout_s = 0
    assert runplan.of(cfg).reward_functions()["accuracy"].timeout_s is None


def test_math_verify_scores_within_the_deadline():
    reward = guard(__import__("vlexp.rewards", fromlist=["accuracy"]).accuracy, timeout_s=30)
    assert reward(
        ["<answer>0.5</answer>", "<answer>3</answer>"], solution=["\\frac{1}{2}"] * 2
    ) == [
        1.0,
        0.0,
    ]


class _TokenCounter:
    """Stands in for a loaded reward model: scores a conversation by its token count."""

    device = "cpu"

    def to(self, device):
        return self

    def eval(self):
        return self

    def requires_grad_(self, flag):
        return self

    def __call__(self, input_ids, attention_mask, **kwargs):
        from types import SimpleNamespace

        return SimpleNamespace(logits=attention_mask.sum(-1, keepdim=True).float())


def test_reward_model_loads_once_when_the_rewards_are_built_not_inside_the_deadline(
    tiny_model, monkeypatch
):
    """A load slower than reward.timeout_s: built into the rewards (before training), the
    first call scores within the deadline, and building the rewards again (in-training
    evaluation) loads nothing more. Loading on the first call timed the load out, and the
    abandoned thread went on loading while the retry loaded again."""
    from vlexp.algorithms import reward_model

    loads = []

    def slow_load(path, dtype=None):
        loads.append(path)
        time.sleep(1.0)
        return _TokenCounter()

    monkeypatch.setattr(reward_model, "load_reward_model", slow_load)
    monkeypatch.setattr(reward_model, "_SCORERS", {}, raising=False)  # a fresh process
    cfg = compose(["reward=[model]", f"reward.funcs.model.path={tiny_model}"])
    cfg.reward.timeout_s = 0.5
    rewards = runplan.of(cfg).reward_functions()
    assert len(loads) == 1  # before training starts
    prompts = [[{"role": "user", "content": [{"type": "text", "text": "How many?"}]}]] * 2
    scores = rewards["model"](prompts=prompts, completions=["Two.", "There are three."])
    assert len(scores) == 2 and scores[0] < scores[1]  # a longer answer has more tokens
    runplan.of(cfg).reward_functions()["model"](prompts=prompts[:1], completions=["Two."])
    assert len(loads) == 1
