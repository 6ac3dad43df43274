"""Tree-sitter parse worker: a separate process that checks and normalises non-Python code.

tree-sitter's GLR parser is super-linear in time and memory on some token soups (cpp `"a<a." * 4000` takes
gigabytes and can segfault), so untrusted code is parsed here, never in the caller. The process caps its own
address space at startup (`_HEADROOM` bytes above what it uses once every grammar is loaded): a soup runs into
the cap after ~0.5 s and the process dies, while 128 kB of ordinary code needs under 10 MB.

Run as a script (`python _ts_worker.py`); it imports only the standard library and tree-sitter. Protocol on
stdin/stdout, little-endian: request `<op:u8><language:u8><n:u32>` + n bytes of UTF-8 code; answer
`<status:u8><n:u32>` + n bytes. Ops: CHECK answers status INVALID, VALID_DATA (parses, but holds only names,
literals and comments) or VALID_CODE; NORMAL answers NONE or TEXT with the normal form as UTF-8; ASSEMBLE
takes `pack([entry_point, *blocks])` and answers NONE or TEXT with the assembled program (`_ts_assembly`).
"""

from __future__ import annotations

import re
import struct
import sys

REQUEST = struct.Struct("<BBI")
ANSWER = struct.Struct("<BI")
ITEM = struct.Struct("<I")
CHECK, NORMAL, ASSEMBLE = 1, 2, 3
INVALID, VALID_DATA, VALID_CODE, NONE, TEXT = 0, 1, 2, 3, 4
# Index of a language on the wire; a program is valid if any of the language's grammars parses it.
LANGUAGES: tuple[str, ...] = ("c", "cpp", "java", "javascript", "typescript", "go", "rust")
_GRAMMARS: dict[str, tuple[str, ...]] = {**{lang: (lang,) for lang in LANGUAGES}, "typescript": ("typescript", "tsx")}
_HEADROOM = 64 << 20
_READ_CHUNK = 1 << 16
# Leaf-like nodes kept verbatim by the normal form (their inner whitespace is data, not layout).
_STRING_NODE = re.compile(r"(string|char|character|rune)(_literal)?$")
# Names, literals and brackets: a program made only of these is a word or program output, not code.
_DATA_NODE = re.compile(
    r"identifier|literal|string|number|integer|float|true|false|null|nil|none|undefined"
    r"|array|list|tuple|unary|parenthesized"
)


def main() -> None:
    """Load every grammar, cap the address space, then answer requests until stdin closes."""
    import resource

    from tree_sitter_language_pack import get_parser

    import _ts_assembly  # a sibling module: this file runs as a script

    parsers = {grammar: get_parser(grammar) for grammars in _GRAMMARS.values() for grammar in grammars}  # type: ignore[arg-type]
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + _HEADROOM, used + _HEADROOM))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while len(header := stdin.read(REQUEST.size)) == REQUEST.size:
        op, index, size = REQUEST.unpack(header)
        data = stdin.read(size)
        if op == ASSEMBLE:
            status, payload = _assemble(parsers, _ts_assembly.assemble, LANGUAGES[index], data)
        else:
            status, payload = _answer(parsers, op, LANGUAGES[index], data)
        stdout.write(ANSWER.pack(status, len(payload)) + payload)
        stdout.flush()


def _answer(parsers: dict, op: int, language: str, data: bytes) -> tuple[int, bytes]:
    """The status and payload for one request."""
    root = _parse(parsers, language, data)
    if op == CHECK:
        return (INVALID if root is None else VALID_CODE if _has_real_code(root) else VALID_DATA), b""
    if root is None:
        return NONE, b""
    return TEXT, _normal(root, data).encode()


def pack(items: list[bytes]) -> bytes:
    """`<count:u32>` then `<n:u32>` + n bytes per item."""
    return ITEM.pack(len(items)) + b"".join(ITEM.pack(len(item)) + item for item in items)


def unpack(data: bytes) -> list[bytes]:
    """The items of `pack`."""
    (count,), pos, items = ITEM.unpack_from(data), ITEM.size, []
    for _ in range(count):
        (size,) = ITEM.unpack_from(data, pos)
        items.append(data[pos + ITEM.size : pos + ITEM.size + size])
        pos += ITEM.size + size
    return items


def _assemble(parsers: dict, assemble, language: str, data: bytes) -> tuple[int, bytes]:  # noqa: ANN001
    """The program `_ts_assembly.assemble` builds from `unpack(data)` = [entry point, *blocks]."""
    entry_point, *blocks = unpack(data)
    # Parsed with a final newline: a block ending in `#include <x>` (tidied, so without one) is valid C.
    roots = [_parse(parsers, language, block + b"\n") for block in blocks]
    code = assemble(roots, blocks, entry_point.decode(), language, lambda text: _parse(parsers, language, text + b"\n"))
    return (NONE, b"") if code is None else (TEXT, code)


def _parse(parsers: dict, language: str, data: bytes):  # noqa: ANN202 (tree_sitter.Node)
    """Root of the first error-free tree among the language's grammars; None if none."""
    view = memoryview(data)
    for grammar in _GRAMMARS[language]:
        parser = parsers[grammar]
        try:
            tree = parser.parse(
                lambda offset, _point: view[offset : offset + _READ_CHUNK],
                # Halt once every GLR branch has hit an error: the tree is sure to hold one.
                progress_callback=lambda _offset, has_error: has_error,
            )
        except ValueError:  # halted: the parser must be reset before its next parse
            parser.reset()
            continue
        if not tree.root_node.has_error:
            return tree.root_node
    return None


def _has_real_code(root) -> bool:  # noqa: ANN001
    """False if the program is only comments and bare data such as `hello`, `42` or `[0, 1]`."""
    return any(
        "comment" not in node.type and not (node.type == "expression_statement" and _is_data(node))
        for node in root.named_children
    )


def _is_data(node) -> bool:  # noqa: ANN001
    """True if below `node` there are only names, literals and brackets around them."""
    stack = list(node.named_children)
    while stack:
        child = stack.pop()
        if not _DATA_NODE.search(child.type):
            return False
        stack.extend(child.named_children)
    return True


def _normal(root, data: bytes) -> str:  # noqa: ANN001
    """Leaf tokens (comments dropped, string literals verbatim) joined by single spaces; named nodes are
    bracketed as `(type ... )` so that statement grouping counts (in JS and Go `return` + newline + `x`
    is not `return x`)."""
    tokens: list[str] = []
    stack: list = [root]
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


if __name__ == "__main__":
    main()
