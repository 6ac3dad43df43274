"""Pull the program out of an LLM response and check that it parses.

Three modes: `paper` is the released CodeScaler recipe's regex rule byte for byte (`_paper`); `strict` and
`lenient` find fences with the tree-sitter markdown grammar. Validity is decided by `ast.parse` for Python and
by the language's tree-sitter grammar (no ERROR/MISSING node) in a separate worker process otherwise
(`_syntax`, `_ts_client`). Every limit is counted (bytes, blocks, parse cost), never timed: the same response
gives the same Extraction on any machine at any load.
"""

from __future__ import annotations

import io
import re
import textwrap
import threading
import tokenize
from dataclasses import dataclass

from pydantic import BaseModel
from tree_sitter import Node, Parser
from tree_sitter_language_pack import get_parser

from . import _ts_client
from ._paper import paper_code
from ._syntax import MAX_BLOCK_COST, Budget, Verdict, cost, utf8
from .assembly import assemble, code_regions

__all__ = [
    "MAX_BLOCKS",
    "MAX_RESPONSE_BYTES",
    "MODES",
    "SUPPORTED_LANGUAGES",
    "VALID_REASONS",
    "Extraction",
    "canonical_language",
    "extract_code",
    "normalize_code",
]

SUPPORTED_LANGUAGES: tuple[str, ...] = ("python", "c", "cpp", "java", "javascript", "typescript", "go", "rust")
MODES: tuple[str, ...] = ("paper", "strict", "lenient")
# The reasons of valid extractions; every other reason means valid=False.
VALID_REASONS: tuple[str, ...] = ("ok", "code_in_reasoning")

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

# A longer response is "too_long" in every mode (16k generated tokens are ~64 kB). The markdown parse costs
# ~0.3-0.7 us per byte, linearly, and ~1.5 kB of tree per kB of text.
MAX_RESPONSE_BYTES = 1 << 20
# More fenced blocks than this: "too_long" in lenient mode (strict says multiple_code_blocks).
MAX_BLOCKS = 512

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_LEADING_THINK = re.compile(r"\s*<think>")
_LONE_THINK_CLOSE = re.compile(r"^[ \t]*(</think>)[ \t]*$", re.MULTILINE)
_MAX_REASONING_CUTS = 16
# tree-sitter-markdown segfaults past ~254 nested containers (a uint8 counter). No line may open more
# containers than twice its prefix of markers/indentation, so prefixes are cut to 80 bytes in the copy
# the markdown parser sees (same length, so byte offsets still index the original text).
_MAX_PREFIX = 80
_DEEP_PREFIX = re.compile(rb"^[ \t>*+\-.)0-9]{%d,}" % (_MAX_PREFIX + 1), re.MULTILINE)
_BLANK_RUN = re.compile(rb"\n{8,}")
_MD_CONTAINERS = frozenset({"document", "section", "list", "list_item", "block_quote"})
_FIRST_LINE = re.compile(r"((?:[ \t]*\n)*)([ \t]+)(?=\S)")
_STRAY_FENCE = re.compile(r"^ {0,3}(?:`{3,}|~{3,})", re.MULTILINE)
_INFO_SEPARATORS = re.compile(r"[\s{}:,;]+")
_PY_TRIVIA = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER})

_local = threading.local()


