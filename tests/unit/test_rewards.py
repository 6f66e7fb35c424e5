"""Every reward in vlexp.rewards on hand-written cases, adversarial ones included."""

from __future__ import annotations

import doctest
import json
import threading

import pytest

from vlexp.rewards import accuracy, answers, choice, iou, length, library, think_format


def test_docstring_examples_run():
    result = doctest.testmod(library, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 9 and result.failed == 0
    result = doctest.testmod(answers, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 6 and result.failed == 0


@pytest.mark.parametrize(
    ("completion", "score"),
    [
        ("<think>two red</think><answer>2</answer>", 1.0),
        ("  <think>\ntwo red\n</think>\n\n<answer> 2 </answer>\n", 1.0),  # whitespace tolerant
        ("<think></think><answer>2</answer>", 1.0),  # an empty thought is allowed
        ("<think>x</think><answer> </answer>", 0.0),  # a blank answer is not
        ("<answer>2</answer><think>x</think>", 0.0),  # wrong order
        ("<think>x</think>", 0.0),
        ("<answer>2</answer>", 0.0),
        ("2", 0.0),
        ("<think>a</think><think>b</think><answer>2</answer>", 0.0),  # repeated tag
        ("<think>x</think><answer>1</answer><answer>2</answer>", 0.0),  # repeated answer
        ("<think><think>x</think></think><answer>2</answer>", 0.0),  # nested
        ("<think>x<answer>1</answer></think><answer>2</answer>", 0.0),  # answer inside think
        ("<think>x</think><answer>2</answer> trailing", 0.0),  # text outside the blocks
        ("preamble <think>x</think><answer>2</answer>", 0.0),
        ("<THINK>x</THINK><ANSWER>2</ANSWER>", 0.0),  # the tags are lower case
        ("<think>x</think><answer>2", 0.0),  # truncated
    ],
)
def test_think_format(completion, score):
    assert think_format([completion]) == [score]


def test_think_format_reads_conversational_completions():
    completion = [{"role": "assistant", "content": "<think>x</think><answer>2</answer>"}]
    assert think_format([completion, [{"role": "assistant", "content": "2"}]]) == [1.0, 0.0]


@pytest.mark.parametrize(
    ("answer", "gold", "score"),
    [
        ("<answer>2</answer>", "2", 1.0),
        ("2", "2", 1.0),  # no tags: the whole completion is the answer
        ("<think>I see 3</think><answer>2</answer>", "2", 1.0),  # the thought is ignored
        ("<think>I see 2</think><answer>3</answer>", "2", 0.0),
        ("<answer>12</answer>", "2", 0.0),
        ("<answer>3 apples</answer>", "3", 1.0),  # units
        ("<answer>2 cm</answer>", "2", 1.0),
        ("<answer>The answer is 7.</answer>", "7", 1.0),
        ("<answer>2 or 3</answer>", "2", 0.0),  # hedging: the last number is the answer
        ("<answer>0.5</answer>", "\\frac{1}{2}", 1.0),  # LaTeX fractions
        ("<answer>\\dfrac{1}{2}</answer>", "\\frac12", 1.0),
        ("<answer>$\\frac{3}{4}$</answer>", "0.75", 1.0),
        ("<answer>1/2</answer>", "0.5", 1.0),
        ("<answer>\\boxed{2}</answer>", "2", 1.0),
        ("<answer>3.0</answer>", "3", 1.0),
        ("<answer>Red.</answer>", "red", 1.0),  # case and a final full stop
        ("<answer>  dark   red </answer>", "Dark Red", 1.0),  # inner whitespace
        ("<answer>dark red</answer>", "red", 0.0),
        ("<answer>three</answer>", "3", 0.0),
        ("<answer></answer>", "2", 0.0),  # empty answer
        ("<answer>   </answer>", "2", 0.0),
        ("", "2", 0.0),
        ("<answer>1</answer><answer>2</answer>", "2", 1.0),  # repeated: the last one counts
        ("<answer>2</answer><answer>1</answer>", "2", 0.0),
        ("<answer><answer>2</answer></answer>", "2", 0.0),  # nested tags: no answer
        ("<think>x</think><answer>2", "2", 0.0),  # truncated before </answer>
        ("<think>the answer is 2</think>", "2", 0.0),  # tags but no answer block
        ("<answer>3</answer>", "<answer> 3 </answer>", 1.0),  # R1-V style wrapped solution
        ("<think>48 degrees</think> The angle is \\boxed{48}.", "48", 1.0),  # EasyR1's box
        ("\\boxed{49}", "48", 0.0),
        ("\\boxed{\\frac{5}{2}", "2.5", 0.0),  # an unclosed box holds no answer
        ("<think>count</think>\n48", "48", 1.0),  # TRL's grpo_vlm: the answer after </think>
        ("<think>count</think>\n47", "48", 0.0),
        ("2\\sqrt{221}", "2 \\sqrt { 221 }", 1.0),  # geometry3k's spaced LaTeX
        ("2\\sqrt{222}", "2 \\sqrt { 221 }", 0.0),  # not just the leading 2
        ("2.5", "\\frac { 5 } { 2 }", 1.0),
        ("\\boxed{\\frac{5}{2}}", "\\frac { 5 } { 2 }", 1.0),
        ("3\\pi", "3 \\pi", 1.0),
        # Lists and dicts compare whole (Visual-RFT detections, boxes), numbers by value;
        # math-verify would keep only the last number of each (here both 1).
        (
            "<answer>[{'Position': [10, 20, 30, 40], 'Confidence': 1}]</answer>",
            "[{'Position': [254, 303, 291, 365], 'Confidence': 1}]",
            0.0,
        ),
        (
            '<answer>[{"Position": [254, 303, 291, 365], "Confidence": 1.0}]</answer>',
            "[{'Position': [254, 303, 291, 365], 'Confidence': 1}]",
            1.0,
        ),
        ("<answer>[0,0,10,10]</answer>", "[0, 0, 10, 10]", 1.0),
        ("<answer>[0, 0, 10, 11]</answer>", "[0, 0, 10, 10]", 0.0),
        ("<answer>the box is [0, 0, 10, 10]</answer>", "[0, 0, 5, 10]", 0.0),
        ("<answer>(1, 2)</answer>", "(1,2)", 1.0),
    ],
)
def test_accuracy(answer, gold, score):
    assert accuracy([answer], solution=[gold]) == [score]


def test_accuracy_rejects_an_empty_solution():
    with pytest.raises(ValueError, match="'solution' is empty"):
        accuracy(["<answer>2</answer>"], solution=[""])


def test_accuracy_works_off_the_main_thread():
    # math-verify's signal.alarm timeout fails outside the main thread; a silent 0 would follow.
    results = {}

    def score():
        results["scores"] = accuracy(
            ["<answer>0.5</answer>", "<answer>\\frac{2}{4}</answer>", "<answer>3</answer>"],
            solution=["\\frac{1}{2}", "0.5", "4"],
        )

    worker = threading.Thread(target=score)
    worker.start()
    worker.join()
    assert results["scores"] == [1.0, 1.0, 0.0]


LABELS = ["cat", "wild cat", "dog", "hot dog", "stripe", "striped"]


@pytest.mark.parametrize(
    ("answer", "gold", "score"),
    [
        ("<answer>cat</answer>", "cat", 1.0),
        ("<answer>  CAT </answer>", "cat", 1.0),  # case and whitespace
        ("It is a cat.", "cat", 1.0),  # no tags: the whole completion
        ("<answer>wild cat</answer>", "wild cat", 1.0),
        ("<answer>Wild   Cat</answer>", "wild cat", 1.0),
        ("<answer>wild cat</answer>", "cat", 0.0),  # `cat` inside `wild cat` does not count
        ("<answer>cat</answer>", "wild cat", 0.0),
        ("<answer>hot dog</answer>", "dog", 0.0),
        ("<answer>wildcat</answer>", "cat", 0.0),  # whole words only
        ("<answer>cats</answer>", "cat", 0.0),
        ("<answer>striped</answer>", "stripe", 0.0),
        ("<answer>striped</answer>", "striped", 1.0),
        ("<answer>cat or dog</answer>", "cat", 0.0),  # naming two labels
        ("<answer>cat, wild cat</answer>", "cat", 0.0),
        ("<answer>a wild cat chasing a cat</answer>", "wild cat", 0.0),  # both named
        ("<answer>dog</answer>", "cat", 0.0),
        ("<answer>horse</answer>", "cat", 0.0),  # none named
        ("<answer></answer>", "cat", 0.0),
        ("<think>cat or dog?</think><answer>dog</answer>", "dog", 1.0),  # thought ignored
    ],
)
def test_choice(answer, gold, score):
    assert choice([answer], solution=[gold], choices=[LABELS]) == [score]


@pytest.mark.parametrize(
    ("answer", "gold", "score"),
    [
        ("It is a cat, so the answer is B.", "B", 1.0),  # the article is no option A
        ("It is a cat, so the answer is B.", "A", 0.0),
        ("A cat sits there: (b)", "B", 1.0),
        ("a", "A", 1.0),  # the whole answer
        ("(a)", "A", 1.0),
        ("C.", "C", 1.0),
        ("A and B", "B", 0.0),  # two options named
        ("I think it is D", "D", 1.0),
    ],
)
def test_choice_reads_option_letters_not_articles(answer, gold, score):
    assert choice([answer], solution=[gold], choices=[list("ABCD")]) == [score]


def test_choice_reads_the_json_column_the_loader_writes():
    # vlexp's loader stores list columns as JSON strings (one Arrow type for every record).
    assert choice(["dog"], solution=["dog"], choices=[json.dumps(LABELS)]) == [1.0]


def test_choice_rejects_a_solution_outside_the_choices():
    with pytest.raises(ValueError, match="not one of its choices"):
        choice(["cat"], solution=["horse"], choices=[LABELS])


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("<answer>[0, 0, 10, 10]</answer>", 1.0),
        ("<answer>[5, 0, 15, 10]</answer>", 1 / 3),
        ("<answer>[0.0, 0.0, 10.0, 5.0]</answer>", 0.5),
        ('<answer>{"bbox_2d": [0, 0, 10, 10], "label": "cat"}</answer>', 1.0),  # Qwen2.5-VL
        ("The box is [0,0,10,10].", 1.0),
        ("<answer>[20, 20, 30, 30]</answer>", 0.0),  # no overlap
        ("<answer>[10, 10, 0, 0]</answer>", 0.0),  # corners out of order
        ("<answer>[10, 0, 0, 10]</answer>", 0.0),
        ("<answer>[0, 0, 10]</answer>", 0.0),  # three numbers
        ("<answer>(0, 0, 10, 10)</answer>", 0.0),  # not a [..] box
        ("<answer>no box</answer>", 0.0),
        ("<answer></answer>", 0.0),
        ("<answer>[0, 0, 10, 10] [20, 20, 30, 30]</answer>", 1.0),  # the first box counts
        ("<answer>[20, 20, 30, 30] [0, 0, 10, 10]</answer>", 0.0),
    ],
)
def test_iou(answer, score):
    assert iou([answer], box=[[0, 0, 10, 10]]) == [pytest.approx(score)]


