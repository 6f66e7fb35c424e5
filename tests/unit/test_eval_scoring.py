"""Evaluation scoring on hand-checked completions: exact answers, pass@k, the summary."""

from __future__ import annotations

import json
import math

import pytest

from vlexp.evaluation.scoring import (
    annotate,
    exact_match,
    pass_at_k,
    pass_ks,
    score,
    summarise,
)
from vlexp.rewards import accuracy, think_format

# (completion, solution, exact answer?) -- each checked by hand.
HAND_CHECKED = [
    ("<think>two red</think><answer>2</answer>", "2", True),
    ("<think>two red</think><answer> 2 </answer>", "2", True),  # surrounding space
    ("<answer>Red.</answer>", "red", True),  # case, final full stop
    ("<answer>light  blue</answer>", "light blue", True),  # inner runs of space
    ("2", "2", True),  # no tags: the whole completion is the answer
    ("<answer>1</answer><answer>3</answer>", "3", True),  # the last answer counts
    ("<answer>3</answer>", "2", False),
    ("<answer>2.0</answer>", "2", False),  # exact, not math-verify (the reward is lenient)
    ("<answer>two</answer>", "2", False),
    ("<think>2</think>", "2", False),  # no answer tag: the whole text is not "2"
    ("<answer></answer>", "2", False),
    ("", "red", False),
    ([{"role": "assistant", "content": "<answer>blue</answer>"}], "blue", True),  # chat form
]


@pytest.mark.parametrize(("completion", "solution", "expected"), HAND_CHECKED)
def test_exact_match_on_hand_checked_completions(completion, solution, expected):
    assert exact_match(completion, solution) is expected


def test_pass_at_k_matches_the_closed_form():
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k wrong: some draw of 2 always succeeds
    assert pass_at_k(8, 1, 8) == 1.0
    assert pass_ks(1) == [] and pass_ks(4) == [2, 4] and pass_ks(8) == [2, 4, 8]
    assert pass_ks(6) == [2, 4, 6]


def _samples(rows, weights):
    """rows: (prompt index, completion, solution, length, clipped) -> annotated samples."""
    completions = [r[1] for r in rows]
    examples = [{"prompt": [], "solution": r[2]} for r in rows]
    rewards = score(
        prompts=[[] for _ in rows],
        completions=completions,
        completion_ids=[[0] * r[3] for r in rows],
        examples=examples,
        reward_funcs={"think_format": think_format, "accuracy": accuracy},
    )
    return [
        annotate(
            {
                "index": r[0],
                "sample": 0,
                "completion": r[1],
                "solution": r[2],
                "length": r[3],
                "clipped": r[4],
                "rewards": rw,
            },
            weights,
        )
        for r, rw in zip(rows, rewards, strict=True)
    ]


def test_summary_of_a_hand_checked_batch():
    rows = [
        # prompt 0: 2 samples, one right
        (0, "<think>a</think><answer>2</answer>", "2", 10, False),
        (0, "<think>a</think><answer>3</answer>", "2", 12, False),
        # prompt 1: both wrong; the second has no format and was clipped
        (1, "<think>b</think><answer>blue</answer>", "red", 8, False),
        (1, "red red red", "red", 20, True),  # whole text is not "red": wrong, no format
        # prompt 2: 2.0 is accepted by the accuracy reward (math-verify) but is not exact
        (2, "<think>c</think><answer>2.0</answer>", "2", 6, False),
        (2, "<think>c</think><answer>2</answer>", "2", 4, False),
    ]
    samples = _samples(rows, {"think_format": 1.0, "accuracy": 2.0})
    # correct: the accuracy reward's verdict (2.0 equals 2); exact_match: the strict one.
    assert [s["correct"] for s in samples] == [True, False, False, False, True, True]
    assert [s["exact_match"] for s in samples] == [True, False, False, False, False, True]
    assert [s["format"] for s in samples] == [True, True, True, False, True, True]
    assert [s["rewards"]["accuracy"] for s in samples] == [1, 0, 0, 0, 1, 1]
    assert [s["reward"] for s in samples] == [3.0, 1.0, 1.0, 0.0, 3.0, 3.0]

    metrics = summarise(samples, num_samples=2)
    assert metrics["num_prompts"] == 3 and metrics["num_completions"] == 6
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["exact_match"] == pytest.approx(2 / 6)
    assert metrics["pass@2"] == pytest.approx(2 / 3)  # prompts 0 and 2 have a right answer
    assert metrics["reward"] == pytest.approx(11 / 6)
    assert metrics["rewards/accuracy/mean"] == pytest.approx(3 / 6)
    assert metrics["rewards/think_format/mean"] == pytest.approx(5 / 6)
    assert metrics["format_rate"] == pytest.approx(5 / 6)
    assert metrics["completions/mean_length"] == pytest.approx(60 / 6)
    assert metrics["completions/clipped_ratio"] == pytest.approx(1 / 6)
    mean = 11 / 6
    std = math.sqrt(sum((r - mean) ** 2 for r in [3, 1, 1, 0, 3, 3]) / 5)
    assert metrics["reward_std"] == pytest.approx(std)


def test_rewards_get_each_records_own_columns():
    seen = {}

    def spy(completions, solution, colour, **kwargs):
        seen.update(solution=solution, colour=colour, prompts=kwargs["prompts"])
        return [1.0 if c == s else None for c, s in zip(completions, solution, strict=True)]

    examples = [{"prompt": "p0", "solution": "a", "colour": "red"}, {"prompt": "p1", "solution": "b", "colour": "blue"}]  # fmt: skip
    rewards = score(["p0", "p1"], ["a", "x"], [[1], [2]], examples, {"spy": spy})
    assert seen == {"solution": ["a", "b"], "colour": ["red", "blue"], "prompts": ["p0", "p1"]}
    assert rewards[0]["spy"] == 1.0 and math.isnan(rewards[1]["spy"])  # None -> NaN, as TRL


