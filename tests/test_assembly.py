"""Entry-point detection and dependency-aware assembly (issue 16), and the callers that pass the prompt's
entry point on (Reranker, JSONL select, evaluation) in lenient mode only."""

from __future__ import annotations

import ast
import io
import json

import pytest

from codescaler_rerank.assembly import assemble, code_regions, detect_entry_point
from codescaler_rerank.datasets import Problem, load_bundled
from codescaler_rerank.evaluation import EvalConfig, PreferencePair, evaluate_best_of_n, evaluate_pairs
from codescaler_rerank.extraction import VALID_REASONS, extract_code
from codescaler_rerank.integrations.rewards import score_responses
from codescaler_rerank.jsonl_select import select_jsonl
from codescaler_rerank.pipeline import extract_all
from codescaler_rerank.reranker import Reranker
from codescaler_rerank.reward_model import ScoredInput


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


PROMPT = "Write a function `top(xs)` that returns the most common element of xs."
MULTI_BLOCK = (
    "```python\nfrom collections import Counter\n```\n"
    "```python\ndef top(xs):\n    return Counter(xs).most_common(1)[0][0]\n```\n"
    "```python\nprint(top([1, 1, 2]))\n```\n"
)
ASSEMBLED = "from collections import Counter\n\ndef top(xs):\n    return Counter(xs).most_common(1)[0][0]"


class RecordingScorer:
    """Scores every program 1.0 and keeps the (prompt, code) pairs it was asked to score."""

    name = "recording"

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def score_pairs(self, pairs):
        self.pairs.extend(pairs)
        return [ScoredInput(1.0, 1, False) for _ in pairs]


def test_reranker_select_and_jsonl_select_use_the_prompts_entry_point() -> None:
    best = Reranker(reward_model=RecordingScorer()).select(PROMPT, [MULTI_BLOCK]).best
    assert (best.code, best.valid, best.reason) == (ASSEMBLED, True, "ok")
    scorer = RecordingScorer()
    line = json.dumps({"prompt": PROMPT, "candidates": [MULTI_BLOCK]}).encode() + b"\n"
    assert select_jsonl(Reranker(reward_model=scorer), io.BytesIO(line * 2), io.StringIO()) == (2, 0)
    assert scorer.pairs == [(PROMPT, ASSEMBLED)] * 2
    # A prompt that names no function: the last block that parses, as before.
    assert Reranker(reward_model=RecordingScorer()).select("Count things.", [MULTI_BLOCK]).best.code == (
        "print(top([1, 1, 2]))"
    )


def test_strict_and_paper_modes_ignore_the_entry_point() -> None:
    for mode in ("strict", "paper"):
        best = Reranker(reward_model=RecordingScorer(), mode=mode).select(PROMPT, [MULTI_BLOCK]).best
        assert (best.code, best.valid) == ("", False)
        assert extract_all([MULTI_BLOCK], "python", mode, PROMPT, "top") == [extract_code(MULTI_BLOCK, mode=mode)]


def test_evaluation_uses_the_problems_entry_point_or_detects_it() -> None:
    candidates = [MULTI_BLOCK, MULTI_BLOCK.replace("most_common(1)[0][0]", "most_common()[-1][0]")]
    for entry_point, problem in ((None, PROMPT), ("top", "Most common element.")):
        scorer = RecordingScorer()
        pool = Problem(problem_id="p", problem=problem, entry_point=entry_point, candidates=candidates,
                       labels=[True, False])
        evaluate_best_of_n([pool], scorer, EvalConfig(ns=[1], public_tests="none", latency_samples=0))
        assert scorer.pairs[0] == (problem, ASSEMBLED)
    pair = PreferencePair(prompt=PROMPT, chosen=MULTI_BLOCK, rejected="```python\nx = 1\n```")
    scorer = RecordingScorer()
    evaluate_pairs([pair], scorer)
    assert scorer.pairs[0] == (PROMPT, ASSEMBLED)


def test_rl_rewards_use_the_entry_point_in_lenient_mode_only() -> None:
    scorer = RecordingScorer()
    lenient = score_responses(scorer, [PROMPT, PROMPT], [MULTI_BLOCK, "no code"], mode="lenient")
    assert [s.valid for s in lenient] == [True, False] and scorer.pairs == [(PROMPT, ASSEMBLED)]
    assert not score_responses(RecordingScorer(), [PROMPT], [MULTI_BLOCK])[0].valid  # paper: three blocks