class Extraction(BaseModel):
    """The program extracted from a response and whether it is syntactically valid.

    `reason` is "ok" when valid, or "code_in_reasoning" (valid, flagged: in lenient mode, a response cut off
    inside an unclosed `<think>` gives the code found in that reasoning), else one of: empty_response,
    no_code_block, multiple_code_blocks, unclosed_code_block, wrong_language, syntax_error, unknown_language,
    too_long (a counted limit: MAX_RESPONSE_BYTES, MAX_BLOCKS, or a parse cost in `_syntax`), parse_failed
    (the parse worker crashed on hostile code).
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


def extract_code(
    text: str, language: str | None = "python", mode: str = "lenient", entry_point: str | None = None
) -> Extraction:
    """Extract the program from an LLM response; `mode` is 'paper' (the recipe's rule, Python only),
    'strict' or 'lenient' (see the README's table). In lenient extraction, `entry_point` (the function the
    prompt asks for, see `assembly.detect_entry_point`) picks the block defining it and assembles it with
    the helpers and imports it uses from every block (Python: `assembly.assemble`; the other languages:
    `_ts_assembly`, in the parse worker)."""
    target = canonical_language(language)
    if language is not None and target is None:
        raise ValueError(f"unsupported language {language!r}; supported: {', '.join(SUPPORTED_LANGUAGES)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "paper" and target not in (None, "python"):
        raise ValueError(f"mode 'paper' is the recipe's Python rule; got language {language!r}")
    if len(text) > MAX_RESPONSE_BYTES or len(utf8(text)) > MAX_RESPONSE_BYTES:
        return Extraction(code="", language="python" if mode == "paper" else target, valid=False, reason="too_long")
    if mode == "paper":
        code, reason = paper_code(text)
        return Extraction(code=code, language="python", valid=reason == "ok", reason=reason)
    answer, unfinished = _split_reasoning(text.replace("\r\n", "\n").replace("\r", "\n"))
    if not answer.strip():
        if mode == "lenient" and unfinished.strip():
            found = _lenient_answer(unfinished, target, entry_point)
            if found.valid:  # the reasoning was cut off before the answer: its code is all there is
                return found.model_copy(update={"reason": "code_in_reasoning"})
        return Extraction(code="", language=target, valid=False, reason="empty_response")
    if mode == "strict":
        return _strict(_fenced_blocks(utf8(answer)), target, Budget())
    return _lenient_answer(answer, target, entry_point)


def normalize_code(code: str, language: str | None) -> str:
    """Canonical form for dedup: programs differing only in layout and comments map to the same string.

    Code whose parse would cost more than one block may (see `_syntax`) is only whitespace-collapsed."""
    text = code.replace("\r\n", "\n").replace("\r", "\n")
    canonical = canonical_language(language)
    normal = None
    if canonical is not None and cost(data := utf8(text), canonical) <= MAX_BLOCK_COST:
        normal = _python_normal(text) if canonical == "python" else _ts_client.normal(data, canonical)
    return normal if normal is not None else " ".join(text.split())


def _lenient_answer(answer: str, target: str | None, entry_point: str | None) -> Extraction:
    """Lenient extraction from an answer without reasoning: with an entry point, the assembled answer
    (Python: `assembly.assemble` over the Python blocks, else over the code in the prose; other languages:
    `_assembled` over the fenced blocks); else `_lenient`."""
    blocks = [_cut_at_stray_fence(block) for block in _fenced_blocks(utf8(answer))]
    if not blocks:
        answer = _unindent_first_line(answer)
    if entry_point and target == "python" and len(blocks) <= MAX_BLOCKS:
        python = [b.code for b in blocks if b.code and (not b.tag or b.language == "python")]
        code = assemble(python, entry_point) if python else None
        if code is None:  # no block defines it: also the code in the prose (after a list item's fence, say)
            code = assemble(python + code_regions(_unindent_first_line(answer)), entry_point)
        if code is not None:
            return Extraction(code=code, language="python", valid=True, reason="ok")
    elif entry_point and target is not None and target != "python" and blocks and len(blocks) <= MAX_BLOCKS:
        code = _assembled(blocks, target, entry_point)
        if code is not None:
            return Extraction(code=code, language=target, valid=True, reason="ok")
    return _lenient(blocks, answer, target, Budget())


def _assembled(blocks: list[_Block], target: str, entry_point: str) -> str | None:
    """The worker's assembly over the untagged and target-language blocks; None (today's choice follows) if
    there is none, their parse would cost more than one block may (`_syntax.MAX_BLOCK_COST`), or it fails."""
    codes = [utf8(b.code) for b in blocks if b.code and (not b.tag or b.language == target)]
    if not codes or sum(cost(code, target) for code in codes) > MAX_BLOCK_COST:
        return None
    return _ts_client.assemble(codes, target, entry_point)


def _unindent_first_line(text: str) -> str:
    """' def f(x):\n    return x\nprint(f(1))' (a leading space the tokenizer gave the first word): the first
    line loses an indentation that some later line lacks."""
    first = _FIRST_LINE.match(text)
    if first is None:
        return text
    indent = len(first[2])
    rest = text[first.end() :].split("\n")[1:]
    if any(line.strip() and len(line) - len(line.lstrip(" \t")) < indent for line in rest):
        return text[: first.start(2)] + text[first.end(2) :]
    return text


def _cut_at_stray_fence(block: _Block) -> _Block:
    """An unclosed block ends at a fence line with text after it ("```Now..."), which markdown does not
    take for a closing fence but a model meant as one."""
    if block.closed or not (stray := _STRAY_FENCE.search(block.code)):
        return block
    return _Block(tag=block.tag, code=block.code[: stray.start()].rstrip(), closed=False)


def _strict(blocks: list[_Block], target: str | None, budget: Budget) -> Extraction:
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
    verdict = _check(block.code, language, budget)
    if verdict.ok:
        return Extraction(code=block.code, language=language, valid=True, reason="ok")
    if verdict.reason == "syntax_error" and not block.tag and target is None:
        return fail("unknown_language")
    return fail(verdict.reason, language)


def _lenient(blocks: list[_Block], answer: str, target: str | None, budget: Budget) -> Extraction:
    """The last untagged or target-language block that parses; unfenced code if there are no fences."""
    if not blocks:
        return _unfenced(answer, target, budget)
    if len(blocks) > MAX_BLOCKS:
        return Extraction(code="", language=target, valid=False, reason="too_long")
    eligible = [
        block
        for block in blocks
        if block.code and (not block.tag or (block.language is not None and target in (None, block.language)))
    ]
    failed: list[tuple[_Block, str]] = []
    for block in reversed(eligible):
        language = target or block.language or "python"
        verdict = _check(block.code, language, budget)
        if not verdict.ok:
            failed.append((block, verdict.reason))
        elif block.tag or verdict.real_code:  # an untagged `42` or `YES` is program output, not code
            return Extraction(code=block.code, language=language, valid=True, reason="ok")
    if not failed:
        return Extraction(code="", language=target, valid=False, reason="no_code_block")
    last, reason = failed[0]
    if reason == "syntax_error" and target is None and not last.tag:
        return Extraction(code=last.code, language=None, valid=False, reason="unknown_language")
    return Extraction(code=last.code, language=target or last.language, valid=False, reason=reason)


def _unfenced(answer: str, target: str | None, budget: Budget) -> Extraction:
    """The whole answer, if it parses and holds real code (not a bare word, number or sentence)."""
    code = _tidy(answer)
    language = target or "python"
    verdict = _check(code, language, budget)
    if verdict.ok and verdict.real_code:
        return Extraction(code=code, language=language, valid=True, reason="ok")
    reason = verdict.reason if verdict.reason in ("too_long", "parse_failed") else "no_code_block"
    return Extraction(code="", language=target, valid=False, reason=reason)


def _check(code: str, language: str, budget: Budget) -> Verdict:
    """The budget's verdict; blank code is a syntax error (there is no program)."""
    return budget.check(code, language) if code.strip() else Verdict("syntax_error")


