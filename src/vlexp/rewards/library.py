"""Reward functions with TRL's signature: `(completions, **kwargs) -> list[float]`.

Dataset columns (e.g. `solution`, `choices`, `box`) arrive as keyword arguments, one value per
completion, already aligned by TRL with the generations; list-valued columns arrive as JSON
strings (vlexp's data loader encodes them) or as lists. Completions are plain strings or, for
conversational prompts, `[{"role": "assistant", "content": "..."}]`; both are accepted.

Add your own reward as a plain function in any importable module and point a YAML file at
it (`_target_: my_module.my_reward`, `_partial_: true`); see docs/rewards.md.
"""

from __future__ import annotations

import json
import re
from typing import Any

from vlexp.data.boxes import BoxFrame  # re-exported: the frame box rewards take
from vlexp.rewards.answers import (
    TAG,
    Answer,
    answer_forms,
    answers_equal,
    completion_text,
    extract_answer,
    latex_spacing,
    normalise,
    read_answer,
)

_FORMAT = re.compile(
    r"^\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.S
)
_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")


def think_format(completions: list, **kwargs: Any) -> list[float]:
    """1.0 when a completion is exactly `<think>…</think><answer>…</answer>`, else 0.0.

    Whitespace around and between the blocks is tolerated; each tag must occur exactly once,
    in that order, with nothing outside the two blocks, and the answer must not be blank
    (the thinking may be: an empty `<think></think>` is a legitimate "no need to think").

    >>> think_format(["<think>count</think> <answer>2</answer>", "<answer>2</answer>"])
    [1.0, 0.0]
    """
    scores = []
    for completion in completions:
        text = completion_text(completion)
        match = _FORMAT.match(text)
        ok = bool(match) and len(TAG.findall(text)) == 4 and bool(match["answer"].strip())
        scores.append(1.0 if ok else 0.0)
    return scores


def _gold(value: Any, column: str) -> Answer:
    """A record's reference answer; R1-V style `<answer>3</answer>` solutions are unwrapped."""
    gold = read_answer(str(value)) if value is not None else Answer("")
    if not gold.text:
        raise ValueError(f"the record's '{column}' is empty ({value!r}): fix the data")
    return gold


def accuracy(completions: list, solution: list[str], **kwargs: Any) -> list[float]:
    """1.0 when the answer equals the record's `solution`, else 0.0.

    Numbers and LaTeX are compared with math-verify (`0.5` equals `\\frac{1}{2}`, `3 apples`
    equals `3`; with several numbers in prose the last one is the answer; a box holds LaTeX,
    so `\\boxed{1,2}` is a list and `\\boxed{(6,31,-1)}` a tuple; several boxes together are a
    list too, and the last box alone is the answer as well); option letters by letter
    (`(B)` equals `B`); lists and dicts whole; other answers by normalised exact match (case,
    inner/outer whitespace, a final full stop and `\\text{}` ignored). An empty or missing
    answer scores 0. A `solution` list (`["1", "one"]`, or its JSON text) accepts any of its
    answers.

    >>> accuracy(["<think>..</think><answer>2</answer>", "<answer>Red</answer>"], solution=["2", "red"])
    [1.0, 1.0]
    >>> accuracy(["<answer>0.5</answer>", "(B)"], solution=["\\\\frac{1}{2}", "B"])
    [1.0, 1.0]
    """
    scores = []
    for completion, value in zip(completions, solution, strict=True):
        answers = [form for form in answer_forms(completion_text(completion)) if form.text]
        golds = [form for item in _gold_items(value, "solution") for form in _gold_forms(item)]
        equal = any(answers_equal(answer, gold) for answer in answers for gold in golds)
        scores.append(1.0 if equal else 0.0)
    return scores


def _gold_forms(value: Any) -> list[Answer]:
    return [form for form in answer_forms(str(value)) if form.text]


def _golds(value: Any, column: str) -> list[Answer]:
    return [_gold(item, column) for item in _gold_items(value, column)]


def _gold_items(value: Any, column: str) -> list[Any]:
    """The accepted answers: a list `["1", "one"]` (or its JSON text, as vlexp's loader
    stores list columns) means any of these; anything else is one answer.

    A JSON list of numbers (`[0, 0, 10, 10]`, a box) stays one answer: only lists of strings
    are read as alternatives."""
    items = value
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError:
            items = value
        if isinstance(items, list) and not all(isinstance(item, str) for item in items):
            items = value
    if isinstance(items, list | tuple):
        if not items:
            raise ValueError(f"the record's '{column}' is an empty list: fix the data")
        [_gold(item, column) for item in items]  # each one must hold an answer
        return list(items)
    _gold(value, column)
    return [value]


