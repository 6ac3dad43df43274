"""Pull the program out of an LLM response and check that it parses.

Fences are found with the tree-sitter markdown grammar. Validity is decided by `ast.parse` for Python
(the paper's check) and by the tree-sitter grammar of the language (no ERROR/MISSING node) otherwise.
"""

from __future__ import annotations

import ast
import gc
import io
import re
import textwrap
import threading
import time
import tokenize
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydantic import BaseModel
from tree_sitter import Node, Parser
from tree_sitter_language_pack import get_parser

__all__ = ["SUPPORTED_LANGUAGES", "Extraction", "canonical_language", "extract_code", "normalize_code"]

SUPPORTED_LANGUAGES: tuple[str, ...] = ("python", "c", "cpp", "java", "javascript", "typescript", "go", "rust")

_ALIASES: dict[str, str] = {
    alias: language
    for language, aliases in {
        "python": ("python", "py", "python3", "py3"),
        "c": ("c",),
        "cpp": ("cpp", "c++", "cxx", "cc", "h", "hpp", "hxx", "hh"),
        "java": ("java",),
        "javascript": ("javascript", "js", "node", "nodejs", "jsx", "mjs", "cjs"),
        "typescript": ("typescript", "ts", "tsx", "mts", "cts"),
        "go": ("go", "golang"),
        "rust": ("rust", "rs"),
    }.items()
    for alias in aliases
}
# tree-sitter grammars per language (Python uses ast); a program is valid if any of them parses it.
_GRAMMARS: dict[str, tuple[str, ...]] = {
    "c": ("c",),
    "cpp": ("cpp",),
    "java": ("java",),
    "javascript": ("javascript",),
    "typescript": ("typescript", "tsx"),
    "go": ("go",),
    "rust": ("rust",),
}
_MODES = ("strict", "lenient")

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
# Seconds of syntax checking per call, so that a response of 100k broken blocks or megabytes of junk
# stays cheap; real programs parse at ~0.2-0.8 us/byte, well inside it. Candidates left when it runs
# out count as not parsing. tree-sitter cannot be stopped in its end-of-input error recovery, which
# is super-linear on some contrived token soups (cpp "a<a." * 1000, 4 kB: ~1.5 s); real code is fine.
_PARSE_BUDGET_S = 0.25
_PARSE_BUDGET_S_PER_BYTE = 1e-6
_READ_CHUNK = 1 << 16
# tree-sitter-markdown segfaults past ~254 nested containers (a uint8 counter). No line may open more
# containers than twice its prefix of markers/indentation, so prefixes are cut to 80 bytes in the copy
# the markdown parser sees (same length, so byte offsets still index the original text).
_MAX_PREFIX = 80
_DEEP_PREFIX = re.compile(rb"^[ \t>*+\-.)0-9]{%d,}" % (_MAX_PREFIX + 1), re.MULTILINE)
_BLANK_RUN = re.compile(rb"\n{8,}")
_MD_CONTAINERS = frozenset({"document", "section", "list", "list_item", "block_quote"})
_INFO_SEPARATORS = re.compile(r"[\s{}:,;]+")
# Leaf-like nodes kept verbatim by normalize_code (their inner whitespace is data, not layout).
_STRING_NODE = re.compile(r"(string|char|character|rune)(_literal)?$")
# Names, literals and brackets: a program made only of these is a word or program output, not code.
_DATA_NODE = re.compile(
    r"identifier|literal|string|number|integer|float|true|false|null|nil|none|undefined"
    r"|array|list|tuple|unary|parenthesized"
)
_PY_DATA = (ast.Constant, ast.Name, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.UnaryOp, ast.USub, ast.UAdd, ast.Load)
_PY_TRIVIA = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER})

_local = threading.local()
# Warning filters and the GC switch are process-wide, so one ast.parse at a time (it holds the GIL anyway).
_AST_LOCK = threading.Lock()


class Extraction(BaseModel):
    """The program extracted from a response and whether it is syntactically valid.

    `reason` is "ok" when valid, else one of: empty_response, no_code_block, multiple_code_blocks,
    unclosed_code_block, wrong_language, syntax_error, unknown_language.
    """

    code: str
    language: str | None
    valid: bool
    reason: str


