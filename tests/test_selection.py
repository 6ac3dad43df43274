"""Selectors behind `Reranker(selector=...)`: a real tiny RM scores, the real sandbox runs the public tests."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from codescaler_rerank import Reranker  # noqa: E402
from codescaler_rerank.reranker import selection_key  # noqa: E402
from codescaler_rerank.results import Candidate  # noqa: E402
from codescaler_rerank.selection import (  # noqa: E402
    RmTestsSelector,
    VotesSelector,
    get_selector,
    program_key,
)

PROMPT = '''def add(a, b):
    """Add two numbers.
    >>> add(1, 2)
    3
    >>> add(-1, 1)
    0
    """
'''
WRONG = [
    "```python\ndef add(a, b):\n    return a - b\n```",
    "```python\ndef add(a, b):\n    return a * b\n```",
    "```python\ndef add(a, b):\n    return a + b + 1\n```",
]
RIGHT = ["```python\ndef add(a, b):\n    return a + b\n```", "```python\ndef add(x, y):\n    return sum([x, y])\n```"]
PROSE = "Just add them."


def _by_index(result):
    return {c.index: c for c in result.candidates}


def test_rm_is_the_default_and_the_rm_order(tiny_rm):
    answers = WRONG + RIGHT + [PROSE]
    result = Reranker(reward_model=tiny_rm).select(PROMPT, answers)
    assert result.selector == "rm" and result.sandbox_runs == 0
    assert result.candidates == sorted(result.candidates, key=selection_key)
    assert all(c.tests_passed is None and c.p_pass is None for c in result.candidates)
    assert result.confidence is None and not result.abstained and result.timings.select >= 0


def test_rm_tests_runs_the_rms_best_until_one_passes(tiny_rm):
    answers = WRONG + RIGHT + [PROSE]
    rm_order = [c.index for c in Reranker(reward_model=tiny_rm).select(PROMPT, answers).candidates]
    result = Reranker(reward_model=tiny_rm, selector="rm+tests").select(PROMPT, answers)
    right = {3, 4}
    first_pass = next(k for k, i in enumerate(rm_order) if i in right)
    assert result.selector == "rm+tests" and result.best.index == rm_order[first_pass]
    assert result.best.tests_passed is True and result.best.rank == 1
    # Only the RM's best were run, one at a time, until the first pass; the rest keep the RM's order.
    assert result.sandbox_runs == first_pass + 1
    ran = {i for i in rm_order[: first_pass + 1]}
    assert {c.index for c in result.candidates if c.tests_passed is not None} == ran
    assert [c.index for c in result.candidates[1:]] == [i for i in rm_order if i != result.best.index]
    assert all(_by_index(result)[i].tests_passed is False for i in ran - right)
    assert result.timings.select > 0 and result.timings.total >= result.timings.select


def test_rm_tests_runs_one_of_each_program(tiny_rm):
    """A wrong program's twin (other local names, a comment) shares its verdict and is not run again."""
    twin = "```python\ndef add(x, y):\n    # subtract\n    return x - y\n```"
    answers = [WRONG[0], twin, RIGHT[0]]
    rm_order = [c.index for c in Reranker(reward_model=tiny_rm).select(PROMPT, answers).candidates]
    result = Reranker(reward_model=tiny_rm, selector="rm+tests").select(PROMPT, answers)
    by_index = _by_index(result)
    assert result.best.index == 2 and by_index[2].tests_passed is True
    if rm_order[0] == 2:
        assert result.sandbox_runs == 1 and by_index[0].tests_passed is None and by_index[1].tests_passed is None
    else:
        assert result.sandbox_runs == 2 and by_index[0].tests_passed is False and by_index[1].tests_passed is False


def test_rm_tests_with_given_tests_and_a_run_budget(tiny_rm):
    answers = WRONG + RIGHT
    # The given tests override the prompt's examples: nothing returns 100 for (1, 2), so nothing passes.
    result = Reranker(reward_model=tiny_rm, selector=RmTestsSelector(top_k=2, max_runs=3)).select(
        PROMPT, answers, tests="assert add(1, 2) == 100\n")
    rm_order = [c.index for c in Reranker(reward_model=tiny_rm).select(PROMPT, answers).candidates]
    assert [c.index for c in result.candidates] == rm_order  # none passes: the RM's order
    assert result.sandbox_runs == 3  # waves of 2, capped at 3 runs
    assert [c.tests_passed for c in result.candidates] == [False, False, False, None, None]


def test_tests_selector_runs_every_valid_candidate(tiny_rm):
    answers = [PROSE, WRONG[0], RIGHT[1], RIGHT[0]]
    result = Reranker(reward_model=tiny_rm, selector="tests").select(PROMPT, answers)
    assert result.best.index == 2  # the first passing one in generation order, whatever the RM says
    assert result.sandbox_runs == 3  # the prose answer has no code to run
    assert [c.index for c in result.candidates] == [2, 3, 0, 1]
    assert _by_index(result)[0].tests_passed is None and _by_index(result)[1].tests_passed is False
    nothing_passes = Reranker(reward_model=tiny_rm, selector="tests").select(PROMPT, [PROSE] + WRONG)
    assert nothing_passes.best.index == 0  # no pass: the first candidate, as the public-tests baseline


