r"""Reward cases from other projects' reward tests and reward code, kept as data.

Each case is one call of a vlexp reward on one completion: the completion, the record's
columns (`solution`, `choices`, `box`), the score the other project gives (`expected`), and
where it comes from (`source`: the repository and file; `peer`: the function there). Cases
from a project's tests copy the value the test asserts; cases from a project's code (no test
of its own there) give the value its function returns on that input (computed once with the
project's code; the comment says so where it is not obvious).

Where vlexp differs on purpose, `vlexp` holds vlexp's score and `why` says why (stricter
format, no partial credit, no "skip" score); docs/correctness.md lists the
kinds. `tests/unit/test_reward_corpus.py` runs every case.

Sources (read 2026-12-06 from their default branches):
- huggingface/open-r1 tests/test_rewards.py, src/open_r1/rewards.py
- huggingface/trl tests/test_rewards.py, trl/rewards/ (accuracy_rewards.py, format_rewards.py)
- huggingface/Math-Verify tests/test_all.py (compare_strings(gold, pred)), tests/test_boxed.py
- hiyouga/EasyR1 examples/reward_function/{math,r1v}.py with hiyouga/MathRuler
  mathruler/grader.py (grade_answer, extract_boxed_content); volcengine/verl
  verl/utils/reward_score/{geo3k,math_verify}.py
- Deep-Agent/R1-V src/r1-v/src/open_r1/grpo.py (accuracy_reward, format_reward)
- om-ai-lab/VLM-R1 src/open-r1-multimodal/src/open_r1/grpo_jsonl.py (mcq_reward,
  yes_no_reward, default_accuracy_reward, format_reward), vlm_modules/qwen_module.py
  (iou_reward, boxes already in one frame)
- Liuziyu77/Visual-RFT src/virft/src/open_r1/grpo_classification.py, grpo.py
"""

from __future__ import annotations

from typing import Any

OPEN_R1 = "huggingface/open-r1 tests/test_rewards.py"
OPEN_R1_CODE = "huggingface/open-r1 src/open_r1/rewards.py"
TRL = "huggingface/trl tests/test_rewards.py"
TRL_CODE = "huggingface/trl trl/rewards/format_rewards.py"
MATH_VERIFY = "huggingface/Math-Verify tests/test_all.py"
MATH_VERIFY_BOXED = "huggingface/Math-Verify tests/test_boxed.py"
MATH_VERIFY_CODE = "huggingface/Math-Verify src/math_verify (as tests/test_all.py calls it)"
EASYR1_MATH = "hiyouga/EasyR1 examples/reward_function/math.py (mathruler.grader)"
EASYR1_R1V = "hiyouga/EasyR1 examples/reward_function/r1v.py (mathruler.grader)"
MATHRULER = "hiyouga/MathRuler mathruler/grader.py"
VERL_GEO3K = "volcengine/verl verl/utils/reward_score/geo3k.py (mathruler.grader)"
VERL_MATH_VERIFY = "volcengine/verl verl/utils/reward_score/math_verify.py"
R1V = "Deep-Agent/R1-V src/r1-v/src/open_r1/grpo.py"
VLM_R1 = "om-ai-lab/VLM-R1 src/open-r1-multimodal/src/open_r1/grpo_jsonl.py"
VLM_R1_QWEN = "om-ai-lab/VLM-R1 src/open-r1-multimodal/src/open_r1/vlm_modules/qwen_module.py"
VISUAL_RFT = "Liuziyu77/Visual-RFT src/virft/src/open_r1/grpo_classification.py"
VISUAL_RFT_DET = "Liuziyu77/Visual-RFT src/virft/src/open_r1/grpo.py"
VRFT_BOX = "<think>..</think><answer>[{{'Position': {}, 'Confidence': 0.9}}]</answer>"
VRFT_GOLD = "<answer>[{'Position': [0, 0, 10, 10], 'Confidence': 1}]</answer>"

# Kinds of deliberate difference (docs/correctness.md names each).
NO_PARTIAL = "no partial credit: a format is right or wrong (open-r1's tag_count gives 0.25 a tag)"
ANSWER_TAGS = (
    "think_format asks for vlexp's prompt format, <think>…</think><answer>…</answer>; "
    "TRL's think_format_reward asks only for the thinking block"
)
WHITESPACE = "think_format tolerates whitespace around and between the blocks (R1-V's \\s*)"
ONCE = "think_format wants each tag exactly once and a non-blank answer"
NO_SKIP = "no None ('skip this example'): an answer math-verify cannot parse is compared as text"
NO_REASONING_GATE = (
    "accuracy scores the answer only; whether the thinking is closed is think_format's job"
)
ALL_BOXES = (
    "the last \\boxed{} is the answer, and all boxes of the answer read together as a list are "
    "too (Math-Verify joins only boxes that stand together)"
)
VALUE = "numbers compare by value (math-verify): an unreduced fraction is the same number"
EXACT_TEXT = "text answers compare whole (normalised), never by substring or fuzzy ratio"
BOX_FORMAT = (
    "think_format asks for vlexp's answer block; EasyR1's math format_reward asks for a "
    "\\boxed{} after the thinking instead"
)
OVERLAP = (
    "iou is the overlap itself; Visual-RFT's accuracy_reward_iou first asks math-verify, which "
    "reads both detection lists as numbers and calls them equal (1.0 for a box of IoU 0.6)"
)
ANY_TEXT = "without <answer> tags the text after </think>, else the whole completion, is the answer"