def test_a_failing_reward_is_reported_not_zeroed():
    def broken(completions, **kwargs):
        raise KeyError("solution")

    with pytest.raises(RuntimeError, match="reward 'broken' failed during evaluation"):
        score(["p"], ["c"], [[1]], [{"prompt": "p"}], {"broken": broken})


def test_records_without_a_solution_have_no_accuracy():
    samples = [
        annotate(
            {"index": 0, "completion": "<answer>x</answer>", "length": 3, "clipped": False,
             "rewards": {"r": 0.5}},
            {"r": 1.0},
        )
    ]  # fmt: skip
    assert samples[0]["correct"] is None
    metrics = summarise(samples, 1)
    assert "accuracy" not in metrics and metrics["reward"] == 0.5


def test_ranks_share_the_records_and_the_gathered_summary_counts_each_once(monkeypatch):
    """Two ranks, five records: strided shares padded to equal length, padding dropped."""
    import accelerate.utils
    from omegaconf import OmegaConf

    from vlexp.evaluation import core
    from vlexp.evaluation.generation import Completion

    seen: dict[int, list[str]] = {}

    def fake_generate(model, processor, examples, **kwargs):
        seen[model] = [ex["solution"] for ex in examples]
        # Right on even records only: 3 of 5 (records 0, 2, 4).
        return [
            [Completion(f"<answer>{ex['solution'] if int(ex['solution']) % 2 == 0 else 'x'}</answer>", [1, 2], False)]
            for ex in examples
        ]  # fmt: skip

    monkeypatch.setattr(core, "generate", fake_generate)
    examples = [{"prompt": [], "images": [], "solution": str(i)} for i in range(5)]
    eval_cfg = OmegaConf.create({"max_new_tokens": 4, "num_samples": 1, "temperature": 0.0, "top_p": 1.0, "batch_size": 2})  # fmt: skip
    reward_cfg = OmegaConf.create(
        {"funcs": {"accuracy": {"_target_": "vlexp.rewards.accuracy", "_partial_": True}}}
    )

    class Rank:
        num_processes = 2

        def __init__(self, index):
            self.process_index = index

    shares = {}
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda s: shares.setdefault("r1", s))
    core.evaluate(1, None, examples, eval_cfg, reward_cfg, accelerator=Rank(1), progress=False)
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda s: s + shares["r1"])
    metrics, samples = core.evaluate(0, None, examples, eval_cfg, reward_cfg, accelerator=Rank(0), progress=False)  # fmt: skip

    assert seen == {0: ["0", "2", "4"], 1: ["1", "3", "3"]}  # rank 1 padded with its last record
    assert [s["index"] for s in samples] == [0, 1, 2, 3, 4]
    assert metrics["num_prompts"] == 5 and metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["rewards/accuracy/mean"] == pytest.approx(3 / 5)


def test_accuracy_is_the_accuracy_rewards_verdict_and_exact_match_the_strict_one(
    monkeypatch, tmp_path
):
    """Through the evaluation `python -m vlexp.evaluate` runs (generation faked): `0.5` for
    the solution `1/2` is right by the accuracy reward (math-verify) but not an exact match,
    and pass@k follows accuracy. The verdicts come from the reward itself, not from vlexp's
    evaluation code."""
    from omegaconf import OmegaConf

    from vlexp.evaluation import core
    from vlexp.evaluation.generation import Completion
    from vlexp.rewards import accuracy as accuracy_reward

    answers = {"1/2": ["<answer>0.5</answer>", "<answer>3</answer>"],
               "red": ["<answer>blue</answer>", "<answer>red</answer>"]}  # fmt: skip

    def fake_generate(model, processor, examples, **kwargs):
        return [[Completion(t, [1, 2], False) for t in answers[ex["solution"]]] for ex in examples]

    monkeypatch.setattr(core, "generate", fake_generate)
    examples = [{"prompt": [], "images": [], "solution": s} for s in answers]
    eval_cfg = OmegaConf.create({"max_new_tokens": 4, "num_samples": 2, "temperature": 1.0, "top_p": 1.0, "batch_size": 2})  # fmt: skip
    reward_cfg = OmegaConf.create(
        {"funcs": {"think_format": {"_target_": "vlexp.rewards.think_format", "_partial_": True}}}
    )  # no accuracy reward configured: evaluation's accuracy must not depend on it
    metrics, samples = core.evaluate(None, None, examples, eval_cfg, reward_cfg, progress=False)

    texts = [t for solution in answers for t in answers[solution]]
    verdicts = accuracy_reward(texts, solution=[s for s in answers for _ in range(2)])
    assert verdicts == [1.0, 0.0, 0.0, 1.0]  # the reward's own judgement
    assert [s["correct"] for s in samples] == [v == 1.0 for v in verdicts]
    assert [s["exact_match"] for s in samples] == [False, False, False, True]
    assert metrics["accuracy"] == pytest.approx(2 / 4)
    assert metrics["exact_match"] == pytest.approx(1 / 4)
    assert metrics["pass@2"] == pytest.approx(1.0)  # each prompt has an accepted answer

    core.write_outputs(tmp_path, metrics, samples, {}, OmegaConf.create({}))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert (written["accuracy"], written["exact_match"]) == (0.5, 0.25)
    assert "not an exact match" in (tmp_path / "samples.html").read_text()