def test_execution_selectors_without_tests_keep_the_rm_order(tiny_rm):
    answers = WRONG + RIGHT
    rm = Reranker(reward_model=tiny_rm).select("Add two numbers.", answers)
    for name in ("rm+tests", "tests"):
        result = Reranker(reward_model=tiny_rm, selector=name).select("Add two numbers.", answers)
        assert [c.index for c in result.candidates] == [c.index for c in rm.candidates]
        assert result.sandbox_runs == 0 and all(c.tests_passed is None for c in result.candidates)
        assert result.selector == name


def test_execution_is_judged_in_the_parent(tiny_rm):
    """A candidate that rigs its own result (an int subclass equal to anything) does not pass."""
    rigged = ("```python\nclass E(int):\n    def __eq__(self, other):\n        return True\n"
              "def add(a, b):\n    return E(0)\n```")
    result = Reranker(reward_model=tiny_rm, selector="tests").select(PROMPT, [rigged, RIGHT[0]])
    assert result.best.index == 1 and _by_index(result)[0].tests_passed is False


def test_bad_tests_are_a_clear_error(tiny_rm):
    with pytest.raises(ValueError, match="do not parse"):
        Reranker(reward_model=tiny_rm, selector="rm+tests").select(PROMPT, RIGHT, tests="assert add(1, 2) ==")


VOTE_PROMPT = "Write `double(x)` that returns twice x."
MAJORITY = [  # one program, written three ways: other names, comments, a docstring, annotations
    "```python\ndef double(x):\n    y = x * 2\n    return y\n```",
    "```python\ndef double(value: int) -> int:\n    # twice\n    result = value * 2\n    return result\n```",
    "```python\ndef double(n):\n    \"\"\"Twice n.\"\"\"\n    out = n * 2\n\n    return out\n```",
]
OTHERS = ["```python\ndef double(x):\n    return x + x\n```", "```python\ndef double(x):\n    return x << 1\n```"]


def test_program_key_groups_renamed_and_reformatted_programs():
    keys = {program_key(text.split("```python\n")[1].split("```")[0], "python") for text in MAJORITY}
    assert len(keys) == 1
    doubled, scaled = "def f(x):\n    return x + x\n", "def f(x):\n    return 2 * x\n"
    assert program_key(doubled, "python") != program_key(scaled, "python")
    # the function's own name is the interface: a differently named function is another program
    assert program_key("def f(x):\n    return x\n", "python") != program_key("def g(x):\n    return x\n", "python")
    assert program_key("int main() { return 0; }", "cpp") == program_key("int main() {\n  return 0;  // ok\n}", "cpp")


def test_votes_weight_trades_rm_score_for_agreement(tiny_rm):
    answers = OTHERS + MAJORITY + [PROSE]
    rm = Reranker(reward_model=tiny_rm).select(VOTE_PROMPT, answers)
    heavy = Reranker(reward_model=tiny_rm, selector=VotesSelector(weight=100.0)).select(VOTE_PROMPT, answers)
    assert heavy.selector == "rm+votes" and heavy.best.index in {2, 3, 4}
    assert [c.index for c in heavy.candidates[:3]] == [c.index for c in rm.candidates if c.index in {2, 3, 4}]
    assert heavy.candidates[-1].index == 5 and heavy.sandbox_runs == 0  # invalid last; no execution
    zero = Reranker(reward_model=tiny_rm, selector=VotesSelector(weight=0.0)).select(VOTE_PROMPT, answers)
    assert [c.index for c in zero.candidates] == [c.index for c in rm.candidates]  # z-scores keep the RM's order


def test_votes_by_hand():
    """z-scored raw score + weight * ln(group size), ties in the given order."""
    def cand(index, code, score):
        return Candidate(index=index, text=code, code=code, language="python", valid=True, reason="ok",
                         score=score, reward=1.0, rank=0)

    ranked = [cand(0, "def f(x):\n    return 1\n", 3.0), cand(1, "def f(y):\n    return 2\n", 1.0),
              cand(2, "def f(z):\n    return 2\n", 0.0)]
    # scores 3, 1, 0: mean 4/3, sd 1.247; z = 1.336, -0.267, -1.069; group {1, 2} adds ln 2 = 0.693 * weight
    assert [c.index for c in VotesSelector(1.0).select(ranked).ranked] == [0, 1, 2]
    assert [c.index for c in VotesSelector(3.0).select(ranked).ranked] == [1, 0, 2]
    assert [c.index for c in VotesSelector(4.0).select(ranked).ranked] == [1, 2, 0]


def test_unknown_selector_and_bad_options():
    with pytest.raises(ValueError, match="unknown selector 'best'"):
        get_selector("best")
    with pytest.raises(ValueError, match="at least 1"):
        RmTestsSelector(top_k=0)
    with pytest.raises(ValueError, match="weight"):
        VotesSelector(-1.0)
    with pytest.raises(ValueError, match="needs a check"):
        RmTestsSelector().select([])
