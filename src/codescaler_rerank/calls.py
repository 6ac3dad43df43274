"""Call-style tests: the sandbox calls the entry point, the parent process judges the results.

`calls_from_asserts` turns HumanEval/MBPP-style assertions (``assert candidate(ARGS) == EXPECTED``,
``assert EXPECTED == f(ARGS)``, ``assert candidate(ARGS) is True``, ``assert candidate(ARGS)``,
``assert not candidate(ARGS)``, ``assert abs(candidate(ARGS) - EXPECTED) < TOL``) whose arguments and
expected values are literals into `Call`s. The sandbox gets only the arguments; each result comes
back as type-tagged JSON (`decode_value`) and is judged here (`Call.judge`), type-strictly: a result
must be plain data of exactly the expected types (``True`` is not ``1``, an ``int`` subclass or an
object whose ``__eq__`` always returns True is never a match). Floats match within a tolerance as
in EvalPlus (relative and absolute 1e-6); an ``int`` where a ``float`` is expected matches by
value, the reverse does not.
"""

from __future__ import annotations

import ast
import math
from typing import Any, Literal, NamedTuple

from ._syntax import parse_python

Check = Literal["equal", "close", "truthy", "falsy"]
FLOAT_TOLERANCE = 1e-6  # relative and absolute, for "equal" on floats (EvalPlus uses atol 1e-6)
_TAGS = {"tuple": tuple, "set": set, "frozenset": frozenset}


