"""Entry-point aware, dependency-aware assembly of a Python answer from the blocks of a response.

`detect_entry_point(prompt)` names the function or class a prompt asks for (a `def`/`class` in its
code, "write a function `median(xs)`", or the function its example asserts call). `assemble(blocks,
entry_point)` picks the block that answers (the last one defining the entry point with a real body)
and keeps, from all blocks, the entry point's definition plus the imports, functions, classes and
constants it reaches, in source order. Example calls, prints, asserts, `if __name__ == "__main__":`
blocks and test code are dropped because nothing the entry point needs refers to them. The idea is
EvalPlus's sanitizer (keep the definitions reachable from the entry point); this one works across
blocks, resolves free names only, and never keeps a statement that calls the entry point.

Limits are counted, not timed: blocks past `MAX_TOTAL_BYTES` of Python in all are not read.
"""

from __future__ import annotations

import ast
import builtins
import functools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ._syntax import python_tree

__all__ = ["assemble", "code_regions", "detect_entry_point"]

MAX_TOTAL_BYTES = 64 << 10
_MAX_PROMPT_CHARS = 200_000

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_WORD = re.compile(_IDENT)
# A top-level `def name(` / `class name` in the prompt's code (HumanEval, MBPP-typed, starter code).
_PROMPT_DEF = re.compile(rf"^(?:async\s+)?def\s+({_IDENT})\s*\(|^class\s+({_IDENT})\b", re.MULTILINE)
# "a function `median(xs)`", "function called fib(n)", "a method named `solve`", "def f(".
_PROSE_DEF = re.compile(
    rf"\b(?:function|method|def|class)\s+(?:(?:called|named)\s+)?`*({_IDENT})`*\s*(\(|`)", re.IGNORECASE
)
# An example the prompt gives: `assert name(...)` (MBPP's test list).
_ASSERT_CALL = re.compile(rf"\bassert\s+(?:not\s+)?\(?\s*({_IDENT})\s*\(")
# A function with a body in another language's starter code (the last one is the one to write):
# `int twoSum(vector<int>& nums) {`, `public int[] f(int[] a) {`, `func f(n int) int {`,
# `pub fn two_sum(v: Vec<i32>) -> i32 {`, `function f(a: number): number {`, `var twoSum = function(nums) {`.
_STARTER_DEF = re.compile(
    rf"^[ \t]*(?:[\w<>\[\]:*&,. \t]*?[\s*&])?({_IDENT})\s*\([^(){{}};]*\)[^;{{}}\n]*\{{"
    rf"|^[ \t]*(?:var|let|const)\s+({_IDENT})\s*=\s*(?:async\s+)?(?:function\b|\([^()]*\)\s*=>)",
    re.MULTILINE,
)
_NOT_STARTER = frozenset(
    {"if", "for", "while", "switch", "catch", "return", "main", "function", "func", "fn", "sizeof", "synchronized"}
)  # fmt: skip
_BUILTINS = frozenset(dir(builtins))
_NOT_ENTRY = _BUILTINS | {"math"}
# A line that can start a top-level Python statement worth keeping (prose rarely starts like this).
_CODE_START = re.compile(rf"(?:(?:async\s+)?def|class|import|from|@)\b|{_IDENT}(?:\.{_IDENT})*\s*(?::[^=\n]*)?=[^=]")
_CODE_CONTINUATION = ("#", ")", "]", "}", " ", "\t")
_MAX_TRIMS = 8  # trailing lines dropped from a region, one at a time, before it is given up

_DEFINITION = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_IMPORT = (ast.Import, ast.ImportFrom)


