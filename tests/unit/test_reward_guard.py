"""Reward functions as the trainer receives them: named, guarded, composed from the config."""

from __future__ import annotations

import functools
import pickle

import pytest
from omegaconf import OmegaConf

from tests.helpers import compose
from vlexp import rewards, runplan
from vlexp.rewards.guard import GuardedReward, RewardError


def picky(completions, solution, **kwargs):
    """Raises on the completion "boom", scores 1.0 otherwise (a module-level reward)."""
    out = []
    for completion in completions:
        if completion.startswith("boom"):
            raise ValueError(f"cannot score {completion[:4]!r}")
        out.append(1.0)
    return out


def test_guard_keeps_the_name_trl_logs_and_passes_scores_through():
    from trl.trainer.utils import get_callable_name

    guarded = GuardedReward(functools.partial(rewards.length, max_length=8, window=4))
    assert get_callable_name(guarded) == "length"
    assert GuardedReward(rewards.accuracy, name="acc").__name__ == "acc"
    assert guarded(["a"], completion_ids=[[1] * 6]) == [-0.5]


def test_guard_survives_pickling():
    # TRL may ship reward functions to a worker process.
    guarded = pickle.loads(pickle.dumps(GuardedReward(picky, on_error="zero")))
    assert guarded(["ok"], solution=["1"]) == [1.0] and guarded.__name__ == "picky"


def test_a_raising_reward_names_itself_and_quotes_the_completion():
    guarded = GuardedReward(picky, name="picky")
    long_completion = "boom " + "x" * 1000
    with pytest.raises(RewardError) as caught:
        guarded(["fine", long_completion, "fine"], solution=["1", "2", "3"])
    message = str(caught.value)
    assert "reward function 'picky' (tests.unit.test_reward_guard.picky)" in message
    assert "raised ValueError: cannot score 'boom'" in message
    assert "test_reward_guard.py:" in message  # where it raised
    assert "on completion 2 of 3: 'boom xxxx" in message
    assert "(1005 characters)" in message and "x" * 400 not in message  # truncated
    assert "reward.on_error=zero" in message


def test_on_error_zero_scores_only_the_offending_completions_and_counts_them():
    logged = []
    guarded = GuardedReward(picky, name="picky", on_error="zero")
    scores = guarded(
        ["fine", "boom", "fine", "boom!"],
        solution=["1", "2", "3", "4"],
        log_metric=lambda name, value: logged.append((name, value)),
    )
    assert scores == [1.0, 0.0, 1.0, 0.0]
    assert logged == [("rewards/picky/errors", 2.0)]
    guarded(["fine"], solution=["1"], log_metric=lambda name, value: logged.append((name, value)))
    assert logged[-1] == ("rewards/picky/errors", 0.0)  # logged every call: a flat 0 when fine


def test_columns_are_sliced_per_completion_when_rescoring():
    seen = []

    def strict(completions, solution, trainer_state=None, **kwargs):
        seen.append((list(completions), list(solution), trainer_state))
        if len(completions) > 1:
            raise RuntimeError("batch")
        return [float(completions[0] == solution[0])]

    guarded = GuardedReward(strict, on_error="zero")
    assert guarded(["a", "b"], solution=["a", "c"], trainer_state="S") == [1.0, 0.0]
    assert seen[1:] == [(["a"], ["a"], "S"), (["b"], ["c"], "S")]


def test_a_batch_only_failure_is_still_reported():
    def batch_only(completions, **kwargs):
        if len(completions) > 1:
            raise RuntimeError("needs one at a time")
        return [1.0]

    with pytest.raises(RewardError, match="on the batch of 2 completions"):
        GuardedReward(batch_only)(["a", "b"])


def test_unknown_on_error_is_rejected():
    with pytest.raises(ValueError, match="raise"):
        GuardedReward(picky, on_error="ignore")