class Call(NamedTuple):
    """One call of the entry point and what its result must be."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    check: Check = "equal"
    expected: Any = None  # "equal": the value; "close": the value, within `tolerance`
    tolerance: float = 0.0  # "close": |result - expected| must be below it
    inclusive: bool = False  # "close": ``<=`` instead of ``<``
    source: str = ""  # the assertion it came from, for reasons

    def payload(self) -> str:
        """What the sandbox gets for this call: ``repr((args, kwargs))`` (parsed there with literal_eval)."""
        return repr((self.args, self.kwargs))

    def judge(self, result: Any) -> bool:
        """Whether `result` (plain data, as `decode_value` returns it) satisfies this call."""
        if self.check == "truthy":
            return bool(result)
        if self.check == "falsy":
            return not result
        if self.check == "close":
            if type(result) not in (int, float):
                return False
            distance = abs(result - self.expected)
            return distance <= self.tolerance if self.inclusive else distance < self.tolerance
        return same_value(result, self.expected)

    def describe(self) -> str:
        return self.source or f"call with {self.payload()}"


class CallTests(NamedTuple):
    """The assertions of a test source that became calls, and the rest (None: nothing left)."""

    calls: list[Call]
    residual: str | None


def same_value(actual: Any, expected: Any) -> bool:
    """Type-strict equality of plain data (floats within `FLOAT_TOLERANCE`, int accepted for float)."""
    if type(expected) is float:
        if type(actual) is int:
            actual = float(actual)
        if type(actual) is not float:
            return False
        if math.isnan(expected) or math.isnan(actual):
            return math.isnan(expected) and math.isnan(actual)
        return math.isclose(actual, expected, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    if type(actual) is not type(expected):
        return False
    if type(expected) in (list, tuple):
        return len(actual) == len(expected) and all(map(same_value, actual, expected))
    if type(expected) is dict:
        return actual.keys() == expected.keys() and all(same_value(actual[k], v) for k, v in expected.items())
    if type(expected) is complex:
        return same_value(actual.real, expected.real) and same_value(actual.imag, expected.imag)
    return bool(actual == expected)  # plain scalars, sets (their elements are hashable plain data)


def decode_value(data: Any) -> Any:
    """Plain data from the sandbox's type-tagged JSON (see the child program's ``encode``).

    JSON null/bool/int/float/str/list are themselves; one-key objects tag the rest: ``{"tuple": [..]}``,
    ``{"set": [..]}``, ``{"frozenset": [..]}``, ``{"dict": [[k, v], ..]}``, ``{"bytes": hex}``,
    ``{"complex": [re, im]}``. Anything else raises ValueError (a malformed report).
    """
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode_value(item) for item in data]
    if type(data) is not dict or len(data) != 1:
        raise ValueError("malformed value")
    (tag, body), = data.items()
    if tag in _TAGS and type(body) is list:
        try:
            return _TAGS[tag](decode_value(item) for item in body)
        except TypeError as exc:  # unhashable set element
            raise ValueError("malformed value") from exc
    if tag == "dict" and type(body) is list and all(type(p) is list and len(p) == 2 for p in body):
        try:
            return {decode_value(k): decode_value(v) for k, v in body}
        except TypeError as exc:
            raise ValueError("malformed value") from exc
    if tag == "bytes" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "complex" and type(body) is list and len(body) == 2 and all(type(x) is float for x in body):
        return complex(*body)
    raise ValueError("malformed value")


def calls_from_asserts(tests: str, entry_point: str) -> CallTests:
    """The calls that the assertions of `tests` make on `entry_point`, and what remains of `tests`.

    Converted: assertions directly in the module calling `entry_point`, and directly in the body of a
    function ``check(candidate)`` that the module calls once as ``check(entry_point)`` (HumanEval's
    layout). `residual` is None when nothing else needs running (only such assertions, ``assert
    True``, docstrings, imports, ``pass`` and literal assignments such as HumanEval's ``METADATA``);
    otherwise it is `tests` with the converted assertions replaced by ``pass``, to be run as before.
    A `SyntaxError` in `tests` propagates.
    """
    tree = parse_python(tests)
    checkers = _checker_names(tree, entry_point)
    calls: list[Call] = []
    clean = True
    for index, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.FunctionDef) and stmt.name in checkers:
            alias = stmt.args.args[0].arg
            stmt.body = [_convert(s, {alias}, calls) for s in stmt.body]
            clean &= all(_inert(s) for s in stmt.body) and not stmt.decorator_list
            continue
        converted = _convert(stmt, {entry_point}, calls)
        tree.body[index] = converted
        clean &= _inert(converted) or _is_checker_call(converted, checkers, entry_point)
    if clean:
        return CallTests(calls, None)
    return CallTests(calls, ast.unparse(tree) + "\n")


def guess_entry_point(tests: str) -> str | None:
    """The function `tests` checks: ``NAME`` of HumanEval's closing ``check(NAME)``, else the one name
    that every module-level assertion calls (MBPP); None when there is no such name or no parse."""
    try:
        tree = parse_python(tests)
    except SyntaxError:
        return None
    checked = {
        s.value.args[0].id for s in tree.body
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and isinstance(s.value.func, ast.Name)
        and len(s.value.args) == 1 and isinstance(s.value.args[0], ast.Name) and not s.value.keywords
        and any(isinstance(d, ast.FunctionDef) and d.name == s.value.func.id for d in tree.body)
    }
    if len(checked) == 1:
        return checked.pop()
    defined = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    defined |= {s.name for s in ast.walk(tree) if isinstance(s, (ast.FunctionDef, ast.ClassDef))}
    called = {
        n.func.id for stmt in tree.body if isinstance(stmt, ast.Assert) for n in ast.walk(stmt.test)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    } - defined - {"abs", "set", "sorted", "len", "isinstance", "round", "list", "tuple"}
    return called.pop() if len(called) == 1 else None


def _checker_names(tree: ast.Module, entry_point: str) -> set[str]:
    """Names of one-parameter module functions that the module calls exactly once, on `entry_point`."""
    defined = {
        s.name for s in tree.body
        if isinstance(s, ast.FunctionDef) and len(s.args.args) == 1 and not s.args.vararg
        and not s.args.kwonlyargs and not s.args.kwarg and not s.args.defaults
    }
    called = [s.value.func.id for s in tree.body if _is_checker_call(s, defined, entry_point)]
    mentions = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in defined]
    return {name for name in defined if called.count(name) == 1 and mentions.count(name) == 1}


def _is_checker_call(stmt: ast.stmt, names: set[str], entry_point: str) -> bool:
    return (
        isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Name)
        and stmt.value.func.id in names and not stmt.value.keywords and len(stmt.value.args) == 1
        and isinstance(stmt.value.args[0], ast.Name) and stmt.value.args[0].id == entry_point
    )


def _inert(stmt: ast.stmt) -> bool:
    """A statement whose only effect is irrelevant once its assertions are calls."""
    if isinstance(stmt, (ast.Pass, ast.Import, ast.ImportFrom)):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Constant, ast.Name)):
        return True  # a docstring, or HumanEval/129's bare `print`
    if isinstance(stmt, ast.Assert):
        return _literal(stmt.test) is not _NOT_LITERAL and bool(_literal(stmt.test))
    if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
        return _literal(stmt.value) is not _NOT_LITERAL
    return False


def _convert(stmt: ast.stmt, names: set[str], calls: list[Call]) -> ast.stmt:
    """`stmt` itself, or ``pass`` after appending its Call to `calls` when it converts."""
    if not isinstance(stmt, ast.Assert):
        return stmt
    call = _as_call(stmt.test, names)
    if call is None:
        return stmt
    calls.append(call._replace(source=ast.unparse(stmt)))
    return ast.copy_location(ast.Pass(), stmt)


def _as_call(test: ast.expr, names: set[str]) -> Call | None:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        parts = _call_args(test.operand, names)
        return None if parts is None else Call(*parts, check="falsy")
    parts = _call_args(test, names)
    if parts is not None:
        return Call(*parts, check="truthy")
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    left, op, right = test.left, test.ops[0], test.comparators[0]
    if isinstance(op, (ast.Eq, ast.Is)):
        if isinstance(op, ast.Is) and not (isinstance(right, ast.Constant) and right.value in (True, False, None)):
            return None
        for call_side, value_side in ((left, right), (right, left)):
            parts, expected = _call_args(call_side, names), _literal(value_side)
            if parts is not None and expected is not _NOT_LITERAL:
                return Call(*parts, check="equal", expected=expected)
        return None
    if isinstance(op, (ast.Lt, ast.LtE)):
        return _closeness(left, right, names, isinstance(op, ast.LtE))
    return None


def _closeness(left: ast.expr, right: ast.expr, names: set[str], inclusive: bool) -> Call | None:
    """``abs(CALL - EXPECTED) < TOL`` (or ``abs(EXPECTED - CALL)``)."""
    tolerance = _literal(right)
    if not (isinstance(left, ast.Call) and isinstance(left.func, ast.Name) and left.func.id == "abs"
            and len(left.args) == 1 and not left.keywords and isinstance(left.args[0], ast.BinOp)
            and isinstance(left.args[0].op, ast.Sub) and type(tolerance) in (int, float)):
        return None
    diff = left.args[0]
    for call_side, value_side in ((diff.left, diff.right), (diff.right, diff.left)):
        parts, expected = _call_args(call_side, names), _literal(value_side)
        if parts is not None and type(expected) in (int, float):
            return Call(*parts, check="close", expected=expected, tolerance=float(tolerance), inclusive=inclusive)
    return None


def _call_args(node: ast.expr, names: set[str]) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """The literal arguments of ``NAME(...)`` for a NAME in `names`, or None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names):
        return None
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        return None
    args = tuple(_literal(a) for a in node.args)
    kwargs = {k.arg: _literal(k.value) for k in node.keywords if k.arg is not None}
    if any(v is _NOT_LITERAL for v in (*args, *kwargs.values())):
        return None
    return args, kwargs