def test_unclosed_reasoning_with_unfenced_code_and_an_entry_point() -> None:
    truncated = (
        "<think>\nThe user wants top. Let me write it:\n\ndef top(xs):\n    return max(xs, key=xs.count)\n\nWait, ties"
    )
    found = extract_code(truncated, entry_point="top")
    assert (found.code, found.valid, found.reason) == ("def top(xs):\n    return max(xs, key=xs.count)", True,
                                                       "code_in_reasoning")
    assert extract_code(truncated, mode="strict", entry_point="top").reason == "empty_response"
    assert extract_code(truncated, mode="paper", entry_point="top").reason == "no_code_block"


def test_companion_definitions_and_mutual_recursion_are_kept() -> None:
    # HumanEval/38: the tests call encode_cyclic, which decode_cyclic never calls.
    block = (
        "def encode_cyclic(s):\n    return s[1:] + s[:1]\n\n"
        "def decode_cyclic(s):\n    return s[-1:] + s[:-1]\n\n"
        "def test():\n    assert decode_cyclic(encode_cyclic('abc')) == 'abc'\n\n"
        "print(decode_cyclic('bca'))"
    )
    assert assemble([block], "decode_cyclic") == (
        "def encode_cyclic(s):\n    return s[1:] + s[:1]\n\ndef decode_cyclic(s):\n    return s[-1:] + s[:-1]"
    )
    mutual = (
        "def is_even(n):\n    return n == 0 or is_odd(n - 1)\n\n"
        "def is_odd(n):\n    return n != 0 and is_even(n - 1)"
    )
    assert assemble(["def unrelated():\n    return 1", mutual], "is_even") == mutual
    # Program I/O is not a constant the answer needs.
    block = "n = int(input())\nK = 3\n\ndef f():\n    return n + K"
    assert assemble([block], "f") == "K = 3\n\ndef f():\n    return n + K"


def test_answer_in_prose_after_example_blocks() -> None:
    """An unclosed fence in a list item ends with the list; the answer that follows is prose to markdown."""
    response = (
        "1. Example:\n   ```python\n   def other(x):\n       return x\n\n"
        "# Code for the original problem:\ndef wanted(x):\n    return x + 1\n"
    )
    found = extract_code(response, entry_point="wanted")
    assert (found.code, found.valid) == ("def wanted(x):\n    return x + 1", True)
    assert extract_code(response).code == "def other(x):\n    return x"  # without the entry point: the block


def test_unclosed_block_ends_at_a_fence_with_text_after_it() -> None:
    response = "```python\ndef things():\n    return [5, 'foobar']\n````Develop an advanced Python program for..."
    for entry_point in ("things", None):
        found = extract_code(response, entry_point=entry_point)
        assert (found.code, found.valid) == ("def things():\n    return [5, 'foobar']", True)
    assert extract_code(response, mode="strict").reason == "unclosed_code_block"


def test_code_before_empty_fences_with_the_first_line_indented() -> None:
    response = " def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n\nprint(fact(5))\n\n```\n\n```\n\n```\n"
    found = extract_code(response, entry_point="fact")
    assert (found.code, found.valid) == ("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)", True)


HOSTILE = [
    "```python\n"
    + "\n".join(["x0 = 1", *(f"x{i} = x{i - 1} + 1" for i in range(1, 3500))])
    + "\ndef f():\n    return x3499\n```",
    "".join(f"```python\ndef g{i}():\n    return g{i - 1}()\n```\n" for i in range(1, 600))
    + "```py\ndef f():\n    return g599()\n```",
    ("x = (\n# c\n" * 100_000)[:1_000_000],
    ("def f():\n    return g()\n" * 50_000)[:1_000_000],
    "```python\n" + "def f():\n    return [" * 300 + "\n```",
    "```python\n" + "a = b = " * 5_000 + "f = 1\n```",
    "```python\ndef f(x):\n    return x\n```" + "```python\nf = f(1)\n```" * 600,
    "<think>\n" + "def f(:\n" * 10_000,
    "def \u0192(x):\n    return x\n\ndef f(x):\n    return \u0192(x)",  # a non-ASCII identifier
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_responses_with_an_entry_point(text: str) -> None:
    found = extract_code(text, entry_point="f")
    assert found.valid == (found.reason in VALID_REASONS)
    if found.valid:
        ast.parse(found.code)