def test_iou_reads_box_from_json_text_or_solution():
    assert iou(["[0, 0, 10, 10]"], box=["[0, 0, 10, 10]"]) == [1.0]
    assert iou(["[0, 0, 10, 10]"], solution=["<answer>[0, 0, 10, 10]</answer>"]) == [1.0]


def test_iou_rejects_a_bad_record_box():
    with pytest.raises(ValueError, match="'box' is not a box"):
        iou(["[0, 0, 1, 1]"], box=["[10, 10, 0, 0]"])
    with pytest.raises(ValueError, match="needs a 'box'"):
        iou(["[0, 0, 1, 1]"])


def test_length_is_a_soft_penalty_past_the_target():
    ids = [[1] * n for n in (0, 24, 26, 28, 32, 40)]
    scores = length(["x"] * len(ids), completion_ids=ids, max_length=32, window=8)
    assert scores == [0.0, 0.0, -0.25, -0.5, -1.0, -1.0]


def test_length_with_settings_is_named_length_by_trl():
    import functools

    from trl.trainer.utils import get_callable_name

    reward = functools.partial(length, max_length=32, window=8)
    assert get_callable_name(reward) == "length"
    assert reward(["x"], completion_ids=[[1] * 30]) == [-0.75]


def test_length_rejects_bad_settings_and_missing_ids():
    with pytest.raises(ValueError, match="window <= max_length"):
        length(["x"], completion_ids=[[1]], max_length=4, window=8)
    with pytest.raises(ValueError, match="completion_ids"):
        length(["x"], max_length=32, window=8)