_NOT_LITERAL = object()
_MAX_SIZE = 100_000  # folded constants: at most this many elements or characters, ints this many bits
_ARITHMETIC = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a ** b,
}


def _literal(node: ast.expr) -> Any:
    """The value of a literal expression, else `_NOT_LITERAL`.

    What `ast.literal_eval` reads, plus arithmetic on literals (``3 * 19``, ``2.0 / 3.0``, ``'ab' + 'c'``,
    ``1 ** 0``) within size bounds, as HumanEval writes some arguments and expected values.
    """
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    try:
        return _fold(node)
    except (ValueError, TypeError, ArithmeticError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _fold(node: ast.expr) -> Any:
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _fold(node.left), _fold(node.right)
        if type(left) is bool or type(right) is bool:
            raise TypeError("no arithmetic on bools")
        if isinstance(node.op, ast.Pow) and (type(right) is not int or abs(right) > 256 or abs(left) > 1 << 64):
            raise ValueError("power too large")
        if isinstance(node.op, ast.Mult) and isinstance(left, (str, list, tuple)) | isinstance(right, (str, list, tuple)):
            sequence, count = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
            if type(count) is not int or len(sequence) * count > _MAX_SIZE:
                raise ValueError("sequence too long")
        value = _ARITHMETIC[type(node.op)](left, right)
        if (type(value) is int and value.bit_length() > _MAX_SIZE) or (
                isinstance(value, (str, list, tuple)) and len(value) > _MAX_SIZE):
            raise ValueError("value too large")
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _fold(node.operand)
        if type(value) not in (int, float, complex):
            raise TypeError("unary sign on a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_fold(item) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    return ast.literal_eval(node)