def test_reward_files_compose_into_guarded_functions_in_order():
    cfg = compose(["reward=[think_format,accuracy,choice,iou,length]", "reward.on_error=zero"])
    funcs = list(runplan.of(cfg).reward_functions().values())
    assert [f.__name__ for f in funcs] == ["think_format", "accuracy", "choice", "iou", "length"]
    assert all(f.on_error == "zero" for f in funcs)
    length = funcs[-1].func
    assert isinstance(length, functools.partial) and length.func is rewards.length
    # The overlong window ends at the algorithm's completion limit.
    assert length.keywords == {"max_length": cfg.algo.args.max_completion_length, "window": 8}


def test_weights_follow_the_functions():
    from vlexp.config.reward import weights

    cfg = compose(["reward=[think_format,choice]", "reward.weights.choice=2.5"])
    assert weights(cfg) == {"think_format": 1.0, "choice": 2.5}
    assert OmegaConf.select(cfg, "reward.on_error") == "raise"


def test_the_message_points_at_the_reward_s_own_line_when_a_library_raises():
    import json

    def uses_json(completions, **kwargs):
        text = json.dumps({"c": object()})
        return [float(len(text))] * len(completions)

    with pytest.raises(RewardError) as caught:
        GuardedReward(uses_json)(["a"])
    message = str(caught.value)
    assert "test_reward_guard.py:" in message and "in uses_json" in message
    assert "(raised in " in message and "json" in message.split("(raised in ")[1]


def test_the_readme_own_reward_example_works(tmp_path, monkeypatch):
    import re

    from tests.readme import page

    rewards = page("rewards")
    section = rewards[rewards.index("**Your own reward**") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    conf = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    (tmp_path / "my_rewards.py").write_text(code)
    (tmp_path / "myconf" / "reward").mkdir(parents=True)
    (tmp_path / "myconf" / "reward" / "short_answer.yaml").write_text(conf)
    monkeypatch.syspath_prepend(str(tmp_path))

    cfg = compose(
        [
            f"hydra.searchpath=[file://{tmp_path / 'myconf'}]",
            "reward=[think_format,accuracy,short_answer]",
        ]
    )
    assert dict(cfg.reward.weights) == {"think_format": 1.0, "accuracy": 1.0, "short_answer": 0.5}
    funcs = list(runplan.of(cfg).reward_functions().values())
    assert [f.__name__ for f in funcs] == ["think_format", "accuracy", "short_answer"]
    scores = funcs[-1](
        ["<answer>a red one</answer>", "<answer>it is a red one</answer>"], solution=["x", "y"]
    )
    assert scores == [1.0, 0.0]


async def judge(completions, **kwargs):
    """An async reward (e.g. an LLM judge) that refuses empty completions."""
    if any(not c for c in completions):
        raise ValueError("empty")
    return [0.5] * len(completions)


def test_async_rewards_stay_async_and_guarded():
    import asyncio

    from trl.trainer.utils import is_async_callable

    from vlexp.rewards.guard import guard

    guarded = guard(functools.partial(judge), name="judge", on_error="zero")
    assert is_async_callable(guarded) and not is_async_callable(guard(picky))
    logged = []
    scores = asyncio.run(guarded(["a", "", "b"], log_metric=lambda *a: logged.append(a)))
    assert scores == [0.5, 0.0, 0.5] and logged == [("rewards/judge/errors", 1.0)]
    with pytest.raises(RewardError, match="on completion 2 of 2: ''"):
        asyncio.run(guard(judge)(["a", ""]))


def test_prompt_text_docstring_examples_run():
    import doctest

    from vlexp.data import messages

    result = doctest.testmod(messages)
    assert result.attempted >= 1 and result.failed == 0


def test_metric_names_follow_the_function_not_the_key():
    # TRL's rule (rewards/<function name>/...): a callable object keeps its own __name__.
    class Scorer:
        __name__ = "reward_model"

        def __call__(self, completions, **kwargs):
            return [1.0] * len(completions)

    assert GuardedReward(Scorer()).__name__ == "reward_model"
    assert GuardedReward(functools.partial(picky)).__name__ == "picky"