def _as_list(value: Any, column: str) -> list:
    """A list column, given as a list or as the JSON string vlexp's loader stores."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"the record's '{column}' is not a JSON list: {value!r:.80}") from None
    if not isinstance(value, list | tuple):
        raise ValueError(f"the record's '{column}' must be a list, got {value!r:.80}")
    return list(value)


def _label_pattern(label: str) -> re.Pattern:
    words = normalise(label).split()
    # Whole words only: `cat` must not match inside `wildcat`.
    return re.compile(r"(?<![\w])" + r"\s+".join(map(re.escape, words)) + r"(?![\w])")


def _letter_pattern(letter: str) -> re.Pattern:
    """Where a one-letter label (an option letter) is named: upper case as a word, `(a)`, or
    lower case before `.`, `)`, `:` or the end. Never the article ("a cat", "A cat")."""
    up, low = letter.upper(), letter.lower()
    # "A cat ...", "I think ...": a lower-case word after it, unless one that joins options.
    article = r"(?!\s+(?!(?:and|or|is|because)\b)[a-z])" if up in "AI" else ""
    return re.compile(rf"(?<![\w'])(?:\([{up}{low}]\)|{up}(?![\w']){article}|{low}(?=[.):]|$))")


def _label_spans(label: str, text: str, cased: str) -> list[tuple[int, int]]:
    words = normalise(label).split()
    if len(words) == 1 and len(words[0]) == 1 and words[0].isalpha():
        return [m.span() for m in _letter_pattern(words[0]).finditer(cased)]
    return [m.span() for m in _label_pattern(label).finditer(text)]


def named_labels(answer: str, labels: list[str]) -> set[str]:
    """The labels an answer names (case and whitespace insensitive, whole words).

    An occurrence that lies inside an occurrence of a longer label does not count: in
    "wild cat", the label `cat` is not named when `wild cat` is a label too. One-letter
    labels (options `A`..`D`) are letters, not words: the article in "a cat" names no `A`.

    >>> sorted(named_labels("It is a Wild  Cat.", ["cat", "wild cat", "dog"]))
    ['wild cat']
    >>> sorted(named_labels("It is a cat, so (b)", ["A", "B", "C"]))
    ['B']
    """
    text = normalise(answer)
    cased = " ".join(latex_spacing(answer).strip().rstrip(".").split())  # `text`, case kept
    spans = {label: _label_spans(label, text, cased) for label in labels}
    named = set()
    for label, own in spans.items():
        for start, end in own:
            covered = any(
                s <= start and end <= e and (e - s) > (end - start)
                for other, theirs in spans.items()
                if other != label
                for s, e in theirs
            )
            if not covered:
                named.add(label)
                break
    return named


def choice(completions: list, solution: list[str], choices: list, **kwargs: Any) -> list[float]:
    """1.0 when the answer names exactly one of the record's `choices`, and it is `solution`.

    CLS-RL's classification reward. Matching ignores case and whitespace and is by whole
    words; labels that are substrings of other labels (`cat` / `wild cat`) are told apart.
    Naming two labels ("cat or dog") scores 0, as does naming none.

    >>> choice(["<answer>Banded</answer>", "banded or striped", "stripe"],
    ...        solution=["banded"] * 3, choices=[["banded", "striped", "stripe"]] * 3)
    [1.0, 0.0, 0.0]
    """
    scores = []
    for completion, value, options in zip(completions, solution, choices, strict=True):
        labels = [str(label) for label in _as_list(options, "choices")]
        golds = {normalise(gold.text) for gold in _golds(value, "solution")}
        unknown = golds - {normalise(label) for label in labels}
        if unknown:
            raise ValueError(
                f"the record's solution {sorted(unknown)[0]!r} is not one of its choices {labels}"
            )
        answer = extract_answer(completion_text(completion))
        named = {normalise(label) for label in named_labels(answer, labels)}
        scores.append(1.0 if len(named) == 1 and named <= golds else 0.0)
    return scores


def parse_box(text: str) -> list[float] | None:
    """The first `[x1, y1, x2, y2]` in `text` as floats, or None when there is none.

    >>> parse_box('{"bbox_2d": [10, 20, 50.5, 60]}')
    [10.0, 20.0, 50.5, 60.0]
    """
    match = _BOX.search(text)
    return [float(v) for v in match.groups()] if match else None


def box_iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two `[x1, y1, x2, y2]` boxes (0 when the union is empty).

    >>> box_iou([0, 0, 10, 10], [5, 0, 15, 10])
    0.3333333333333333
    """
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def iou(
    completions: list,
    box: list | None = None,
    solution: list | None = None,
    box_frame: BoxFrame | None = None,
    **kwargs: Any,
):
    """IoU of the first `[x1, y1, x2, y2]` in the answer with the record's `box` (or `solution`).

    0.0 when no box can be parsed, or when the answer's corners are out of order (x2 < x1 or
    y2 < y1): the format is part of the task.

    The frame it scores in is the model family's (`vlexp.families`, `box_frame`): absolute
    pixels of the image as the processor resized it (Qwen2.5-VL), 0..1000 of the image
    (Qwen2-VL, Qwen3-VL, Qwen3.5), the image's own pixels (Gemma 3). vlexp's data loader puts the
    gold box, given in the original image's pixels, in that frame (`data.boxes.gold=true`,
    the default), and answer and gold are compared as they are. With gold boxes still in the
    original pixels (`data.boxes.gold=false`), vlexp binds `box_frame` from `model`, and the
    answer is mapped from the family's frame onto the original pixels with the record's
    image size (the `images` column: the image as decoded, EXIF orientation applied; for a
    resized copy from `data.image_cache`, its source's size) before the comparison; without a frame (`box_frame` unset: the gold is already in the model's
    frame) both are compared as written. A model whose family cannot be told gets no frame
    by a guess: vlexp stops before scoring (`vlexp.rewards.guard`). Either way a perfect
    answer in the model's convention scores 1.0 (up to the rounding of boxes to whole pixels).

    >>> iou(["<answer>[0, 0, 10, 10]</answer>", "[10, 10, 0, 0]", "none"], box=["[0, 0, 10, 10]"] * 3)
    [1.0, 0.0, 0.0]
    """
    column, golds = ("box", box) if box is not None else ("solution", solution)
    if golds is None:
        raise ValueError("iou needs a 'box' (or 'solution') column holding [x1, y1, x2, y2]")
    # No frame: the gold is already in the model's frame (data.boxes.gold), compare as written.
    mapped = box_frame is not None and box_frame.kind != "original"
    sizes = _image_sizes(kwargs, len(completions)) if mapped else None
    scores = []
    for index, (completion, value) in enumerate(zip(completions, golds, strict=True)):
        gold = parse_box(str(value))  # a list, its JSON text, or `<answer>[...]</answer>`
        if gold is None or gold[2] < gold[0] or gold[3] < gold[1]:
            raise ValueError(
                f"the record's '{column}' is not a box [x1, y1, x2, y2]: {value!r:.80}"
            )
        predicted = parse_box(extract_answer(completion_text(completion)))
        ordered = (
            predicted is not None and predicted[0] <= predicted[2] and predicted[1] <= predicted[3]
        )
        if ordered and sizes is not None:
            predicted = box_frame.to_record(predicted, sizes[index])
        scores.append(box_iou(predicted, gold) if ordered else 0.0)
    return scores


