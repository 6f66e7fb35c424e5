"""How an answer is read from a completion and compared with a record's solution: the answer
conventions of the data sets (`<answer>` tags, the text after `</think>`, `\\boxed{}`) and the
equalities `accuracy` accepts (README, Rewards)."""

from __future__ import annotations

import re
import threading
from typing import Any

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
TAG = re.compile(r"</?(think|answer)>", re.I)


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
    r"""The answer in a completion, in the conventions the data sets use.

    The text inside the last `<answer>…</answer>`; without answer tags, the text after the
    last `</think>` (TRL's `<think>…</think>` then the answer), else the whole text. Inside
    that, the last `\boxed{…}` is the answer when there is one (EasyR1, math data). A
    completion that uses the tags but has no closed `<answer>` block (truncated, or a lone
    `<think>`), or whose answer itself holds a tag (nested tags), has no answer: "".

    >>> extract_answer("<think>two red</think><answer> 2 </answer>")
    '2'
    >>> extract_answer("<think>two red</think> 2")
    '2'
    >>> extract_answer("so x is \\boxed{\\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> extract_answer("<think>two red</think><answer>2")
    ''
    """
    found = ANSWER.findall(text)
    if found:
        answer = found[-1]
    elif "</think>" in text:
        answer = text.rsplit("</think>", 1)[1]
    else:
        answer = text
    if TAG.search(answer):
        return ""
    return (last_boxed(answer) or answer).strip()


def last_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{…}` (braces balanced), or None.

    >>> last_boxed("a \\boxed{1} then \\boxed{\\sqrt{2}}")
    '\\sqrt{2}'
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth < 0:
            return text[begin:index]
    return None  # unclosed: no answer in the box


def normalise(text: str) -> str:
    return " ".join(latex_spacing(text).lower().strip().rstrip(".").split())


def latex_spacing(text: str) -> str:
    r"""LaTeX without the spaces that do not change it (geometry3k writes `2 \sqrt { 221 }`):
    around braces, `^` and `_`, and between a number and a command.

    >>> latex_spacing("2 \\sqrt { 221 }"), latex_spacing("\\frac { 5 } { 2 }")
    ('2\\sqrt{221}', '\\frac{5}{2}')
    """
    if "\\" not in text and "{" not in text:
        return text
    text = re.sub(r"\s*([{}^_])\s*", r"\1", text)
    return re.sub(r"(\d)\s+(\\[a-zA-Z])", r"\1\2", text)


def _parse_math(text: str, timeout: int | None) -> list:
    from math_verify import parse

    if "\\" in text and "$" not in text:
        # Bare LaTeX (`\\frac12`, `2\\sqrt{221}`) parses whole only inside math delimiters:
        # outside them math-verify takes the first number alone (`2`).
        parsed = parse(f"${text}$", parsing_timeout=timeout)
        if parsed:
            return parsed
    return parse(text, parsing_timeout=timeout)


def math_equal(gold: str, answer: str) -> bool | None:
    """math-verify's verdict, or None when it cannot parse one side.

    math-verify's default timeout uses `signal.alarm`, which only works in the main thread;
    off the main thread (e.g. async reward workers) it would fail and every score would
    silently become 0, so the timeout is switched off there.
    """
    from math_verify import verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = _parse_math(gold, timeout)
    answer_parsed = _parse_math(answer, timeout)
    if not gold_parsed or not answer_parsed:
        return None
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=timeout))


def looks_mathematical(text: str) -> bool:
    return bool(re.search(r"\d|\\frac|\\sqrt|\\boxed|\^", text))