def detect_entry_point(prompt: str, language: str | None = "python") -> str | None:
    """The function (or class) the prompt asks for, or None if it names none. For a language other than
    Python, the last function with a body in the prompt's starter code comes first (`main` never counts)."""
    text = prompt[:_MAX_PROMPT_CHARS]
    if language not in (None, "python"):
        starters = [next(filter(None, m.groups())) for m in _STARTER_DEF.finditer(text)]
        starters = [name for name in starters if name not in _NOT_STARTER]
        if starters:
            return starters[-1]
    defined = [next(filter(None, match.groups())) for match in _PROMPT_DEF.finditer(text)]
    if defined:
        return defined[-1]  # HumanEval defines helpers first and the function to write last
    for pattern in (_PROSE_DEF, _ASSERT_CALL):
        for match in pattern.finditer(text):
            if match[1] not in _NOT_ENTRY:
                return match[1]
    return None


def code_regions(text: str) -> list[str]:
    """The runs of Python in unfenced text (prose around code, code inside reasoning), each valid.

    A run starts at a line such as `def`, `class`, `import` or `NAME = ...` and goes on over blank,
    indented and comment lines, less its trailing blank and comment lines; up to `_MAX_TRIMS` more
    trailing lines are dropped until it parses. At most
    `MAX_TOTAL_BYTES` of parsing in all. A run that never parses is retried from its next line."""
    lines, regions, left, i = text.split("\n"), [], MAX_TOTAL_BYTES, 0
    while i < len(lines) and left > 0:
        if not _CODE_START.match(lines[i]):
            i += 1
            continue
        end = i + 1
        while end < len(lines) and (
            not lines[end].strip() or lines[end].startswith(_CODE_CONTINUATION) or _CODE_START.match(lines[end])
        ):
            end += 1
        last = end  # without trailing blank and comment lines ("# Test it:" before the example calls)
        while last > i + 1 and (not lines[last - 1].strip() or lines[last - 1].lstrip().startswith("#")):
            last -= 1
        found = False
        for stop in range(last, max(i, last - _MAX_TRIMS), -1):
            code = "\n".join(lines[i:stop]).rstrip()
            left -= len(code)
            if left < 0:
                break
            if found := python_tree(code) is not None:
                regions.append(code)
                break
        i = end if found else i + 1
    return regions


@dataclass(eq=False)
class _Statement:
    """One top-level statement of one block: where it is, what it binds and (`reads`) which free names
    it uses, found only when asked: most statements never are."""

    block: int
    index: int
    node: ast.stmt
    lines: list[str]  # the block's lines
    binds: frozenset[str]
    kind: str  # "future", "setup" (kept from the answer block), "import", "definition", "constant", "other"
    # ("constant": an assignment at the top level; one that does I/O never provides a name)
    stub: bool = False  # a definition whose body is only `pass`, `...` or a docstring

    @functools.cached_property
    def source(self) -> str:
        node = self.node
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        return "\n".join(self.lines[start - 1 : node.end_lineno]).rstrip()

    @functools.cached_property
    def _words(self) -> frozenset[str] | None:
        """The identifiers in the source text; None unless it is ASCII (the parser NFKC-normalises names)."""
        return frozenset(_WORD.findall(self.source)) if self.source.isascii() else None

    @functools.cached_property
    def does_io(self) -> bool:
        """True for statements such as `x = input()` or `r = print(...)`: program I/O, not a constant."""
        if self._words is not None and "print" not in self._words and "input" not in self._words:
            return False
        return _calls_print_or_input(self.node)

    def reads(self, names: Collection[str]) -> set[str]:
        """The names among `names` that the statement reads free. The walk of its tree (`_free_names`)
        is skipped when none of them occurs in its text."""
        maybe = set(names) if self._words is None else self._words.intersection(names)
        return maybe & _free_names(self.node) if maybe else maybe


def assemble(blocks: Sequence[str], entry_point: str | None) -> str | None:
    """The program answering for `entry_point`, built from the Python `blocks` of one response in order;
    None if no block defines it (or there is no entry point)."""
    if not entry_point:
        return None
    kept, left = [], MAX_TOTAL_BYTES
    for code in blocks:
        left -= len(code.encode("utf-8", "replace"))
        if left < 0:
            break
        kept.append(code)
    pool = _Pool(kept)
    answer = pool.answer_block(entry_point)
    if answer is None:
        return None
    chosen = _closure(pool, answer, entry_point)
    order = ("future", "import")
    ordered = sorted(chosen, key=lambda s: (order.index(s.kind) if s.kind in order else 2, s.block, s.index))
    if ordered == pool.statements(answer):  # the whole answer block, in order: as written (it parses)
        return kept[answer]
    code = "\n\n".join(statement.source for statement in ordered)
    return code if python_tree(code) is not None else None