def _image_sizes(kwargs: dict[str, Any], count: int) -> list[tuple[int, int]]:
    """(width, height) of each completion's record image: TRL passes the `images` (or
    `image`) column along with the other columns. Boxes need exactly one image per record."""
    column = kwargs.get("images", kwargs.get("image"))
    if column is None or len(column) != count:
        raise ValueError(
            "iou with the model's box frame needs the record's image (an 'images' column) "
            "to map the answer's box onto the record's pixels"
        )
    sizes = []
    for entry in column:
        entries = entry if isinstance(entry, list) else [entry]
        if len(entries) != 1:
            raise ValueError(
                f"iou needs exactly one image per record to read its box (got {len(entries)})"
            )
        sizes.append(_size(entries[0]))
    return sizes


def _size(image: Any) -> tuple[int, int]:
    from vlexp.data.image_size import record_size

    # The image the gold box is written on: a cached copy's source, EXIF orientation applied.
    return record_size(image)


def length(
    completions: list,
    completion_ids: list[list[int]] | None = None,
    *,
    max_length: int,
    window: int,
    **kwargs: Any,
) -> list[float]:
    """A soft penalty for overlong completions (DAPO's overlong reward shaping, eq. 13).

    0.0 up to `max_length - window` tokens, then linearly down to -1.0 at `max_length`, -1.0
    beyond. The settings come from the YAML file (`reward.funcs.length.window=...`), which
    builds a `functools.partial`; TRL still logs it as `length`.

    >>> length(["a", "b", "c"], completion_ids=[[0] * 10, [0] * 15, [0] * 30], max_length=20, window=10)
    [0.0, -0.5, -1.0]
    """
    if completion_ids is None:
        raise ValueError("length counts tokens: it needs TRL's `completion_ids` argument")
    if not 0 < window <= max_length:
        raise ValueError(f"length needs 0 < window <= max_length, got {window} and {max_length}")
    target = max_length - window
    return [max(-1.0, min(0.0, (target - len(ids)) / window)) for ids in completion_ids]
