"""How an answer is read from a completion and compared with a record's solution: the answer
conventions of the data sets (`<answer>` tags, the text after `</think>`, `\\boxed{}`) and the
equalities `accuracy` accepts (docs/rewards.md). The cases other projects' reward tests
assert are kept in `tests/reward_corpus.py`; `tests/unit/test_reward_corpus.py` runs them."""

from __future__ import annotations

import json
import re
import threading
from typing import Any, NamedTuple

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
TAG = re.compile(r"</?(think|answer)>", re.I)


class Answer(NamedTuple):
    """An answer's text, and whether it is LaTeX by position (it came out of a `\\boxed{}`)."""

    text: str
    boxed: bool = False


def completion_text(completion: Any) -> str:
    """The text of a completion, whether a string or a list of chat messages.

    TRL parses a turn with the tokenizer's response template (`parse_response`: with `env=`
    tools, and wherever the tokenizer has one), which moves `<think>…</think>` out of the text
    into `reasoning_content`: it is put back where the model wrote it, before the content.

    >>> completion_text([{"role": "assistant", "reasoning_content": "2 red",
    ...                   "content": "<answer>2</answer>"}])
    '<think>2 red</think><answer>2</answer>'
    """
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        if message.get("reasoning_content") is not None:
            parts.append(f"<think>{message['reasoning_content']}</think>")
        content = message.get("content") or ""
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
    return read_answer(text).text


def read_answer(text: str) -> Answer:
    r"""`extract_answer`, saying whether the answer came out of a `\boxed{}`: a box holds
    LaTeX, so `\boxed{1,2}` is the list 1, 2 (Math-Verify), never the decimal 1.2.

    >>> read_answer("<answer>\\boxed{1,2}</answer>"), read_answer("<answer>1,2</answer>")
    (Answer(text='1,2', boxed=True), Answer(text='1,2', boxed=False))
    """
    region = answer_region(text)
    boxed = last_boxed(region)
    return Answer(boxed.strip(), True) if boxed is not None else Answer(region.strip())


def answer_forms(text: str) -> list[Answer]:
    r"""The readings `accuracy` accepts: `read_answer`'s (the last box), and where the answer
    holds several boxes, all of them as one list (Math-Verify reads `\boxed{-2} and
    \boxed{1}` as the set -2, 1, so it equals the solution `1,-2`; a single-valued solution
    never equals a list of two, so the last box still decides there).

    >>> answer_forms("so \\boxed{-2} and \\boxed{1}.")
    [Answer(text='1', boxed=True), Answer(text='-2, 1', boxed=True)]
    """
    forms = [read_answer(text)]
    boxes = all_boxed(answer_region(text))
    if 1 < len(boxes) <= _MAX_BOXES:
        forms.append(Answer(", ".join(box.strip() for box in boxes), True))
    return forms


_MAX_BOXES = 16  # a longer run of boxes is a table, not an answer


def answer_region(text: str) -> str:
    """The part of a completion that holds its answer (see `extract_answer`); "" for none."""
    found = ANSWER.findall(text)
    if found:
        answer = found[-1]
    elif "</think>" in text:
        answer = text.rsplit("</think>", 1)[1]
    else:
        answer = text
    return "" if TAG.search(answer) else answer


def all_boxed(text: str) -> list[str]:
    r"""The contents of every closed `\boxed{…}`, in order.

    >>> all_boxed("\\boxed{1} and \\boxed{\\frac{1}{2}}")
    ['1', '\\frac{1}{2}']
    """
    boxes, start = [], text.find("\\boxed{")
    while start >= 0:
        content = last_boxed(text[: _box_end(text, start)])
        if content is not None:
            boxes.append(content)
        start = text.find("\\boxed{", start + 1)
    return boxes


