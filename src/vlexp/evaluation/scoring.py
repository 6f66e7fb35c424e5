"""Score generated completions: reward functions, accuracy, exact match, pass@k, summary.

`accuracy` is the `accuracy` reward's verdict (vlexp.rewards.accuracy: math-verify for numbers
and LaTeX, so `0.5` is right for the solution `1/2`), the same judge training is rewarded by;
`exact_match` is the strict string comparison after `normalise_answer`. pass@k follows
`accuracy`.

Pure Python (no torch), so the numbers can be checked by hand in unit tests. The reward
functions are called exactly as TRL's GRPOTrainer calls them (`prompts=`, `completions=`,
`completion_ids=`, the record's columns as keyword lists), so a reward that works in
training scores the same way here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from math import comb
from typing import Any

from vlexp.rewards import accuracy, completion_text, extract_answer, think_format

# Columns that are inputs to generation, not per-record facts a reward could need.
_NOT_REWARD_KWARGS = ("prompt", "completion", "completion_ids")


def normalise_answer(text: str) -> str:
    """Case, surrounding space, inner runs of space and a final full stop do not matter.

    >>> normalise_answer("  Red. ")
    'red'
    """
    return " ".join(str(text).lower().strip().rstrip(".").split())


def exact_match(completion: Any, solution: Any) -> bool:
    """True when the completion's answer equals the solution after `normalise_answer`.

    The answer is the text of the last `<answer>…</answer>`, or the whole completion when it
    has none (so a bare "2" counts). No math-verify here: this is the strict metric
    (`exact_match`); `is_correct`, the `accuracy` reward's verdict, is the lenient one.

    >>> exact_match("<think>..</think><answer> Red </answer>", "red")
    True
    >>> exact_match("<answer>2.0</answer>", "2")
    False
    """
    answer = extract_answer(completion_text(completion))
    return normalise_answer(answer) == normalise_answer(solution)


def is_correct(completion: Any, solution: Any) -> bool:
    """The `accuracy` reward's verdict on one completion: what evaluation calls `accuracy`.

    >>> is_correct("<answer>0.5</answer>", "1/2"), exact_match("<answer>0.5</answer>", "1/2")
    (True, False)
    """
    return accuracy([completion], solution=[solution])[0] == 1.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al., 2021, eq. 1).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2)
    (0.25, 1.0, 0.0)
    """
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_ks(n: int) -> list[int]:
    """The k reported for n samples per prompt: powers of two below n, then n (k=1 is accuracy).

    >>> pass_ks(1), pass_ks(8), pass_ks(6)
    ([], [2, 4, 8], [2, 4, 6])
    """
    return [k for k in range(2, n) if k & (k - 1) == 0] + ([n] if n > 1 else [])


def reward_kwargs(examples: Sequence[dict]) -> dict[str, list]:
    """The record columns a reward receives, one value per completion (TRL's alignment)."""
    keys = [k for k in examples[0] if k not in _NOT_REWARD_KWARGS]
    return {k: [ex.get(k) for ex in examples] for k in keys}


def score(
    prompts: list,
    completions: list,
    completion_ids: list[list[int]],
    examples: Sequence[dict],
    reward_funcs: dict[str, Callable],
) -> list[dict[str, float]]:
    """Per completion: every reward function's value (None -> NaN, as TRL does).

    `examples[i]` is the record `completions[i]` answers (already repeated for n samples).
    A reward that raises is not turned into a silent 0: the error names the function.
    """
    kwargs = reward_kwargs(examples)
    columns: dict[str, list[float]] = {}
    for name, func in reward_funcs.items():
        try:
            values = func(
                prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs
            )
        except Exception as err:
            raise RuntimeError(f"reward '{name}' failed during evaluation: {err!r}") from err
        if len(values) != len(completions):
            raise RuntimeError(
                f"reward '{name}' returned {len(values)} values for {len(completions)} completions"
            )
        columns[name] = [math.nan if v is None else float(v) for v in values]
    return [{name: columns[name][i] for name in columns} for i in range(len(completions))]


def weighted_reward(rewards: dict[str, float], weights: dict[str, float]) -> float:
    """TRL's `reward`: the weighted sum over functions, NaN (not applicable) skipped."""
    values = [weights.get(name, 1.0) * v for name, v in rewards.items() if not math.isnan(v)]
    return sum(values) if values else math.nan


def annotate(sample: dict, weights: dict[str, float]) -> dict:
    """Add `reward`, `correct` (the accuracy reward's verdict), `exact_match` (strict; both
    None without a solution) and `format` to a sample."""
    sample["reward"] = weighted_reward(sample["rewards"], weights)
    solution, completion = sample.get("solution"), sample["completion"]
    sample["correct"] = None if solution is None else is_correct(completion, solution)
    sample["exact_match"] = None if solution is None else exact_match(completion, solution)
    sample["format"] = think_format([sample["completion"]])[0] == 1.0
    return sample


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def summarise(samples: list[dict], num_samples: int) -> dict[str, float | int | None]:
    """The evaluation metrics of annotated samples (`num_samples` completions per prompt).

    accuracy (the accuracy reward's verdict, mean over all completions = pass@1), exact_match
    (strict string match, same mean), pass@k for k = 2, 4, ... n (by the accuracy verdict),
    reward (weighted, TRL's name), reward_std, rewards/<name>/mean, format_rate,
    completions/mean_length and completions/clipped_ratio (tokens, TRL's names).
    """
    metrics: dict[str, float | int | None] = {
        "num_prompts": len({s["index"] for s in samples}),
        "num_completions": len(samples),
    }
    graded = [s for s in samples if s["correct"] is not None]
    if graded:
        metrics["accuracy"] = _mean([float(s["correct"]) for s in graded])
        metrics["exact_match"] = _mean([float(s["exact_match"]) for s in graded])
        by_prompt: dict[int, list[bool]] = {}
        for s in graded:
            by_prompt.setdefault(s["index"], []).append(s["correct"])
        for k in pass_ks(num_samples):
            scores = [pass_at_k(len(v), sum(v), k) for v in by_prompt.values()]
            metrics[f"pass@{k}"] = _mean(scores)
    rewards = [s["reward"] for s in samples]
    metrics["reward"] = _mean(rewards)
    finite = [r for r in rewards if not math.isnan(r)]
    if len(finite) > 1:
        mean = sum(finite) / len(finite)
        metrics["reward_std"] = math.sqrt(sum((r - mean) ** 2 for r in finite) / (len(finite) - 1))
    for name in samples[0]["rewards"] if samples else ():
        metrics[f"rewards/{name}/mean"] = _mean([s["rewards"][name] for s in samples])
    metrics["format_rate"] = _mean([float(s["format"]) for s in samples])
    metrics["completions/mean_length"] = _mean([float(s["length"]) for s in samples])
    metrics["completions/clipped_ratio"] = _mean([float(s["clipped"]) for s in samples])
    return metrics