@dataclass(frozen=True)
class _Block:
    """One fenced block: the first word of its info string ('' if none), its content, whether it closed."""

    tag: str
    code: str
    closed: bool

    @property
    def language(self) -> str | None:
        """Canonical language named by the tag ('main.py' and '{.python}' count), else None."""
        return next(filter(None, map(canonical_language, [self.tag, *reversed(self.tag.split("."))])), None)


def canonical_language(name: str | None) -> str | None:
    """Map an alias ('py', 'C++', 'golang', ...) to its canonical language name; None if unknown."""
    return _ALIASES.get(name.strip().lower()) if name else None


def extract_code(text: str, language: str | None = "python", mode: str = "lenient") -> Extraction:
    """Extract the program from an LLM response (`mode` 'strict' = the paper's RL rule, or 'lenient')."""
    target = canonical_language(language)
    if language is not None and target is None:
        raise ValueError(f"unsupported language {language!r}; supported: {', '.join(SUPPORTED_LANGUAGES)}")
    if mode not in _MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(_MODES)}")
    answer = _drop_reasoning(text.replace("\r\n", "\n").replace("\r", "\n"))
    if not answer.strip():
        return Extraction(code="", language=target, valid=False, reason="empty_response")
    data = _utf8(answer)
    blocks = _fenced_blocks(data)
    deadline = _deadline(len(data))
    if mode == "strict":
        return _strict(blocks, target, deadline)
    return _lenient(blocks, answer, target, deadline)


def normalize_code(code: str, language: str | None) -> str:
    """Canonical form for dedup: programs differing only in layout and comments map to the same string."""
    text = code.replace("\r\n", "\n").replace("\r", "\n")
    canonical = canonical_language(language)
    normal = None
    if canonical == "python":
        normal = _python_normal(text)
    elif canonical is not None:
        data = _utf8(text)
        normal = _tree_normal(data, canonical, _deadline(len(data)))
    return normal if normal is not None else " ".join(text.split())


def _strict(blocks: list[_Block], target: str | None, deadline: float) -> Extraction:
    """Exactly one closed fenced block whose content parses in the target (or tagged) language."""

    def fail(reason: str, language: str | None = target) -> Extraction:
        return Extraction(code="", language=language, valid=False, reason=reason)

    if not blocks:
        return fail("no_code_block")
    if len(blocks) > 1:
        return fail("multiple_code_blocks")
    block = blocks[0]
    if not block.closed:
        return fail("unclosed_code_block")
    if block.tag and block.language is None and target is None:
        return fail("unknown_language")
    if block.tag and target is not None and block.language != target:
        return fail("wrong_language")
    language = block.language or target or "python"
    if _syntax_tree(block.code, language, deadline) is not None:
        return Extraction(code=block.code, language=language, valid=True, reason="ok")
    if not block.tag and target is None:
        return fail("unknown_language")
    return fail("syntax_error", language)


def _lenient(blocks: list[_Block], answer: str, target: str | None, deadline: float) -> Extraction:
    """The last untagged or target-language block that parses; unfenced code if there are no fences."""
    if not blocks:
        return _unfenced(answer, target, deadline)
    eligible = [
        block
        for block in blocks
        if block.code and (not block.tag or (block.language is not None and target in (None, block.language)))
    ]
    failed = []
    for block in reversed(eligible):
        language = target or block.language or "python"
        tree = _syntax_tree(block.code, language, deadline)
        if tree is None:
            failed.append(block)
        elif block.tag or _has_real_code(tree):  # an untagged `42` or `YES` is program output, not code
            return Extraction(code=block.code, language=language, valid=True, reason="ok")
    if not failed:
        return Extraction(code="", language=target, valid=False, reason="no_code_block")
    last = failed[0]
    if target is None and not last.tag:
        return Extraction(code=last.code, language=None, valid=False, reason="unknown_language")
    return Extraction(code=last.code, language=target or last.language, valid=False, reason="syntax_error")


