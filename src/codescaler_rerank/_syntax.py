"""Syntax checks under counted limits: Python with `ast.parse` in-process, other languages in the
tree-sitter worker (`_ts_client`).

Every limit is counted, never timed, so the same input gets the same verdict on any machine at any load.
A parse costs its UTF-8 bytes times the language's weight (Python's `ast.parse` needs up to ~10 us per byte
on f-string soups, tree-sitter ~1 us); one block may cost at most `MAX_BLOCK_COST` (Python 32 KiB,
other languages 256 KiB) and one response `MAX_RESPONSE_COST` in all. Past a limit the verdict is "too_long".
"""

from __future__ import annotations

import ast
import gc
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from . import _ts_client

MAX_BLOCK_COST = 256 << 10
MAX_RESPONSE_COST = 512 << 10
_WEIGHT = {"python": 8}

# Warning filters, the GC switch and (in 3.11) the AST conversion's depth counter are process-wide: one parse at a time.
_AST_LOCK = threading.Lock()


@dataclass(frozen=True)
class Verdict:
    """The outcome of one syntax check: `reason` is "ok", "syntax_error", "too_long" or "parse_failed";
    `real_code` is False for a valid program made only of names, literals and comments."""

    reason: str
    real_code: bool = False

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


def utf8(text: str) -> bytes:
    """UTF-8 bytes; lone surrogates (never valid in a program) become '?'."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def cost(data: bytes, language: str) -> int:
    """What checking `data` in `language` counts against the limits."""
    return len(data) * _WEIGHT.get(language, 1)


class Budget:
    """The parse cost one response may still spend; `check` spends it, a block over its limits is "too_long"."""

    def __init__(self) -> None:
        self.left = MAX_RESPONSE_COST
        self.crashed = False  # after one worker crash the response's remaining blocks are not tried

    def check(self, code: str, language: str) -> Verdict:
        """The verdict on `code` (non-empty, already tidied) in `language`."""
        data = utf8(code)
        spent = cost(data, language)
        if spent > min(MAX_BLOCK_COST, self.left):
            return Verdict("too_long")
        if self.crashed:
            return Verdict("parse_failed")
        self.left -= spent
        if language == "python":
            tree = python_tree(code)
            return Verdict("syntax_error") if tree is None else Verdict("ok", has_real_python(tree))
        outcome = _ts_client.check(data + b"\n", language)  # a last `#include <x>` needs its line end
        self.crashed = outcome == "parse_failed"
        return Verdict("ok", outcome == "code") if outcome in ("code", "data") else Verdict(outcome)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: ast.parse allocates many nodes and GC passes triple its time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_python(code: str, mode: str = "exec") -> ast.AST:
    """`ast.parse(code, mode=mode)`, one at a time in the process: Python 3.11's AST conversion keeps its
    recursion depth in shared state, so two threads parsing at once can raise ``SystemError: AST constructor
    recursion depth mismatch``. Raises what `ast.parse` raises."""
    with _AST_LOCK, warnings.catch_warnings(), _gc_paused():
        warnings.simplefilter("ignore")  # '\d' in a string warns; under -W error that is a SyntaxError
        return ast.parse(code, mode=mode)


def python_tree(code: str) -> ast.Module | None:
    """`ast.parse(code)`, or None if it raises (the caller bounds the size)."""
    try:
        return parse_python(code)  # type: ignore[return-value]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


_PY_DATA = (ast.Constant, ast.Name, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.UnaryOp, ast.USub, ast.UAdd, ast.Load)


def has_real_python(tree: ast.Module) -> bool:
    """False if the module is only bare data such as `hello`, `42`, `"text"` or `[0, 1]`."""
    return any(
        not (isinstance(stmt, ast.Expr) and all(isinstance(node, _PY_DATA) for node in ast.walk(stmt.value)))
        for stmt in tree.body
    )