def test_rewards_score_each_completion_against_its_own_record():
    completions = ["<answer>2</answer>", "<answer>3</answer>", "<answer>red</answer>"]
    assert accuracy(completions, solution=["2", "2", "red"]) == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError):  # columns of another length are a bug, never zipped short
        accuracy(completions, solution=["2", "3"])


def _readme_accuracy_rows() -> list[tuple[str, str, float]]:
    """(answer, solution, score) for every example in the `accuracy` table of docs/rewards.md."""
    import re

    from tests.readme import page

    table = page("rewards").split("| completion's answer | solution | equal | why |", 1)[1]
    rows = []
    for line in table.split("\n\n", 1)[0].splitlines()[2:]:
        answers, golds, equal = (re.findall(r"`([^`]+)`", cell) for cell in line.split(" | ")[:3])
        golds = golds * len(answers) if len(golds) == 1 else golds
        assert len(golds) == len(answers), f"README row pairs no examples: {line}"
        score = {"yes": 1.0, "no": 0.0}[line.split(" | ")[2].strip()]
        answers = [
            answer.replace("</think>\\n", "</think>\n") for answer in answers
        ]  # the README writes "\\n"
        rows += [(answer, gold, score) for answer, gold in zip(answers, golds, strict=True)]
    return rows


def test_readme_accuracy_table_is_what_accuracy_does():
    rows = _readme_accuracy_rows()
    assert len(rows) >= 30
    for answer, gold, score in rows:
        assert accuracy([answer], solution=[gold]) == [score], (answer, gold)