def _box_end(text: str, start: int) -> int:
    """The index just past the `}` closing the box that opens at `start` (or the end)."""
    depth = 0
    for index in range(start + len("\\boxed{"), len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth < 0:
            return index + 1
    return len(text)


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


_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_MATH_DELIMITER = re.compile(r"\$|\\[()\[\]]")


def plain_text(text: str) -> str:
    r"""A text answer without its LaTeX dress: `\text{…}` (and `\textbf`, `\mathrm`, `\mbox`)
    unwrapped, `$` and `\(`/`\[` delimiters dropped, then `normalise`d. Math-Verify scores
    `\boxed{\text{Evelyn}}` equal to `Evelyn`.

    >>> plain_text("$\\text{Dark  Red}$.")
    'dark red'
    """
    previous = None
    while previous != text:
        previous, text = text, _TEXT_COMMAND.sub(r"\1", text)
    return normalise(_MATH_DELIMITER.sub(" ", text))


_LONE_LETTER = re.compile(r"^[(\[]?([A-Za-z])[)\]]?[.:]?$")
_LETTER_THEN_TEXT = re.compile(r"^(?:\(([A-Z])\)|([A-Z])[.:)])\s+\S")


def option_letter(text: str) -> str | None:
    r"""The multiple-choice letter an answer gives, upper case, or None.

    The whole answer is one letter, bare or dressed (`B`, `(b)`, `B.`, `\text{(C)}`,
    `**B**`), or it starts with an upper-case letter marked as an option and then the
    option's text (`(B) 12 cm`, `B. 12 cm`, `B: cat`). Never a letter inside a sentence: the
    article in "a cat" is no option A.

    >>> [option_letter(t) for t in ["(B)", "\\boxed{\\text{(C)}}", "B. 12 cm", "a cat", "4"]]
    ['B', 'C', 'B', None, None]
    """
    text = last_boxed(text) or text
    previous = None
    while previous != text:
        previous, text = text, _TEXT_COMMAND.sub(r"\1", text)
    text = _MATH_DELIMITER.sub(" ", text).replace("*", "").strip()
    lone = _LONE_LETTER.match(text)
    if lone:
        return lone[1].upper()
    dressed = _LETTER_THEN_TEXT.match(text)
    return (dressed[1] or dressed[2]) if dressed else None


def looks_mathematical(text: str) -> bool:
    return bool(re.search(r"\d|\\frac|\\sqrt|\\boxed|\\infty|\\pi|\^", text))


def answers_equal(answer: Answer, gold: Answer) -> bool:
    """Whether a completion's answer equals one accepted answer of the record (the table in
    docs/rewards.md): the same text, the same option letter, the same list or dict, or
    the same mathematical value (math-verify)."""
    if normalise(answer.text) == normalise(gold.text):
        return True
    if plain_text(answer.text) == plain_text(gold.text):
        return True
    letters = option_letter(gold.text), option_letter(answer.text)
    if letters[0] and letters[1]:
        return letters[0] == letters[1]
    structured = _compare_structured(answer.text, gold.text)
    if structured is not None:
        return structured
    if looks_mathematical(gold.text) and looks_mathematical(answer.text):
        return bool(math_equal(gold, answer))
    return False


STRUCTURED = (list, tuple, dict, set)
_LITERAL_LIMIT = 10_000  # characters: longer answers are not parsed (nesting costs the stack)


def _compare_structured(answer: str, gold: str) -> bool | None:
    """Lists and dicts compared whole, as JSON or Python literals (numbers by value): a box
    `[0, 0, 10, 10]`, Visual-RFT's detections `[{'Position': [...], 'Confidence': 1}]`;
    math-verify would reduce both sides to their last number, so any two detection lists
    ending in `'Confidence': 1` would count as equal. None when this rule does not decide:
    neither side is such a literal, or one side is a tuple or pair of numbers (a point or an
    interval, which math-verify compares: `(0.5, 1)` equals `(\\frac{1}{2}, 1)`)."""
    gold_value, answer_value = _literal(gold), _literal(answer)
    if gold_value is not None and answer_value is not None:
        return gold_value == answer_value
    one = gold_value if gold_value is not None else answer_value
    if not isinstance(one, STRUCTURED) or _numeric_point(one):
        return None
    return False


def _numeric_point(value: Any) -> bool:
    """A tuple of numbers `(6, 31, -1)` or of such tuples (`(1, 2), (2, 1)`: a list of
    solutions), or a pair of numbers `[-4, 0]` (an interval): mathematics, not data."""
    if isinstance(value, tuple | set):
        return all(_number(v) or (isinstance(v, tuple) and _numeric_point(v)) for v in value)
    return isinstance(value, list) and len(value) == 2 and all(map(_number, value))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _literal(text: str) -> Any:
    """`text` as a JSON or Python literal (numbers compare by value: 1 == 1.0), or None."""
    import ast

    text = text.strip()
    if not text or text[0] not in "[({" or len(text) > _LITERAL_LIMIT:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return None


_LATEX_MARK = re.compile(r"[\\^_{}]")
_COMMA_SPACE_LIST = re.compile(r"\d\s*,\s+[-+]?[\d.]|\d\s+,")  # `1, 2`: thousands have no space
_BRACKETED_LIST = re.compile(r"^\s*[(\[].*,.*[)\]]\s*$", re.S)  # `(6,31,-1)`, `[-4,0)`
_THOUSANDS = re.compile(r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d+)?\s*$")
_DIGIT_COMMA = re.compile(r"\d,\d")


def math_readings(answer: Answer) -> list[str]:
    r"""The ways math-verify should read an answer, as strings to hand to its `parse`.

    LaTeX (`$…$`) for the content of a box and for anything written in LaTeX, as a formula
    (`3x`, `2 and 3`) or as a list, tuple or interval; as it is (math-verify's plain-number
    reading: `3 apples`, `1 000`, `$1,000.99`) for plain prose; both for `1,2`, which is the
    list 1, 2 in LaTeX and the decimal 1.2 in Math-Verify's number tests (a solution written
    so accepts either).

    >>> math_readings(Answer("1,2", boxed=True)), math_readings(Answer("1, 2"))
    (['$1,2$'], ['$1, 2$'])
    >>> [math_readings(Answer(text)) for text in ("1,2", "7,425,000", "3 apples")]
    [['$1,2$', '1,2'], ['7,425,000'], ['3 apples']]
    """
    text = latex_spacing(answer.text)
    if answer.boxed:
        return [f"${text}$"]
    if _MATH_DELIMITER.search(text):
        return [text]
    if _LATEX_MARK.search(text) or _COMMA_SPACE_LIST.search(text) or _BRACKETED_LIST.match(text):
        return [f"${text}$"]
    if _formula(text):
        return [f"${text}$"]
    if _DIGIT_COMMA.search(text) and not _THOUSANDS.match(text):
        return [f"${text}$", text]
    return [text]


def _formula(text: str) -> bool:
    """A formula written without LaTeX (`3x`, `2x+1`, `x=3`, `2 and 3`): letters that stand
    alone, joined by "and"/"or" at most. Read as it is, math-verify would keep its last number
    (`3x` would be 3, `2 and 3` would be 3); words (`3 apples`, `2 cm`) make it prose."""
    words = re.findall(r"[A-Za-z]+", text)
    return bool(words) and all(len(w) == 1 or w.lower() in ("and", "or") for w in words)


def math_equal(gold: Answer, answer: Answer) -> bool | None:
    """math-verify's verdict on any reading of each side (`math_readings`), or None when it
    cannot parse one side.

    math-verify's default timeout uses `signal.alarm`, which only works in the main thread;
    off the main thread (e.g. async reward workers) it would fail and every score would
    silently become 0, so the timeout is switched off there.
    """
    from math_verify import verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    golds, answers = _parsed(gold, timeout), _parsed(answer, timeout)
    if not golds or not answers:
        return None
    return any(verify(g, a, timeout_seconds=timeout) for g in golds for a in answers)


def _parsed(answer: Answer, timeout: int | None) -> list[list]:
    from math_verify import parse

    readings = [parse(text, parsing_timeout=timeout) for text in math_readings(answer)]
    readings = [reading for reading in readings if reading]
    if not readings and not answer.boxed:  # LaTeX that does not parse: its plain numbers
        readings = [reading for reading in [parse(answer.text, parsing_timeout=timeout)] if reading]
    return readings
