"""Entry-point detection and dependency-aware assembly (issue 16). The real-response fixture is still to come."""

from __future__ import annotations

import ast

from codescaler_rerank.assembly import assemble, code_regions, detect_entry_point
from codescaler_rerank.datasets import load_bundled
from codescaler_rerank.extraction import extract_code


def test_entry_point_of_every_humaneval_prompt() -> None:
    problems = load_bundled("humaneval")
    assert [detect_entry_point(p.problem) for p in problems] == [p.entry_point for p in problems]


def test_entry_point_from_prose_and_asserts() -> None:
    assert detect_entry_point("Write a python function fib(n) with input n") == "fib"
    assert detect_entry_point("Please write a function `median` that returns the median.") == "median"
    assert detect_entry_point("Write a function to add.\nassert add_nums(1, 2) == 3") == "add_nums"
    assert detect_entry_point("Explain what a linked list is.") is None


def test_answer_block_chosen_among_examples_and_helpers_kept() -> None:
    blocks = [
        "def singleNumber(nums):\n    r = 0\n    for n in nums:\n        r ^= n\n    return r",  # an example problem
        "import math\n\nLIMIT = 10\n\ndef helper(x):\n    return math.isqrt(x) < LIMIT",
        "def solve(x):\n    return helper(x)\n\nprint(solve(4))\nif __name__ == '__main__':\n    solve(input())",
        "assert solve(4)\nprint('ok')",
    ]
    code = assemble(blocks, "solve")
    assert code == (
        "import math\n\nLIMIT = 10\n\ndef helper(x):\n    return math.isqrt(x) < LIMIT\n\ndef solve(x):\n    return helper(x)"
    )
    ast.parse(code)


def test_stub_signature_loses_to_the_real_body_and_calls_of_the_entry_point_are_dropped() -> None:
    blocks = ["def f(x):\n    pass", "def f(x):\n    return x + 1\n\nresult = f(2)\nprint(result)"]
    assert assemble(blocks, "f") == "def f(x):\n    return x + 1"
    assert assemble(blocks, "g") is None
    assert assemble(blocks, None) is None


def test_code_regions_of_prose() -> None:
    text = "Here it is:\n\ndef f(x):\n    return x * 2\n\nThis doubles x. For example f(2) is 4.\n"
    assert code_regions(text) == ["def f(x):\n    return x * 2"]


def test_extract_code_with_entry_point() -> None:
    response = (
        "First the imports:\n```python\nfrom collections import Counter\n```\n"
        "Then the function:\n```python\ndef top(xs):\n    return Counter(xs).most_common(1)[0][0]\n```\n"
        "Usage:\n```python\nprint(top([1, 1, 2]))\n```\n"
    )
    assert extract_code(response).code == "print(top([1, 1, 2]))"  # without the prompt: the last block
    found = extract_code(response, entry_point="top")
    assert found.valid and found.reason == "ok"
    assert found.code == "from collections import Counter\n\ndef top(xs):\n    return Counter(xs).most_common(1)[0][0]"
    unfenced = "Sure! def is below.\n\ndef top(xs):\n    return max(xs)\n\nHope it helps."
    assert extract_code(unfenced, entry_point="top").code == "def top(xs):\n    return max(xs)"
    assert extract_code(response, mode="strict", entry_point="top").reason == "multiple_code_blocks"
