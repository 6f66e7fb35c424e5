"""vlexp's rewards on the cases other projects' reward tests and code assert
(`tests/reward_corpus.py`): each case scores what the other project scores, or, where vlexp
differs on purpose, what the case records with its reason."""

from __future__ import annotations

import pytest

import vlexp.rewards
from tests.reward_corpus import CASES


def _case_id(index: int, case: dict) -> str:
    project = case["source"].split()[0].split("/")[1]
    return f"{project}-{case['peer'].split()[0]}-{case['reward']}-{index}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(i, c) for i, c in enumerate(CASES)])
def test_reward_agrees_with_the_other_project(case):
    reward = getattr(vlexp.rewards, case["reward"])
    columns = {name: [value] for name, value in case["columns"].items()}
    score = reward([case["completion"]], **columns)[0]
    wanted = case["expected"] if case["vlexp"] is None else case["vlexp"]
    assert score == pytest.approx(wanted), (
        f"{case['source']} ({case['peer']}) scores {case['expected']}"
        + (f"; vlexp means {case['vlexp']}: {case['why']}" if case["why"] else "")
    )


def test_reward_reads_conversational_completions_like_strings():
    # TRL and the peers pass [{"role": "assistant", "content": ...}] for chat prompts.
    for case in CASES[:20]:
        reward = getattr(vlexp.rewards, case["reward"])
        columns = {name: [value] for name, value in case["columns"].items()}
        message = [{"role": "assistant", "content": case["completion"]}]
        assert reward([message], **columns) == reward([case["completion"]], **columns)


def test_every_difference_is_one_the_readme_names():
    from tests.readme import page

    section = page("correctness")
    reasons = {case["why"] for case in CASES if case["why"]}
    for kind in ("partial credit", "think_format", "None", "last", "substring", "value"):
        assert kind in section, f"docs/correctness.md does not mention {kind!r}"
    assert all(case["vlexp"] is not None for case in CASES if case["expected"] is None)
    assert len(reasons) >= 5
    differences = sum(1 for case in CASES if case["why"])
    # The README's numbers are the corpus's (one definition per number).
    assert f"holds {len(CASES)} cases" in " ".join(section.split())
    assert f"differs on purpose in {differences} cases" in " ".join(section.split())
