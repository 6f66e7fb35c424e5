"""Reward functions with TRL's signature: `(completions, **kwargs) -> list[float]`.

Dataset columns (e.g. `solution`) arrive as keyword arguments, one value per completion,
already aligned by TRL with the generations. Completions are plain strings or, for
conversational prompts, `[{"role": "assistant", "content": "..."}]`; both are accepted.

Add your own reward as a plain function in any importable module and point a YAML file at
it (`_target_: my_module.my_reward`, `_partial_: true`); see the README.
"""

from __future__ import annotations

import re
import threading
from typing import Any

_FORMAT = re.compile(
    r"^\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.S
)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_TAG = re.compile(r"</?(think|answer)>")


def completion_text(completion: Any) -> str:
    """The text of a completion, whether a string or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        content = message.get("content", "")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "".join(parts)


def extract_answer(text: str) -> str:
    """The text inside the last `<answer>…</answer>`, or the whole text when there is none.

    >>> extract_answer("<think>two red</think><answer> 2 </answer>")
    '2'
    >>> extract_answer("2")
    '2'
    """
    found = _ANSWER.findall(text)
    return (found[-1] if found else text).strip()


def think_format(completions: list, **kwargs: Any) -> list[float]:
    """1.0 when a completion is exactly `<think>…</think><answer>…</answer>`, else 0.0.

    Whitespace around and between the blocks is tolerated; each tag must occur exactly once,
    in that order, with nothing outside the two blocks.

    >>> think_format(["<think>count</think> <answer>2</answer>", "<answer>2</answer>"])
    [1.0, 0.0]
    """
    scores = []
    for completion in completions:
        text = completion_text(completion)
        match = _FORMAT.match(text)
        ok = bool(match) and len(_TAG.findall(text)) == 4
        scores.append(1.0 if ok else 0.0)
    return scores


def _normalise(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".").split())


def _math_equal(gold: str, answer: str) -> bool | None:
    """math-verify's verdict, or None when it cannot parse one side.

    math-verify's default timeout uses `signal.alarm`, which only works in the main thread;
    off the main thread (e.g. async reward workers) it would fail and every score would
    silently become 0, so the timeout is switched off there.
    """
    from math_verify import parse, verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(gold, parsing_timeout=timeout)
    answer_parsed = parse(answer, parsing_timeout=timeout)
    if not gold_parsed or not answer_parsed:
        return None
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=timeout))


def _looks_mathematical(text: str) -> bool:
    return bool(re.search(r"\d|\\frac|\\sqrt|\\boxed|\^", text))


def accuracy(completions: list, solution: list[str], **kwargs: Any) -> list[float]:
    """1.0 when the answer equals the record's `solution`, else 0.0.

    Numbers and LaTeX are compared with math-verify (`0.5` equals `\\frac{1}{2}`); other
    answers by normalised exact match (case, surrounding space and a final full stop ignored).

    >>> accuracy(["<think>..</think><answer>2</answer>", "<answer>Red</answer>"], solution=["2", "red"])
    [1.0, 1.0]
    >>> accuracy(["<answer>0.5</answer>"], solution=["\\\\frac{1}{2}"])
    [1.0]
    """
    scores = []
    for completion, gold in zip(completions, solution, strict=True):
        answer = extract_answer(completion_text(completion))
        gold = str(gold)
        if _normalise(answer) == _normalise(gold):
            scores.append(1.0)
            continue
        verdict = None
        if answer and _looks_mathematical(gold) and _looks_mathematical(answer):
            verdict = _math_equal(gold, answer)
        scores.append(1.0 if verdict else 0.0)
    return scores
