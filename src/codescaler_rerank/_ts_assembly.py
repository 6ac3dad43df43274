"""Dependency-aware assembly of a non-Python answer, run inside the tree-sitter worker (`_ts_worker`).

The counterpart of `assembly` for C, C++, Java, JavaScript, TypeScript, Go and Rust: from the blocks of one
response, the last block defining the entry point (a function, method or type of that name, a real body
preferred) is the answer; the program keeps the imports it needs (`_import_needed`), the top-level item
defining the entry point, the answer block's other definitions that do not run it, and the top-level
definitions and constants they reach by identifier, in source order. Statements (example calls,
`console.log(...)`), `main` (unless it is the entry point, also a `main` method inside a kept class) and
items that only run the entry point are dropped.

Imports only the standard library (the worker's tree-sitter nodes are passed in); every walk is iterative,
counts its nodes against `MAX_NODES` and stops at `MAX_DEPTH` (then the caller keeps today's choice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from collections.abc import Callable, Iterator

MAX_NODES = 1 << 20
# Deeper than this, a walk gives up (tree-sitter's cursor grows its stack with the depth; real code is shallow).
MAX_DEPTH = 512

_IMPORTS = frozenset(
    {"preproc_include", "using_declaration", "import_statement", "import_declaration", "use_declaration",
     "extern_crate_declaration", "package_declaration", "package_clause", "preproc_call"}
)  # fmt: skip
_CONSTANTS = frozenset(
    {"preproc_def", "declaration", "lexical_declaration", "variable_declaration", "const_declaration",
     "var_declaration", "const_item", "static_item"}
)  # fmt: skip
_DEFINITIONS = frozenset(
    {"function_definition", "function_declaration", "generator_function_declaration", "class_declaration",
     "class_specifier", "struct_specifier", "union_specifier", "enum_specifier", "namespace_definition",
     "type_definition", "alias_declaration", "preproc_function_def", "interface_declaration",
     "enum_declaration", "record_declaration", "type_alias_declaration", "abstract_class_declaration",
     "struct_item", "enum_item", "trait_item", "impl_item", "type_item", "mod_item", "macro_definition",
     "union_item", "function_item", "method_declaration", "type_declaration", "concept_definition"}
)  # fmt: skip
# Nodes that define a name (searched anywhere inside an item, for the entry point).
_NAMED = _DEFINITIONS | {"method_definition", "constructor_declaration", "variable_declarator", "type_spec"}
_FUNCTION_VALUES = frozenset(
    {"arrow_function", "function_expression", "function", "generator_function", "class"}
)  # fmt: skip
# Identifiers a reference can be (a field or property name is never a top-level definition).
_NOT_REFERENCE = frozenset({"field_identifier", "property_identifier", "statement_identifier"})
_C_DECLARATOR_NAME = frozenset(
    {"identifier", "field_identifier", "qualified_identifier", "destructor_name", "operator_name", "type_identifier"}
)  # fmt: skip
_FUNCTIONS = frozenset(
    {"function_definition", "function_declaration", "function_item", "method_declaration", "method_definition"}
)  # fmt: skip
_REQUIRE = re.compile(rb"^(?:const|let|var)\s[^=]*=\s*require\s*\(")
# `module.exports = {f}`, `exports.f = f`, `export { f }`: kept if they name only kept items.
_EXPORT = re.compile(rb"^(?:module\s*\.\s*)?exports\b|^export\b")
_EXPORT_NAMES = frozenset({"module", "exports"})
_ATTRIBUTE = frozenset({"attribute_item"})  # Rust `#[derive(...)]`: belongs to the next item


class TooLarge(Exception):
    """More than `MAX_NODES` nodes walked in one request, or a subtree deeper than `MAX_DEPTH`."""


@dataclass(eq=False, slots=True)
class _Item:
    """One top-level item of one block."""

    block: int
    index: int
    text: bytes
    kind: str  # "import", "definition", "constant", "prototype", "other"
    binds: frozenset[str]
    reads: frozenset[str]
    defines: dict[str, bool] = field(default_factory=dict)  # name defined inside -> has a real body
    owner: str | None = None  # the type a method/impl/out-of-class member belongs to
    mains: list[tuple[int, int]] = field(default_factory=list)  # nested `main` methods (offsets in text)


_OTHER = _Item(-1, -1, b"", "other", frozenset(), frozenset())  # a block's statements, none of them kept


class _Counter:
    def __init__(self) -> None:
        self.left = MAX_NODES

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise TooLarge


def assemble(
    roots: list, blocks: list[bytes], entry_point: str, language: str, parse: Callable[[bytes], object]
) -> bytes | None:
    """The assembled program (it parses: `parse` gives a root or None), or None if no block defines the
    entry point, the result does not parse, or the walk ran past `MAX_NODES`. `roots[i]` is the parse of
    `blocks[i]` (None if it does not parse)."""
    counter = _Counter()
    try:
        items = [[] if root is None else _items(i, root, blocks[i], language, counter) for i, root in enumerate(roots)]
    except TooLarge:
        return None
    answer = _answer_block(items, entry_point)
    if answer is None:
        return None
    chosen = _closure(items, answer, entry_point)
    code = _render(items, blocks, answer, chosen, entry_point, language)
    return code if parse(code) is not None else None


def _answer_block(items: list[list[_Item]], entry_point: str) -> int | None:
    """The last block defining the entry point with a real body, else the last defining it at all."""
    stub_only = None
    for i in range(len(items) - 1, -1, -1):
        found = [item.defines[entry_point] for item in items[i] if entry_point in item.defines]
        if any(found):
            return i
        if found and stub_only is None:
            stub_only = i
    return stub_only


def _closure(items: list[list[_Item]], answer: int, entry_point: str) -> set[_Item]:
    """The root (the answer block's last item defining the entry point), its companions and all they reach."""
    block = items[answer]
    defining = [item for item in block if entry_point in item.defines]
    root = next((item for item in reversed(defining) if item.defines[entry_point]), defining[-1])
    companions = {
        item
        for item in block
        if item is not root
        and item.kind == "definition"
        and item.owner is None
        and item.binds
        and all(item.defines.get(name, True) for name in item.binds)
        and entry_point not in item.binds | item.reads
        and (entry_point == "main" or "main" not in item.defines)  # nor a class holding `main`
    }
    binders: list[dict[str, list[_Item]]] = [{} for _ in items]
    owned: list[dict[str, list[_Item]]] = [{} for _ in items]
    where: dict[str, list[int]] = {}
    for b, its in enumerate(items):
        for item in its:
            for name in item.binds:
                if name not in binders[b]:
                    where.setdefault(name, []).append(b)
                binders[b].setdefault(name, []).append(item)
            if item.owner:
                owned[b].setdefault(item.owner, []).append(item)
    chosen: set[_Item] = set()
    resolved = {entry_point} | {name for item in companions for name in item.binds} | set(root.binds)
    adding, pending = [root, *companions], [root.owner] if root.owner else []
    while adding or pending:
        if adding:
            item = adding.pop()
            if item not in chosen:
                chosen.add(item)
                pending.extend(item.reads)
                adding.extend(other for name in item.binds for other in owned[item.block].get(name, ()))
            continue
        name = pending.pop()
        if name in resolved or (name == "main" and entry_point != "main"):
            continue
        resolved.add(name)
        adding.extend(_providers(binders, where, name, root, entry_point))
    return chosen


def _providers(  # noqa: PLR0913
    binders: list[dict[str, list[_Item]]], where: dict[str, list[int]], name: str, root: _Item, entry_point: str
) -> list[_Item]:
    """What binds `name` for the answer: a definition or constant (the answer block's last one before the
    root, else its first after it, else the first in the nearest other block, earlier blocks first), with the
    same block's prototypes of it; else a prototype alone. `where[name]`: the blocks binding it, ascending."""
    fallback: list[_Item] = []
    for b in _search_order(where.get(name, []), root.block):
        binding = [
            item
            for item in binders[b].get(name, ())
            if item.kind in ("definition", "constant", "prototype")
            and (item.kind == "definition" or entry_point not in item.reads)
        ]
        real = [item for item in binding if item.kind != "prototype"]
        if not real:
            fallback = fallback or binding
            continue
        if b == root.block:
            earlier = [item for item in real if item.index < root.index]
            pick = earlier[-1] if earlier else real[0]
        else:
            pick = real[0]
        return [pick, *(item for item in binding if item.kind == "prototype")]
    return fallback


def _search_order(blocks: list[int], answer: int) -> list[int]:
    """`blocks` (ascending): the answer block, then the earlier ones nearest first, then the later ones."""
    return sorted(blocks, key=lambda b: (0, 0) if b == answer else (1, answer - b) if b < answer else (2, b))


def _render(
    items: list[list[_Item]], blocks: list[bytes], answer: int, chosen: set[_Item], entry_point: str, language: str
) -> bytes:
    """Imports first, then the chosen items and the exports of them, in source order; the answer block as
    written if that is all of it."""
    taken = {name for item in chosen for name in item.binds}
    reads = {name for item in chosen for name in item.reads} | {item.owner for item in chosen if item.owner}
    imports, seen_text, seen_names = [], set(), set()
    for block in items:
        for item in block:
            if item.kind != "import" or item.text.strip() in seen_text or item.binds & (taken | {entry_point}):
                continue
            if not _import_needed(item, answer, reads, language):
                continue
            if language in ("javascript", "typescript") and item.binds & seen_names:
                continue  # a second `const fs = require("fs")` would redeclare the name
            seen_text.add(item.text.strip())
            seen_names |= item.binds
            imports.append(item)
    exports, seen_exports = [], set()
    for item in (item for block in items for item in block if item.kind == "export"):
        if item.reads - _EXPORT_NAMES <= taken and item.text.strip() not in seen_exports:
            seen_exports.add(item.text.strip())
            exports.append(item)
    body = sorted([*chosen, *exports], key=lambda item: (item.block, item.index))
    if language in ("c", "cpp"):
        body = _uses_after_definitions(body)
    cut = entry_point != "main" and any(item.mains for item in body)
    if not cut and [*imports, *body] == items[answer]:
        return blocks[answer]
    head = b"\n".join(item.text.strip() for item in imports)
    parts = [(_without_mains(item) if cut else item.text).strip() for item in body]
    return b"\n\n".join([head, *parts] if head else parts)


def _uses_after_definitions(body: list[_Item]) -> list[_Item]:
    """C/C++ items in source order, except that an item comes after the items it uses (a helper from a later
    block moves up). Unchanged when the source order already has this property; cycles keep source order."""
    position = {item: i for i, item in enumerate(body)}
    binder: dict[str, _Item] = {}
    for item in body:
        for name in item.binds:
            binder.setdefault(name, item)

    def uses(item: _Item) -> Iterator[_Item]:
        return iter(sorted({binder[n] for n in item.reads if n in binder}, key=position.__getitem__))

    order: list[_Item] = []
    done: set[_Item] = set()
    for start in body:
        stack = [(start, uses(start))]
        entered = {start}
        while stack:
            item, deps = stack[-1]
            dep = next((d for d in deps if d not in done and d not in entered), None)
            if dep is not None:
                entered.add(dep)
                stack.append((dep, uses(dep)))
                continue
            stack.pop()
            if item not in done:
                done.add(item)
                order.append(item)
    return order


def _import_needed(item: _Item, answer: int, reads: set[str], language: str) -> bool:
    """C/C++ keep every include and `using`; the others an import naming nothing (`java.util.*`, Go's `_`)
    or a name the kept code reads, and (except Go, where an unused import does not compile) any import of
    the answer block."""
    if language in ("c", "cpp") or not item.binds or item.text.startswith(b"package") or item.binds & reads:
        return True
    return language != "go" and item.block == answer


def _without_mains(item: _Item) -> bytes:
    """The item's text less its nested `main` methods."""
    text, pos, pieces = item.text, 0, []
    for start, end in item.mains:
        line_start = text.rfind(b"\n", 0, start) + 1
        if not text[line_start:start].strip():  # the method's whole lines go
            start = line_start
            end = end + 1 if text[end : end + 1] == b"\n" else end
        pieces.append(text[pos:start])
        pos = end
    pieces.append(text[pos:])
    return b"".join(pieces)


def _items(block: int, root, data: bytes, language: str, counter: _Counter) -> list[_Item]:  # noqa: ANN001
    """The top-level items of one parsed block: a `;` after an item and a Rust attribute before it belong to
    it; a Go import declaration gives one item per spec; statements (never kept) are one shared `_OTHER`."""
    spans: list[list] = []  # [start, end, node]
    start, other, cursor = None, False, root.walk()
    has_child = cursor.goto_first_child()  # the children one by one: `root.children` would hold them all
    while has_child:
        counter.spend()
        node = cursor.node
        if not node.is_named:
            if spans and node.type == ";" and spans[-1][2] is not None:
                spans[-1][1] = node.end_byte
        elif node.type in _ATTRIBUTE:
            start = node.start_byte if start is None else start
        elif node.type == "comment":
            pass
        elif _kind(_unwrapped(node), data, language) == "other":
            other, start = True, None
            if not spans or spans[-1][2] is not None:
                spans.append([0, 0, None])  # a `;` after the statement is not the item's before it
        else:
            spans.append([node.start_byte if start is None else start, node.end_byte, node])
            start = None
        has_child = cursor.goto_next_sibling()
    items: list[_Item] = []
    for begin, end, node in spans:
        if node is None:
            continue
        if language == "go" and node.type == "import_declaration":
            items.extend(_go_imports(block, len(items), node, data, counter))
        else:
            items.append(_item((block, len(items)), (begin, end), node, data, language, counter))
    return [*items, _OTHER] if other else items


def _go_imports(block: int, index: int, node, data: bytes, counter: _Counter) -> list[_Item]:  # noqa: ANN001
    """One `import alias "path"` item per spec; it binds the package name (none for `_` and `.`)."""
    specs = [child for child in _descendants(node, counter) if child.type == "import_spec"]
    items = []
    for offset, spec in enumerate(specs):
        text = data[spec.start_byte : spec.end_byte]
        alias = spec.child_by_field_name("name")
        path = spec.child_by_field_name("path")
        if alias is not None:
            name = _text(alias, data)
            binds = frozenset() if name in ("_", ".") else frozenset({name})
        elif path is not None:
            binds = frozenset({_text(path, data).strip('"`').rsplit("/", 1)[-1]})
        else:
            binds = frozenset()
        items.append(_Item(block, index + offset, b"import " + text, "import", binds, frozenset()))
    return items


def _item(  # noqa: ANN001 (node: tree_sitter.Node)
    where: tuple[int, int], span: tuple[int, int], node, data: bytes, language: str, counter: _Counter
) -> _Item:
    """Classify one top-level node (block and index `where`, bytes `span` of the block) and collect its names."""
    inner = _unwrapped(node)
    kind = _kind(inner, data, language)
    words, defines, mains = _walk(node, data, span[0], counter)
    binds, owner = _binds(inner, kind, data)
    text = data[span[0] : span[1]]
    return _Item(*where, text, kind, frozenset(binds), frozenset(words - binds), defines, owner, mains)


def _unwrapped(node):  # noqa: ANN001, ANN202
    """The declaration inside `export ...` and `template <...> ...`."""
    while node.type in ("export_statement", "template_declaration"):
        inner = node.child_by_field_name("declaration")
        if inner is None:
            inner = next((c for c in reversed(node.named_children) if c.type in _DEFINITIONS | _CONSTANTS), None)
        if inner is None:
            return node
        node = inner
    return node


def _kind(node, data: bytes, language: str) -> str:  # noqa: ANN001
    text = data[node.start_byte : node.end_byte]
    if node.type in ("expression_statement", "export_statement") and _EXPORT.match(text):
        return "export"
    if node.type in _IMPORTS:
        return "import"
    if node.type in ("lexical_declaration", "variable_declaration"):
        if _REQUIRE.match(text):
            return "import"
        declarators = [d for d in node.named_children if d.type == "variable_declarator"]
        return "definition" if declarators and all(map(_is_function_value, declarators)) else "constant"
    if node.type == "declaration" and language in ("c", "cpp"):
        declarators = node.children_by_field_name("declarator")
        if declarators and all(d.type == "function_declarator" for d in declarators):
            return "prototype"
        return "constant"
    if node.type in _DEFINITIONS:
        return "definition"
    if node.type in _CONSTANTS:
        return "constant"
    return "other"


def _binds(node, kind: str, data: bytes) -> tuple[set[str], str | None]:  # noqa: ANN001
    """The names a top-level item binds and the type it belongs to (Go methods, Rust impls, `A::f()`)."""
    if kind == "import":
        return (set() if b"*" in data[node.start_byte : node.end_byte] else _identifiers(node, data)), None
    if node.type == "impl_item":
        kind_node = node.child_by_field_name("type")
        return set(), _base_name(kind_node, data) if kind_node is not None else None
    if node.type == "method_declaration" and node.child_by_field_name("receiver") is not None:  # Go
        receiver = node.child_by_field_name("receiver")
        types = _identifiers(receiver, data, {"type_identifier"})
        return {_text(node.child_by_field_name("name"), data)}, min(types) if types else None
    name, owner = _name(node, data)
    if name is not None:
        return {name}, owner
    # Declarations with several names: `const a = 1, b = 2;`, `int N = 5, M;`, Go `const ( ... )`.
    names = set()
    for child in node.named_children:
        if child.type in ("variable_declarator", "init_declarator", "const_spec", "var_spec", "type_spec"):
            target = child.child_by_field_name("name") or child.child_by_field_name("declarator")
            if target is not None:
                names |= _identifiers(target, data, {"identifier", "type_identifier"})
        elif child.type in ("identifier", "type_identifier"):
            names.add(_text(child, data))
    if node.type == "type_definition":
        for declarator in node.children_by_field_name("declarator"):
            names |= _identifiers(declarator, data, {"type_identifier"})
    return names, None


def _name(node, data: bytes) -> tuple[str | None, str | None]:  # noqa: ANN001
    """The name a defining node gives (its `name` field, or for C/C++ the name inside its declarator), and
    the class of an out-of-class C++ member (`int A::f()`)."""
    name = node.child_by_field_name("name")
    if name is not None and node.type != "variable_declarator":
        return _text(name, data), None
    if node.type == "variable_declarator":
        return (_text(name, data), None) if name is not None and name.type == "identifier" else (None, None)
    if node.type != "function_definition":
        return None, None
    declarator = node.child_by_field_name("declarator")
    while declarator is not None and declarator.type not in _C_DECLARATOR_NAME:
        declarator = declarator.child_by_field_name("declarator")
    if declarator is None:
        return None, None
    if declarator.type == "qualified_identifier":
        scope = declarator.child_by_field_name("scope")
        inner = declarator
        while inner is not None and inner.type == "qualified_identifier":
            inner = inner.child_by_field_name("name")
        owner = _text(scope, data) if scope is not None else None
        return (_text(inner, data) if inner is not None else None), owner
    return _text(declarator, data), None


_Names = tuple[set[str], dict[str, bool], list[tuple[int, int]]]


def _walk(node, data: bytes, offset: int, counter: _Counter) -> _Names:  # noqa: ANN001
    """Referencing identifiers in `node`; the names defined anywhere inside (-> has a real body); the byte
    ranges (relative to `offset`) of nested `main` methods."""
    words: set[str] = set()
    defines: dict[str, bool] = {}
    mains: list[tuple[int, int]] = []
    for child in _descendants(node, counter):
        kind = child.type
        if _is_reference(kind):
            words.add(_text(child, data))
        elif kind in _NAMED:
            name, _owner = _name(child, data)
            if kind == "variable_declarator" and not _is_function_value(child):
                name = None
            if name is not None:
                real = not _is_stub(child)
                defines[name] = defines.get(name, False) or real
                if name == "main" and child != node and kind in ("method_declaration", "method_definition"):
                    mains.append((child.start_byte - offset, child.end_byte - offset))
    return words, defines, sorted(mains)


def _is_function_value(declarator) -> bool:  # noqa: ANN001
    value = declarator.child_by_field_name("value")
    return value is not None and value.type in _FUNCTION_VALUES


def _is_stub(node) -> bool:  # noqa: ANN001
    """A function whose body holds only comments (or that has none: a signature)."""
    if node.type == "variable_declarator":
        node = node.child_by_field_name("value")
    body = node.child_by_field_name("body")
    if body is None:
        return node.type in _FUNCTIONS
    cursor = body.walk()  # its statements, one by one (a Node's child list would hold them all)
    if not cursor.goto_first_child():
        return True
    while not cursor.node.is_named or "comment" in cursor.node.type:
        if not cursor.goto_next_sibling():
            return True
    return False


def _identifiers(node, data: bytes, kinds: set[str] | None = None) -> set[str]:  # noqa: ANN001
    """The identifiers below `node` (of `kinds`, else every referencing one)."""
    return {
        _text(child, data)
        for child in _descendants(node, _Counter())
        if (child.type in kinds if kinds else _is_reference(child.type))
    }


def _is_reference(kind: str) -> bool:
    return kind.endswith("identifier") and kind not in _NOT_REFERENCE


def _descendants(node, counter: _Counter) -> Iterator:  # noqa: ANN001
    """The named nodes of the subtree, in pre-order, walked with a cursor (a Node keeps the children lists it
    was asked for, so a walk over Nodes holds the whole tree in memory); every node counts against `counter`."""
    cursor = node.walk()
    while True:
        counter.spend()
        if cursor.node.is_named:
            yield cursor.node
        if cursor.depth >= MAX_DEPTH:
            raise TooLarge
        if cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return


def _base_name(node, data: bytes) -> str | None:  # noqa: ANN001
    """`Foo` of `Foo`, `Foo<T>`, `crate::Foo`."""
    names = _identifiers(node, data, {"type_identifier"})
    if node.type == "type_identifier":
        return _text(node, data)
    inner = node.child_by_field_name("type") or node.child_by_field_name("name")
    if inner is not None and inner.type == "type_identifier":
        return _text(inner, data)
    return min(names) if names else None


def _text(node, data: bytes) -> str:  # noqa: ANN001
    return data[node.start_byte : node.end_byte].decode("utf-8", "replace")