def _split_reasoning(text: str) -> tuple[str, str]:
    """(answer, unfinished reasoning). Reasoning is removed: a leading `<think>…</think>`, and everything up to a
    `</think>` the response never opened, if that tag comes before the first fence or stands alone on its line.
    A `</think>` inside a line of code (`s.split("</think>")`) stays. A leading `<think>` that is never closed
    makes the rest of the text unfinished reasoning (the answer is then "")."""
    for _ in range(_MAX_REASONING_CUTS):
        if opened := _LEADING_THINK.match(text):
            end = text.find(_THINK_CLOSE, opened.end())
            if end == -1:
                return "", text[opened.end() :]
        else:
            end = _stray_close(text)
            if end == -1:
                return text, ""
        text = text[end + len(_THINK_CLOSE) :]
    return text, ""


def _stray_close(text: str) -> int:
    """Offset of the `</think>` that ends unopened reasoning (see `_split_reasoning`), else -1."""
    fences = [i for i in (text.find("```"), text.find("~~~")) if i != -1]
    before_fence = text.find(_THINK_CLOSE, 0, min(fences, default=len(text)))
    if before_fence != -1:
        return before_fence
    alone = _LONE_THINK_CLOSE.search(text)
    return alone.start(1) if alone else -1


def _tidy(code: str) -> str:
    """Dedent (fences indented in lists or by the model) and drop surrounding blank lines."""
    return textwrap.dedent(code).lstrip("\n").rstrip()


def _parser(grammar: str) -> Parser:
    """A cached parser for this thread (creating one is not free; one parser must not run twice at once)."""
    cache: dict[str, Parser] = _local.__dict__.setdefault("parsers", {})
    if grammar not in cache:
        cache[grammar] = get_parser(grammar)  # type: ignore[arg-type]
    return cache[grammar]


def _fenced_blocks(data: bytes) -> list[_Block]:
    """The fenced code blocks in document order, including ones inside list items and block quotes; at most
    MAX_BLOCKS + 1 (enough to tell that there are too many)."""
    if b"```" not in data and b"~~~" not in data:
        return []
    # The parser sees a copy with deep container prefixes defused and a final newline (a closing fence
    # at the very end of the text is otherwise read as content); offsets still index `data`.
    shadow = _DEEP_PREFIX.sub(lambda m: m[0][:_MAX_PREFIX] + b"x" * (len(m[0]) - _MAX_PREFIX), data)
    # Each line costs the markdown parser ~3 us: long runs of blank lines become one line of spaces.
    shadow = _BLANK_RUN.sub(lambda m: b"\n" + b" " * (len(m[0]) - 2) + b"\n", shadow) + b"\n"
    blocks, stack = [], [_parser("markdown").parse(shadow).root_node]
    while stack and len(blocks) <= MAX_BLOCKS:
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