def _unfenced(answer: str, target: str | None, deadline: float) -> Extraction:
    """The whole answer, if it parses and holds real code (not a bare word, number or sentence)."""
    code = _tidy(answer)
    language = target or "python"
    tree = _syntax_tree(code, language, deadline)
    if tree is not None and _has_real_code(tree):
        return Extraction(code=code, language=language, valid=True, reason="ok")
    return Extraction(code="", language=target, valid=False, reason="no_code_block")


def _drop_reasoning(text: str) -> str:
    """Remove <think>…</think>; text before a stray leading </think> and an unclosed leading <think> go too."""
    opener, closer = text.find(_THINK_OPEN), text.find(_THINK_CLOSE)
    if closer != -1 and (opener == -1 or closer < opener):
        text = text[closer + len(_THINK_CLOSE) :]
    kept, pos = [], 0
    while (start := text.find(_THINK_OPEN, pos)) != -1 and (end := text.find(_THINK_CLOSE, start)) != -1:
        kept.append(text[pos:start])
        pos = end + len(_THINK_CLOSE)
    answer = "".join(kept) + text[pos:]
    return "" if answer.lstrip().startswith(_THINK_OPEN) else answer


def _utf8(text: str) -> bytes:
    """UTF-8 bytes; lone surrogates (never valid in a program) become '?'."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _tidy(code: str) -> str:
    """Dedent (fences indented in lists or by the model) and drop surrounding blank lines."""
    return textwrap.dedent(code).lstrip("\n").rstrip()


def _deadline(size: int) -> float:
    """When syntax checking for a text of `size` bytes must stop (see _PARSE_BUDGET_S)."""
    return time.monotonic() + _PARSE_BUDGET_S + size * _PARSE_BUDGET_S_PER_BYTE


def _parser(grammar: str) -> Parser:
    """A cached parser for this thread (creating one is not free; one parser must not run twice at once)."""
    cache: dict[str, Parser] = _local.__dict__.setdefault("parsers", {})
    if grammar not in cache:
        cache[grammar] = get_parser(grammar)  # type: ignore[arg-type]
    return cache[grammar]


def _fenced_blocks(data: bytes) -> list[_Block]:
    """All fenced code blocks in document order, including ones inside list items and block quotes."""
    if b"```" not in data and b"~~~" not in data:
        return []
    # The parser sees a copy with deep container prefixes defused and a final newline (a closing fence
    # at the very end of the text is otherwise read as content); offsets still index `data`.
    shadow = _DEEP_PREFIX.sub(lambda m: m[0][:_MAX_PREFIX] + b"x" * (len(m[0]) - _MAX_PREFIX), data)
    # Each line costs the markdown parser ~3 us: long runs of blank lines become one line of spaces.
    shadow = _BLANK_RUN.sub(lambda m: b"\n" + b" " * (len(m[0]) - 2) + b"\n", shadow) + b"\n"
    blocks, stack = [], [_parser("markdown").parse(shadow).root_node]
    while stack:
        node = stack.pop()
        if node.type == "fenced_code_block":
            blocks.append(_block(node, data))
        elif node.type in _MD_CONTAINERS:
            stack.extend(reversed(node.children))
    return blocks


def _block(node: Node, data: bytes) -> _Block:
    """Read one fenced_code_block node; container prefixes (list indentation, '> ') are cut from its lines."""
    tag, code, delimiters = "", "", 0
    for child in node.children:
        if child.type == "info_string":
            info = data[child.start_byte : child.end_byte].decode("utf-8", "replace")
            tag = _INFO_SEPARATORS.split(info.lstrip("{. \t"))[0].lower()  # '{.python}', 'py title=a.py'
        elif child.type == "fenced_code_block_delimiter":
            delimiters += 1
        elif child.type == "code_fence_content":
            nested = node.parent is not None and node.parent.type in ("list_item", "block_quote")
            code = _tidy(_without_continuations(child, data, nested))
    return _Block(tag=tag, code=code, closed=delimiters == 2)


def _without_continuations(content: Node, data: bytes, nested: bool) -> str:
    """The content's text minus its block_continuation ranges (empty unless the fence sits in a container)."""
    pieces, pos = [], content.start_byte
    if nested:
        for child in content.children:
            if child.type == "block_continuation":
                pieces.append(data[pos : child.start_byte])
                pos = child.end_byte
    pieces.append(data[pos : content.end_byte])
    return b"".join(pieces).decode("utf-8", "replace")


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: ast.parse allocates millions of nodes and GC passes triple its time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _syntax_tree(code: str, language: str, deadline: float) -> ast.Module | Node | None:
    """The parse tree if `code` is a non-empty valid program in `language`, else None."""
    if not code.strip() or time.monotonic() > deadline:
        return None
    if language == "python":
        try:
            with _AST_LOCK, warnings.catch_warnings(), _gc_paused():
                warnings.simplefilter("ignore")  # '\d' in a string warns; under -W error that is a SyntaxError
                return ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
    return _tree_sitter_parse(_utf8(code), language, deadline)