def case(
    reward: str,
    completion: str,
    expected: float | None,
    source: str,
    peer: str,
    *,
    vlexp: float | None = None,
    why: str | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """One corpus case; `vlexp`/`why` only where vlexp differs on purpose."""
    assert (vlexp is None) == (why is None), "a difference needs both vlexp's score and why"
    return {
        "reward": reward,
        "completion": completion,
        "columns": columns,
        "expected": expected,
        "source": source,
        "peer": peer,
        "vlexp": vlexp,
        "why": why,
    }


def acc(completion: str, solution: str, expected: float | None, source: str, peer: str, **kw):
    return case("accuracy", completion, expected, source, peer, solution=solution, **kw)


def fmt(completion: str, expected: float, source: str, peer: str, **kw):
    return case("think_format", completion, expected, source, peer, **kw)


def mv(gold: str, pred: str, expected: float, **kw):
    """Math-Verify's compare_strings(gold, pred): pred is the completion, gold the solution."""
    return acc(pred, gold, expected, MATH_VERIFY, "compare_strings", **kw)


CASES: list[dict[str, Any]] = [
    # --- open-r1 tests/test_rewards.py -------------------------------------------------
    acc(r"\boxed{\frac{63}{400}}", r"\frac{63}{400}", 1.0, OPEN_R1, "accuracy_reward"),
    acc(r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", 0.0, OPEN_R1, "accuracy_reward"),
    acc(r"\boxed{3}", "6", 0.0, OPEN_R1, "accuracy_reward"),
    fmt(
        "<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>",
        1.0,
        OPEN_R1,
        "format_reward",
    ),
    fmt("<think>Only thinking</think>", 0.0, OPEN_R1, "format_reward"),
    fmt("<answer>Only answer</answer>", 0.0, OPEN_R1, "format_reward"),
    fmt("No tags at all", 0.0, OPEN_R1, "format_reward"),
    fmt("<think>Missing closing</think><answer>Missing closing", 0.0, OPEN_R1, "format_reward"),
    fmt("<think>Wrong order</answer><answer>Wrong order</think>", 0.0, OPEN_R1, "format_reward"),
    fmt(
        "<think>\nI will count each distinct object in the image:\n1. Purple scooter\n"
        "2. Red bicycle\n3. Green motorcycle\n4. Gray sedan\n5. Yellow school bus\n"
        "6. Small green double-decker bus\n7. Small red car\n8. Small purple car\n"
        "9. Small gray dirt bike\n\nThere are 9 distinct objects in total.\n</think>\n"
        "<answer>\n9\n</answer>",
        1.0,
        OPEN_R1,
        "format_reward",
    ),
    fmt(
        "<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>",
        1.0,
        OPEN_R1,
        "tag_count_reward",
    ),
    fmt(
        "Some reasoning\n</think>\n<answer>\nThe answer\n</answer>",
        0.75,
        OPEN_R1,
        "tag_count_reward",
        vlexp=0.0,
        why=NO_PARTIAL,
    ),
    fmt(
        "<think>\nSome reasoning\n<answer>\nThe answer\n</answer>",
        0.75,
        OPEN_R1,
        "tag_count_reward",
        vlexp=0.0,
        why=NO_PARTIAL,
    ),
    fmt(
        "<think>\nSome reasoning\n</think>\nThe answer\n</answer>",
        0.75,
        OPEN_R1,
        "tag_count_reward",
        vlexp=0.0,
        why=NO_PARTIAL,
    ),
    fmt(
        "<think>\nSome reasoning\n</think>\n<answer>\nThe answer",
        0.75,
        OPEN_R1,
        "tag_count_reward",
        vlexp=0.0,
        why=NO_PARTIAL,
    ),
    fmt("Some reasoning\nThe answer", 0.0, OPEN_R1, "tag_count_reward"),
    # open-r1's format_reward pattern wants a newline at each tag (its code, no test).
    fmt(
        "<think>x</think><answer>2</answer>",
        0.0,
        OPEN_R1_CODE,
        "format_reward",
        vlexp=1.0,
        why=WHITESPACE,
    ),
    # --- TRL tests/test_rewards.py ---------------------------------------------------------
    acc(r"\boxed{\frac{63}{400}}", r"\frac{63}{400}", 1.0, TRL, "accuracy_reward"),
    acc(r"\boxed{\frac{63}{400}}", "63/400", 1.0, TRL, "accuracy_reward"),
    acc(r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", 0.0, TRL, "accuracy_reward"),
    acc(r"\boxed{3}", "6", 0.0, TRL, "accuracy_reward"),
    acc(r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 1.0, TRL, "accuracy_reward"),
    acc(
        "Answer is forty two.",
        "Answer is forty two.",
        None,
        TRL,
        "accuracy_reward",
        vlexp=1.0,
        why=NO_SKIP,
    ),
    acc(
        r"Some other content. \boxed{43}.",
        "Answer is forty three.",
        None,
        TRL,
        "accuracy_reward",
        vlexp=0.0,
        why=NO_SKIP,
    ),
    acc(
        r"<think> Reasoning content </think> \boxed{\frac{63}{400}}",
        r"\frac{63}{400}",
        1.0,
        TRL,
        "reasoning_accuracy_reward",
    ),
    acc(
        r"Reasoning content </think> \boxed{\frac{63}{400}}",
        r"\frac{63}{400}",
        1.0,
        TRL,
        "reasoning_accuracy_reward",
    ),
    acc(
        r"<think> Reasoning content </think> \boxed{\frac{64}{400}}",
        r"\frac{63}{400}",
        0.0,
        TRL,
        "reasoning_accuracy_reward",
    ),
    acc(
        r"<think> My answer is \boxed{42} </think> Some other text.",
        r"\boxed{42}",
        0.0,
        TRL,
        "reasoning_accuracy_reward",
    ),
    acc(
        r"<think> The answer is \boxed{42} </think> Here's a wrong answer: \boxed{43}.",
        r"\boxed{42}",
        0.0,
        TRL,
        "reasoning_accuracy_reward",
    ),
    acc(
        r"<think> Incomplete reasoning without closing tag",
        r"\frac{63}{400}",
        0.0,
        TRL,
        "reasoning_accuracy_reward",
    ),
    acc(
        r"Correct answer \frac{63}{400} but completely missing reasoning content",
        r"\frac{63}{400}",
        0.0,
        TRL,
        "reasoning_accuracy_reward",
        vlexp=1.0,
        why=NO_REASONING_GATE,
    ),
    acc(
        r"<think> Reasoning content </think> \boxed{42}",
        "forty two",
        None,
        TRL,
        "reasoning_accuracy_reward",
        vlexp=0.0,
        why=NO_SKIP,
    ),
    acc(
        r"<think> Reasoning content </think> The final answer is \boxed{\frac{1}{3}}",
        r"\frac{1}{3}",
        1.0,
        TRL,
        "reasoning_accuracy_reward (docstring)",
    ),
    acc(
        r"<think> Reasoning content </think> The final answer is \boxed{\frac{1}{2}}",
        r"\frac{1}{3}",
        0.0,
        TRL,
        "reasoning_accuracy_reward (docstring)",
    ),
    acc(
        r"<think> Reasoning content with partial answers \boxed{\frac{1}{3}} but no final answer",
        r"\frac{1}{3}",
        0.0,
        TRL,
        "reasoning_accuracy_reward (docstring)",
    ),
    fmt(
        "<think>This is my reasoning.</think>This is my answer.",
        1.0,
        TRL,
        "think_format_reward",
        vlexp=0.0,
        why=ANSWER_TAGS,
    ),
    fmt(
        "<think>\nThis is my reasoning.\n</think>\nThis is my answer.",
        1.0,
        TRL,
        "think_format_reward",
        vlexp=0.0,
        why=ANSWER_TAGS,
    ),
    fmt(
        "<think>\nThis is\nmy reasoning.\n</think>\nThis is my answer.",
        1.0,
        TRL,
        "think_format_reward",
        vlexp=0.0,
        why=ANSWER_TAGS,
    ),
    fmt(
        "<think>\nThis is <some tag> my reasoning.</think>\nThis is my answer.",
        1.0,
        TRL,
        "think_format_reward",
        vlexp=0.0,
        why=ANSWER_TAGS,
    ),
    fmt(
        "<think></think>\nThis is my answer.",
        1.0,
        TRL,
        "think_format_reward",
        vlexp=0.0,
        why=ANSWER_TAGS,
    ),
    fmt("<think>\nThis is my reasoning.\nThis is my answer.", 0.0, TRL, "think_format_reward"),
    fmt("<think>This is my reasoning.\nThis is my answer.", 0.0, TRL, "think_format_reward"),
    fmt("This is my reasoning. This is my answer.", 0.0, TRL, "think_format_reward"),
    fmt("This is my reasoning.\nThis is my answer.", 0.0, TRL, "think_format_reward"),
    fmt("This is my reasoning.</think>\nThis is my answer.", 0.0, TRL, "think_format_reward"),
    fmt("This is my reasoning.</think>This is my answer.", 0.0, TRL, "think_format_reward"),
    fmt("This<think>is my reasoning.</think>\nThis is my answer.", 0.0, TRL, "think_format_reward"),
    fmt(
        "<think>This is<think>my reasoning.</think></think>This is my answer.",
        0.0,
        TRL,
        "think_format_reward",
    ),
    fmt(
        "<think>This is</think>\nmy\n<think>reasoning.</think>\nThis is my answer.",
        0.0,
        TRL,
        "think_format_reward",
    ),
    # The same rule with vlexp's answer block: TRL's pattern accepts these too.
    fmt(
        "<think>\nThis is <some tag> my reasoning.</think>\n<answer>4</answer>",
        1.0,
        TRL_CODE,
        "think_format_reward",
    ),
    fmt(
        "This<think>is my reasoning.</think>\n<answer>4</answer>",
        0.0,
        TRL_CODE,
        "think_format_reward",
    ),
    # --- Math-Verify tests/test_all.py: compare_strings(gold, pred) ----------------------
    mv("-5", "-5", 1.0),
    mv("7425000", "7,425,000", 1.0),
    mv("1000", "1 000", 1.0),
    mv("1000", "1000.0", 1.0),
    mv("1000.0", "1,000.0", 1.0),
    mv("1000.99", "1000,99", 1.0),
    mv("1,22", "1.22", 1.0),
    mv("0.4", ".4", 1.0),
    mv("1000.99", "1,000.99", 1.0),
    mv("1000.99", "$1,000.99", 1.0),
    mv("1000.99", "1,000.99$", 1.0),
    mv("1000.99", "the number is not 10 which is 1,000.99€", 1.0),
    mv("1000.99", "so the number is 10 which is 1,000.99m²", 1.0),
    mv("0,111", "0.111", 1.0),
    mv("2", "AZYUK2A", 0.0),
    mv("10/9", "\\frac{10}{9}", 1.0),
    mv("-10/9", "-\\frac{10}{9}", 1.0),
    mv("$[0,1)$", "$[0,1)$", 1.0),
    mv("$[0,9)$", "$[0,1)$", 0.0),
    mv("$(0,9)$", "$[0,9)$", 0.0),
    mv("$1$", "$-[0,1)$", 0.0),
    mv("$9$", "Answer \\[ 9 \\]", 1.0),
    mv("$9$", "Answer $ 9 $", 1.0),
    mv("$9$", "Answer $$ 9 $$", 1.0),
    mv("$9$", "Answer \\( 9 \\)", 1.0),
    mv("$10$", "Answer \\( (9+1) \\)", 1.0),
    mv("$9$", "Answer \\[ \n 9 \n \\]", 1.0),
    mv("$10/9$", "Answer $ \\frac{1}{2} \\$ = \\frac{10}{9} $", 1.0),
    mv("$1/3$", "$\\frac13 $", 1.0),
    mv("$1$", "$\\frac3{3} $", 1.0),
    mv("$\\sqrt{3}$", "$\\sqrt3 $", 1.0),
    mv("$1/3$", "$\\cfrac{1}{3} $", 1.0),
    mv("$1/3$", "$\\dfrac{1}{3} $", 1.0),
    mv("$1/3$", "$ 1/3 $", 1.0),
    mv("$1/3$", "$\\left( \\frac{1}{3} \\right)$", 1.0),
    mv("$1/3$", "$\\boxed{\\frac{1}{3}}$", 1.0),
    mv("$1/3$", "$\\frac{1}{3} \\text{meters}$", 1.0),
    mv("$1/3$", "$k = \\frac{1}{3}$", 1.0),
    mv("$28\\%$", "28 percent", 1.0),
    mv("$28\\%$", "28 %", 1.0),
    mv("$28\\%$", "$28$ %", 1.0),
    mv("$28\\%$", "$\\boxed{28}$ pct", 1.0),
    mv("$2-2p$", "If $2-x=p$, then $x=2-p$. Thus $x-p=\\boxed{2-2p}$.", 1.0),
    mv("$\\frac{14}{3}$", r"$f(-2)+f(-1)+f(0)=2+\frac{5}{3}+1=\boxed{\frac{14}{3}}$", 1.0),
    mv(
        "$\\text{Evelyn}$",
        r"Evelyn went almost as far as Carla in less than half the time that it took Carla, so "
        r"Evelyn's average speed is also greater than Carla's. Therefore, $\boxed{\text{Evelyn}}$"
        r" is our answer.",
        1.0,
    ),
    mv("$3\\sqrt{13}$", r"\sqrt{36 + 81}\\ & = \sqrt{117} = \boxed{3\sqrt{13}}. \end{align*}", 1.0),
    mv("$2$", r"only $4^2=16$ and $6^2=36$ end in $6$. Thus, there are $\boxed{2}$ distinct", 1.0),
    mv("$-2,1$", r"Checking, we find that the only integer roots are $\boxed{-2,1}.$", 1.0),
    mv("$90^\\circ$", "&= 50^\\circ+40^\\circ \\\\ &= \\boxed{90^\\circ}. \\end{align*}", 1.0),
    mv(
        "$(6,31,-1)$",
        "Then solving the system of equations, we find $(p,q,r) = \\boxed{(6,31,-1)}.$",
        1.0,
    ),
    mv("$[-4,0]$", r"Thus, the values of \( k \) are: \[ \boxed{[-4, 0]} \]", 1.0),
    mv("$3 \\pm 2 \\sqrt{2}$", "the roots are $x = \\boxed{3 \\pm 2 \\sqrt{2}}.$", 1.0),
    mv("$\\{1\\pm\\sqrt{5},-2\\}$", "the answer is $\\boxed{\\{1\\pm\\sqrt{5},-2\\}}.$", 1.0),
    mv(
        "$2 \\sin b \\cos a$",
        "\\[\\sin (a + b) - \\sin (a - b) = \\boxed{2 \\sin b \\cos a}.\\]",
        1.0,
    ),
    mv("$125$ miles", "The distance is $\\boxed{125\\textnormal{ miles}}.$", 1.0),
    mv(
        "$[-1, -\\frac{1}{2}) \\cup (-\\frac{1}{2}, 0) \\cup (0, 1) \\cup (1, \\infty)$",
        "The solution set is $\\boxed{[-1, -\\tfrac12) \\cup (-\\tfrac12, 0) \\cup (0, 1) "
        "\\cup (1, \\infty)}.$",
        1.0,
    ),
    mv("$\\sqrt{2}+\\sqrt{5}$", "The answer is $\\boxed{\\sqrt 2+\\sqrt 5}$", 1.0),
    mv("$\\frac{9}{4}\\pi$", "Therefore $\\boxed{\\frac94\\pi}$.", 1.0),
    mv(
        r"The solution is \boxed{(-6, 10)}.",
        r"The solution to the inequality is \( x \in (-6, 10) \). Final Answer: The final answer"
        r" is \((-6, 10)\). I hope it is correct.",
        1.0,
    ),
    mv(r"$1112112_3$", r"the product expressed in base three is \(\boxed{1112122_3}\).", 0.0),
    mv(r"\(\boxed{\text{C}}\).", r"$\boxed{\text{(C)}}.$", 1.0),
    mv(
        r" So the answer is: \[ \boxed{11111111100} \]",
        r"is $\boxed{11,\! 111,\! 111,\! 100}$",
        1.0,
    ),
    mv(r" So the answer is: \[ \boxed{32349} \]", r"is $\boxed{32,\! 349}$", 1.0),
    mv(r" So the answer is: \[ \boxed{32349} \]", r"is $\boxed{32, 349}$", 0.0),
    mv(
        r"Thus, the domain of the function \( f(x) \) is: \[ \boxed{(2, 12) \cup (12, 102)} \]",
        r"Thus, the answer is $x \in \boxed{(2,12) \cup (12,102)}$",
        1.0,
    ),
    mv(r"$\text{E}$", r"$E$", 1.0),
    mv(r"$\boxed{1}\boxed{2}$", r"$\boxed{1,2}$", 1.0),
    mv("$x >= 5$", "Therefore $x \\geq 5$ is the solution.", 1.0),
    mv("$x > 5$", "Therefore $x < 5$ is the solution.", 0.0),
    mv("$x \\leq 5$", "$5 \\geq x$", 1.0),
    mv("$11$", "$x=11$", 1.0),
    mv("$4$", "$4\\sqrt{2}$", 0.0),
    acc(
        r"${35 cm,4}$",
        r"$\\boxed{35 cm} ++++++ \\boxed{4}$",
        1.0,
        MATH_VERIFY_BOXED,
        "compare_strings",
    ),
    acc(
        r"$840$",
        r"could answer therefore\\boxed{840}.\n\n**Final Answer**\n\\boxed{840}",
        1.0,
        MATH_VERIFY_BOXED,
        "compare_strings",
    ),
    # Several boxes are one list answer (Math-Verify tests/test_numina_cases.py,
    # tests/test_open_thoughts.py); the last box alone stays an answer (EasyR1 below).
    acc(
        r"the integers are: \[ \boxed{-2} \quad \text{and} \quad \boxed{1}. \]",
        r"so the solutions are $n = \boxed{1,-2}.$",
        1.0,
        MATH_VERIFY,
        "compare_strings",
    ),
    acc(
        "solutions are:\n\n\\[\n\\boxed{(1, 2)}, \\boxed{(2, 1)}, \\boxed{(-1, -20)}, "
        "\\boxed{(-20, -1)}\n\\]",
        "$(2,1),(1,2),(-1,-20),(-20,-1)$",
        1.0,
        "huggingface/Math-Verify tests/test_numina_cases.py",
        "compare_strings",
    ),
    acc(
        r"\boxed{1} and \boxed{2} and \boxed{3}",
        r"$${1,2,3}$$",
        1.0,
        "huggingface/Math-Verify tests/test_open_thoughts.py",
        "compare_strings",
    ),
    acc(
        r"$$\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}$$",
        r"$$(2, 2), (6, 2)$$",
        1.0,
        "huggingface/Math-Verify tests/test_open_thoughts.py",
        "compare_strings",
    ),
    acc(
        r"$$\boxed{k = 45} \quad \text{and} \quad \boxed{n = 2}$$",
        r"$$k = 45, n = 2$$",
        1.0,
        "huggingface/Math-Verify tests/test_open_thoughts.py",
        "compare_strings",
    ),
    acc(
        r"$\boxed{1,2}$",
        r"\boxed{1} no no no no no \boxed{2}",
        0.0,
        "huggingface/Math-Verify tests/test_open_thoughts.py",
        "compare_strings",
        vlexp=1.0,
        why=ALL_BOXES,
    ),
    acc(r"\boxed{1}, \boxed{2}", r"\boxed{3}", 0.0, MATH_VERIFY_CODE, "parse + verify"),
    acc(
        r"<think>..</think> It is \boxed{2}. No wait, 1 + 2 = 3, so \boxed{3}.",
        "3",
        1.0,
        EASYR1_MATH,
        "accuracy_reward",
    ),
    acc(
        r"<think>..</think> It is \boxed{2}. No wait, 1 + 2 = 3, so \boxed{3}.",
        "2",
        0.0,
        EASYR1_MATH,
        "accuracy_reward",
    ),
    # --- EasyR1 / MathRuler / verl: grade_answer(extract_boxed_content(response), truth) ---
    acc(
        r"<think>6 + 7</think> The answer is \boxed{(B)}.", "B", 1.0, EASYR1_MATH, "accuracy_reward"
    ),
    acc(r"<think>..</think> \boxed{\text{(C)}}", "C", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{\text{Evelyn}}", "Evelyn", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{(1, 2)}", "(1,2)", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{(2,1)}", "(1,2)", 0.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{[1,2)}", "[1,2]", 0.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{1, 2}", "1,2", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{1,000}", "1000", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{5 cm}", "5", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{0.5}", r"\frac{1}{2}", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{\dfrac{3}{4}}", "3/4", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{10.0}", "10", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(
        r"<think>..</think> \boxed{\frac{2}{4}}",
        r"\frac{1}{2}",
        0.0,
        EASYR1_MATH,
        "accuracy_reward",
        vlexp=1.0,
        why=VALUE,
    ),
    acc(r"<think>..</think> \boxed{7}", "8", 0.0, EASYR1_MATH, "accuracy_reward"),
    acc("<think>..</think> 7", "7", 0.0, EASYR1_MATH, "accuracy_reward", vlexp=1.0, why=ANY_TEXT),
    acc("<think>..</think><answer>(B)</answer>", "B", 1.0, EASYR1_R1V, "accuracy_reward"),
    acc("<think>..</think><answer>b</answer>", "B", 1.0, EASYR1_R1V, "accuracy_reward"),
    acc("<think>..</think><answer>B</answer>", "(B)", 1.0, EASYR1_R1V, "accuracy_reward"),
    acc("<think>..</think><answer>(C)</answer>", "B", 0.0, EASYR1_R1V, "accuracy_reward"),
    acc(
        "<think>..</think><answer>3 apples</answer>",
        "3",
        0.0,
        EASYR1_R1V,
        "accuracy_reward",
        vlexp=1.0,
        why="units after a number are ignored (math-verify)",
    ),
    acc(
        r"<think>..</think><answer>\text{Evelyn}</answer>",
        "Evelyn",
        1.0,
        EASYR1_R1V,
        "accuracy_reward",
    ),
    acc(
        r"<think>..</think><answer>$\frac{1}{2}$</answer>",
        "0.5",
        1.0,
        EASYR1_R1V,
        "accuracy_reward",
    ),
    acc(r"<think>..</think> \boxed{(B)}", "B", 1.0, VERL_GEO3K, "acc_reward"),
    acc(
        r"<think>..</think> \boxed{2\sqrt{221}}", r"2 \sqrt { 221 }", 1.0, VERL_GEO3K, "acc_reward"
    ),
    acc(
        r"<think>..</think> \boxed{2\sqrt{222}}", r"2 \sqrt { 221 }", 0.0, VERL_GEO3K, "acc_reward"
    ),
    # verl's math_verify wraps the ground truth in \boxed{} (LaTeX).
    acc(r"The answer is \boxed{1,2}", "1,2", 1.0, VERL_MATH_VERIFY, "compute_score"),
    acc(r"The answer is \boxed{1,2}", "1.2", 0.0, VERL_MATH_VERIFY, "compute_score"),
    acc(r"The answer is \boxed{(6, 31, -1)}", "(6,31,-1)", 1.0, VERL_MATH_VERIFY, "compute_score"),
    acc(r"The answer is \boxed{[-4, 0)}", "[-4,0)", 1.0, VERL_MATH_VERIFY, "compute_score"),
    acc(r"The answer is \boxed{(-4, 0)}", "[-4,0)", 0.0, VERL_MATH_VERIFY, "compute_score"),
    acc(
        r"The answer is \boxed{\text{Evelyn}}",
        r"\text{Evelyn}",
        1.0,
        VERL_MATH_VERIFY,
        "compute_score",
    ),
    acc(r"The answer is \boxed{3}", "3x", 0.0, VERL_MATH_VERIFY, "compute_score"),
    acc(r"The answer is \boxed{3}", "2 and 3", 0.0, VERL_MATH_VERIFY, "compute_score"),
    acc(r"The answer is \boxed{2x+1}", "1+2x", 1.0, VERL_MATH_VERIFY, "compute_score"),
    acc(r"The answer is \boxed{1}", "1+2x", 0.0, VERL_MATH_VERIFY, "compute_score"),
    acc(r"The answer is \boxed{3.0}", "x=3", 1.0, VERL_MATH_VERIFY, "compute_score"),
    acc(r"<think>..</think> \boxed{2,3}", "2 and 3", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{3x}", "3x", 1.0, EASYR1_MATH, "accuracy_reward"),
    acc(r"<think>..</think> \boxed{3}", "3x", 0.0, EASYR1_MATH, "accuracy_reward"),
    # EasyR1's format rewards: r1v.py is R1-V's pattern; math.py wants a box after the thinking.
    fmt("<think>x</think> <answer>2</answer>", 1.0, EASYR1_R1V, "format_reward"),
    fmt("<think>x</think>\n<answer>2</answer>", 1.0, EASYR1_R1V, "format_reward"),
    fmt("<answer>2</answer>", 0.0, EASYR1_R1V, "format_reward"),
    fmt("<think>x</think><answer>2", 0.0, EASYR1_R1V, "format_reward"),
    fmt(
        r"<think>x</think> So \boxed{2}.",
        1.0,
        EASYR1_MATH,
        "format_reward",
        vlexp=0.0,
        why=BOX_FORMAT,
    ),
    fmt(r"<think>x</think><answer>\boxed{2}</answer>", 1.0, EASYR1_MATH, "format_reward"),
    fmt(
        "<think>x</think><answer>2</answer>",
        0.0,
        EASYR1_MATH,
        "format_reward",
        vlexp=1.0,
        why=BOX_FORMAT,
    ),
    # --- R1-V grpo.py: math-verify, then the <answer> text exactly -------------------------
    acc(
        "<think>3 cubes</think><answer>3</answer>",
        "<answer> 3 </answer>",
        1.0,
        R1V,
        "accuracy_reward",
    ),
    acc(
        "<think>3 cubes</think><answer>4</answer>",
        "<answer> 3 </answer>",
        0.0,
        R1V,
        "accuracy_reward",
    ),
    acc(
        "<think>x</think><answer>cube</answer>",
        "<answer>cube</answer>",
        1.0,
        R1V,
        "accuracy_reward",
    ),
    acc(
        "<think>x</think><answer>sphere</answer>",
        "<answer>cube</answer>",
        0.0,
        R1V,
        "accuracy_reward",
    ),
    fmt("<think>x</think><answer>2</answer>", 1.0, R1V, "format_reward"),
    fmt("<think>x</think>\n\n<answer>2</answer>", 1.0, R1V, "format_reward"),
    fmt("<think>x</think><answer>2</answer> trailing", 0.0, R1V, "format_reward"),
    fmt("<answer>2</answer><think>x</think>", 0.0, R1V, "format_reward"),
    fmt("<think>x</think>", 0.0, R1V, "format_reward"),
    fmt(
        " <think>x</think><answer>2</answer>", 0.0, R1V, "format_reward", vlexp=1.0, why=WHITESPACE
    ),
    fmt("<think>x</think><answer></answer>", 1.0, R1V, "format_reward", vlexp=0.0, why=ONCE),
    fmt(
        "<think>a</think><answer>1</answer><answer>2</answer>",
        1.0,
        R1V,
        "format_reward",
        vlexp=0.0,
        why=ONCE,
    ),
    # --- VLM-R1 grpo_jsonl.py --------------------------------------------------------------
    acc("<think>..</think><answer>B.</answer>", "<answer>B</answer>", 1.0, VLM_R1, "mcq_reward"),
    acc("<think>..</think><answer>C</answer>", "<answer>B</answer>", 0.0, VLM_R1, "mcq_reward"),
    acc(
        "<think>..</think><answer>B: a cat</answer>",
        "<answer>B</answer>",
        1.0,
        VLM_R1,
        "mcq_reward",
    ),
    acc(
        "<think>..</think><answer>Yes</answer>",
        "<answer>yes</answer>",
        1.0,
        VLM_R1,
        "yes_no_reward",
    ),
    acc(
        "<think>..</think><answer>no.</answer>", "<answer>No</answer>", 1.0, VLM_R1, "yes_no_reward"
    ),
    acc(
        "<think>..</think><answer>yes</answer>", "<answer>no</answer>", 0.0, VLM_R1, "yes_no_reward"
    ),
    acc(
        "<think>..</think><answer>No, there is none.</answer>",
        "<answer>no</answer>",
        1.0,
        VLM_R1,
        "yes_no_reward",
        vlexp=0.0,
        why=EXACT_TEXT,
    ),
    acc(
        "<think>..</think><answer>3</answer>",
        "<answer>3</answer>",
        1.0,
        VLM_R1,
        "default_accuracy_reward",
    ),
    acc(
        "<think>..</think><answer>3.0</answer>",
        "<answer>3</answer>",
        1.0,
        VLM_R1,
        "default_accuracy_reward",
    ),
    acc(
        "<think>..</think><answer>4</answer>",
        "<answer>3</answer>",
        0.0,
        VLM_R1,
        "default_accuracy_reward",
    ),
    # --- Visual-RFT grpo_classification.py: math-verify, then substring containment -------
    acc(
        "<think>..</think><answer>golden retriever</answer>",
        "<answer>golden retriever</answer>",
        1.0,
        VISUAL_RFT,
        "accuracy_reward",
    ),
    acc(
        "<think>..</think><answer>retriever</answer>",
        "<answer>golden retriever</answer>",
        1.0,
        VISUAL_RFT,
        "accuracy_reward",
        vlexp=0.0,
        why=EXACT_TEXT,
    ),
    acc(
        "<think>..</think><answer>beagle</answer>",
        "<answer>golden retriever</answer>",
        0.0,
        VISUAL_RFT,
        "accuracy_reward",
    ),
    # --- choice: VLM-R1's mcq_reward (extract_choice), Visual-RFT's classification ---------
    case(
        "choice",
        "<think>..</think><answer>It is a cat, so the answer is B.</answer>",
        1.0,
        VLM_R1,
        "mcq_reward",
        solution="B",
        choices=list("ABCD"),
    ),
    case(
        "choice",
        "<think>..</think><answer>It is a cat, so the answer is B.</answer>",
        0.0,
        VLM_R1,
        "mcq_reward",
        solution="A",
        choices=list("ABCD"),
    ),
    case(
        "choice",
        "<think>..</think><answer>C.</answer>",
        1.0,
        VLM_R1,
        "mcq_reward",
        solution="C",
        choices=list("ABCD"),
    ),
    case(
        "choice",
        "<think>..</think><answer>D</answer>",
        0.0,
        VLM_R1,
        "mcq_reward",
        solution="C",
        choices=list("ABCD"),
    ),
    case(
        "choice",
        "<think>..</think><answer>golden retriever</answer>",
        1.0,
        VISUAL_RFT,
        "accuracy_reward",
        solution="golden retriever",
        choices=["golden retriever", "beagle", "pug"],
    ),
    case(
        "choice",
        "<think>..</think><answer>beagle</answer>",
        0.0,
        VISUAL_RFT,
        "accuracy_reward",
        solution="golden retriever",
        choices=["golden retriever", "beagle", "pug"],
    ),
    case(
        "choice",
        "<think>..</think><answer>retriever</answer>",
        1.0,
        VISUAL_RFT,
        "accuracy_reward",
        solution="golden retriever",
        choices=["golden retriever", "beagle", "pug"],
        vlexp=0.0,
        why=EXACT_TEXT,
    ),
    # --- iou: VLM-R1's iou_reward (REC), boxes already in one frame -----------------------
    case(
        "iou",
        '<think>..</think><answer>{"bbox_2d": [0, 0, 10, 10], "label": "cat"}</answer>',
        1.0,
        VLM_R1_QWEN,
        "iou_reward",
        solution="<answer>[0, 0, 10, 10]</answer>",
    ),
    case(
        "iou",
        "<think>..</think><answer>[5, 0, 15, 10]</answer>",
        1 / 3,
        VLM_R1_QWEN,
        "iou_reward",
        solution="<answer>[0, 0, 10, 10]</answer>",
    ),
    case(
        "iou",
        "<think>..</think><answer>[0, 0, 10, 5]</answer>",
        0.5,
        VLM_R1_QWEN,
        "iou_reward",
        solution="<answer>[0, 0, 10, 10]</answer>",
    ),
    case(
        "iou",
        "<think>..</think><answer>[20, 20, 30, 30]</answer>",
        0.0,
        VLM_R1_QWEN,
        "iou_reward",
        solution="<answer>[0, 0, 10, 10]</answer>",
    ),
    case(
        "iou",
        "<think>..</think><answer>no box</answer>",
        0.0,
        VLM_R1_QWEN,
        "iou_reward",
        solution="<answer>[0, 0, 10, 10]</answer>",
    ),
    case(
        "iou",
        "<think>..</think> [0, 0, 10, 10]",
        0.0,
        VLM_R1_QWEN,
        "iou_reward",
        solution="<answer>[0, 0, 10, 10]</answer>",
        vlexp=1.0,
        why=ANY_TEXT,
    ),
    case(
        "iou",
        "<think>..</think><answer>[0.0, 0.0, 10.0, 5.0]</answer>",
        0.0,
        VLM_R1_QWEN,
        "iou_reward",
        solution="<answer>[0, 0, 10, 10]</answer>",
        vlexp=0.5,
        why="iou reads decimal coordinates too (VLM-R1's pattern takes integers only)",
    ),
    # --- iou: Visual-RFT's accuracy_reward_iou (detection lists, one box each) -------------
    case(
        "iou",
        VRFT_BOX.format("[0, 0, 10, 10]"),
        1.0,
        VISUAL_RFT_DET,
        "accuracy_reward_iou",
        solution=VRFT_GOLD,
    ),
    case(
        "iou",
        VRFT_BOX.format("[0, 0, 10, 6]"),
        1.0,
        VISUAL_RFT_DET,
        "accuracy_reward_iou",
        solution=VRFT_GOLD,
        vlexp=0.6,
        why=OVERLAP,
    ),
    case(
        "iou",
        VRFT_BOX.format("[20, 20, 30, 30]"),
        0.0,
        VISUAL_RFT_DET,
        "accuracy_reward_iou",
        solution=VRFT_GOLD,
    ),
]