class _Pool:
    """The statements of a response's blocks, each block parsed when first needed: a block is read only
    if its text could define the entry point or bind a name the answer needs."""

    def __init__(self, blocks: list[str]) -> None:
        self.blocks = blocks
        self._parsed: dict[int, list[_Statement]] = {}
        self._binders: dict[int, dict[str, list[_Statement]]] = {}
        self._words: dict[int, frozenset[str]] = {}

    def statements(self, block: int) -> list[_Statement]:
        if block not in self._parsed:
            self._parsed[block] = _statements(block, self.blocks[block])
            binders = self._binders[block] = {}
            for statement in self._parsed[block]:
                for name in statement.binds:
                    binders.setdefault(name, []).append(statement)
        return self._parsed[block]

    def binders(self, block: int, name: str) -> list[_Statement]:
        """The block's statements that bind `name`, in order."""
        self.statements(block)
        return self._binders[block].get(name, [])

    def words(self, block: int) -> frozenset[str]:
        """The identifiers in the block's text, a superset of the names it binds (for non-ASCII text, the
        names its statements bind: the parser NFKC-normalises identifiers)."""
        if block not in self._words:
            code = self.blocks[block]
            if code.isascii():
                self._words[block] = frozenset(_WORD.findall(code))
            else:
                self._words[block] = frozenset(name for s in self.statements(block) for name in s.binds)
        return self._words[block]

    def answer_block(self, entry_point: str) -> int | None:
        """The last block defining `entry_point` with a real body; else the last defining it at all.
        Blocks are read from the last one back, only those whose text could define it."""
        definition = re.compile(rf"\b(?:def|class)[\s\\]+{re.escape(entry_point)}\b")
        stub_only = None
        for i in range(len(self.blocks) - 1, -1, -1):
            if self.blocks[i].isascii() and not definition.search(self.blocks[i]):
                continue
            defining = [s for s in self.binders(i, entry_point) if s.kind == "definition"]
            if any(not s.stub for s in defining):
                return i
            if defining and stub_only is None:
                stub_only = i
        return stub_only

    def names_elsewhere(self, block: int) -> set[str]:
        """All that `block` binds and every name another block could bind (their identifiers), less the
        builtins: `len` or `print` in the answer is the builtin, whatever an example block rebinds."""
        names = set()
        for other in range(len(self.blocks)):
            if other != block:
                names |= self.words(other)
        return (names - _BUILTINS) | {name for statement in self.statements(block) for name in statement.binds}

    def provider(self, name: str, root: _Statement, entry_point: str) -> _Statement | None:
        """The statement that binds `name` for the answer: the answer block's last one before the root
        (else its first after it), else the first in the nearest other block, earlier blocks first.
        Statements other than definitions that run the entry point (examples, tests) or do I/O
        (`n = int(input())`) never count; a definition that runs it is mutual recursion, since the
        answer reaches it."""
        before = range(root.block - 1, -1, -1)
        after = range(root.block + 1, len(self.blocks))
        for block in (root.block, *before, *after):
            if block != root.block and (name in _BUILTINS or name not in self.words(block)):
                continue
            candidates = [
                s
                for s in self.binders(block, name)
                if s.kind != "other" and (s.kind == "definition" or not (s.does_io or s.reads((entry_point,))))
            ]
            if candidates and block == root.block:
                earlier = [s for s in candidates if s.index < root.index]
                return earlier[-1] if earlier else candidates[0]
            if candidates:
                return candidates[0]
        return None