def _tree_sitter_parse(data: bytes, language: str, deadline: float) -> Node | None:
    """Root of the first error-free tree among the language's grammars; None if none (or out of time)."""
    view = memoryview(data)
    for grammar in _GRAMMARS[language]:
        parser = _parser(grammar)
        try:
            tree = parser.parse(
                lambda offset, _point: view[offset : offset + _READ_CHUNK],
                # Halt once every GLR branch has hit an error (the tree is sure to hold one) or time is up.
                progress_callback=lambda _offset, has_error: has_error or time.monotonic() > deadline,
            )
        except ValueError:  # halted: the parser must be reset before its next parse
            parser.reset()
            continue
        if not tree.root_node.has_error:
            return tree.root_node
    return None


def _has_real_code(tree: ast.Module | Node) -> bool:
    """False if the program is only comments and bare data such as `hello`, `42`, `"text"` or `[0, 1]`:
    that is prose or program output, not code."""
    if isinstance(tree, ast.Module):
        return any(
            not (isinstance(stmt, ast.Expr) and all(isinstance(node, _PY_DATA) for node in ast.walk(stmt.value)))
            for stmt in tree.body
        )
    return any(
        "comment" not in node.type and not (node.type == "expression_statement" and _is_data(node))
        for node in tree.named_children
    )


def _is_data(node: Node) -> bool:
    """True if below `node` there are only names, literals and brackets around them."""
    stack = list(node.named_children)
    while stack:
        child = stack.pop()
        if not _DATA_NODE.search(child.type):
            return False
        stack.extend(child.named_children)
    return True


def _python_normal(code: str) -> str | None:
    """One line per logical line, tokens joined by single spaces, indented by block depth; None if untokenisable."""
    lines: list[str] = []
    line: list[str] = []
    depth = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.ERRORTOKEN:
                return None
            if token.type == tokenize.INDENT:
                depth += 1
            elif token.type == tokenize.DEDENT:
                depth -= 1
            elif token.type == tokenize.NEWLINE:
                lines.append("    " * depth + " ".join(line))
                line = []
            elif token.type not in _PY_TRIVIA:
                line.append(token.string)
    except (tokenize.TokenError, SyntaxError):
        return None
    return "\n".join(lines)


def _tree_normal(data: bytes, language: str, deadline: float) -> str | None:
    """Leaf tokens (comments dropped, string literals verbatim) joined by single spaces; named nodes are
    bracketed as `(type ... )` so that statement grouping counts (in JS and Go `return` + newline + `x`
    is not `return x`). None if it won't parse."""
    root = _tree_sitter_parse(data, language, deadline)
    if root is None:
        return None
    tokens: list[str] = []
    stack: list[Node | str] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            tokens.append(item)
        elif "comment" in item.type:
            continue
        elif item.child_count and not _STRING_NODE.search(item.type):
            if item.is_named:
                tokens.append("(" + item.type)
                stack.append(")")
            stack.extend(reversed(item.children))
        else:
            text = data[item.start_byte : item.end_byte].decode("utf-8", "replace")
            token = text if _STRING_NODE.search(item.type) else " ".join(text.split())
            if token:
                tokens.append(token)
    return " ".join(tokens)