def _closure(pool: _Pool, answer: int, entry_point: str) -> set[_Statement]:
    """The entry point's definition in the answer block, the block's other definitions that do not run
    the entry point (the answer's companions, such as HumanEval's `encode_cyclic` next to
    `decode_cyclic`, which the tests call), and every statement they reach by name."""
    statements = pool.statements(answer)
    root = next(s for s in reversed(statements) if entry_point in s.binds and s.kind == "definition")
    companions = {
        s
        for s in statements
        if s.kind == "definition" and not s.stub and entry_point not in s.binds and not s.reads((entry_point,))
    }
    chosen = {root} | companions | {s for s in statements if s.kind in ("future", "setup")}
    resolved = {entry_point} | {name for s in companions for name in s.binds}
    bound = pool.names_elsewhere(answer) - resolved  # only these names can have a provider
    pending = [name for s in (root, *companions) for name in s.reads(bound)]
    while pending:
        name = pending.pop()
        if name in resolved:
            continue
        resolved.add(name)
        provider = pool.provider(name, root, entry_point)
        if provider is not None and provider not in chosen:
            chosen.add(provider)
            pending.extend(provider.reads(bound))
    return chosen


def _statements(block: int, code: str) -> list[_Statement]:
    """The top-level statements of one block ([] if it does not parse)."""
    tree = python_tree(code)
    if tree is None:
        return []
    lines = code.split("\n")
    statements = []
    for index, node in enumerate(tree.body):
        kind, binds = _kind(node)
        statements.append(_Statement(block, index, node, lines, frozenset(binds), kind, _is_stub(node)))
    return statements


def _kind(node: ast.stmt) -> tuple[str, set[str]]:
    """What a top-level statement is and the names it binds."""
    if isinstance(node, ast.ImportFrom) and node.module == "__future__":
        return "future", set()
    if isinstance(node, _IMPORT):
        return "import", {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    if isinstance(node, _DEFINITION):
        return "definition", {node.name}
    if _is_recursion_limit(node):
        return "setup", set()
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
        targets = [node.target]
    names = {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
    if names:  # `x = input()` too: `_Statement.does_io` tells, when it is asked
        return "constant", names
    return "other", set()


def _free_names(node: ast.stmt) -> set[str]:
    """Names a statement reads that it does not bind itself (its parameters and locals are not free).
    One walk by hand (this is the hot loop of assembly; `ast.walk` costs twice as much)."""
    loaded, stored, declared = set(), set(), set()
    stack: list[ast.AST] = [node]
    while stack:
        child = stack.pop()
        kind = type(child)
        if kind is ast.Name:
            (loaded if type(child.ctx) is ast.Load else stored).add(child.id)  # type: ignore[attr-defined]
            continue
        if kind is ast.Constant:
            continue
        if kind is ast.arg:
            stored.add(child.arg)  # type: ignore[attr-defined]
        elif kind in _DEFINITION and child is not node:
            stored.add(child.name)  # type: ignore[attr-defined]
        elif kind is ast.Global:
            declared.update(child.names)  # type: ignore[attr-defined]
        for field in child._fields:
            value = getattr(child, field, None)
            if isinstance(value, list):
                stack.extend(item for item in value if isinstance(item, ast.AST))
            elif isinstance(value, ast.AST):
                stack.append(value)
    return (loaded | declared) - (stored - declared)


def _calls_print_or_input(node: ast.stmt) -> bool:
    """True for statements such as `x = input()` or `r = print(...)`: program I/O, not a constant."""
    return any(
        isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id in ("print", "input")
        for child in ast.walk(node)
    )


def _is_recursion_limit(node: ast.stmt) -> bool:
    """`sys.setrecursionlimit(...)`: setup the answer needs, kept from the answer block."""
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr == "setrecursionlimit"
    )


def _is_stub(node: ast.stmt) -> bool:
    """True for a function whose body is only `pass`, `...` or docstrings (a signature, not an answer)."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    return all(
        isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
        for stmt in node.body
    )
