"""Pass-after-extraction on real model responses (issue 16): ours against the rules others use.

Each extractor turns a raw response into code; the code runs (after the prompt's own imports, the
same for every extractor) against the problem's tests in the sandbox (`execution.run_many`, default
settings). Extractors:

* ``ours``: `extract_code(response, "python", "lenient", entry_point=detect_entry_point(prompt))`;
* ``ours_no_entry``: the same without an entry point (what a caller that does not know the prompt gets);
* ``ours_old``: the lenient mode before issue 16 (extraction.py at commit 6194ada);
* ``evalplus``: a re-implementation of EvalPlus's `sanitize(code, entrypoint)` (evalplus/sanitize.py
  at 26d6d00: the longest run of lines that parses, then the imports plus the definitions reachable
  from the entry point, by tree-sitter), given the dataset's entry point as EvalPlus is;
* ``lcb``: LiveCodeBench's `extract_code` (lcb_runner/utils/extraction_utils.py at 28fef95): the text
  between the last two lines containing a fence, "" if fewer than two;
* ``paper``: the CodeScaler recipe's rule: exactly one ```` ```(?:\\w+)?\\n(.*?)``` ```` match (DOTALL),
  stripped, must `ast.parse`, else "".

EvalPlus's line-pair search is cubic in a response's lines (minutes for a 2,000-line answer): its
outputs are cached (`--evalplus-cache`, computed on `--jobs` processes), as are the sandbox verdicts
(`--cache`, keyed by program, tests and entry point), so a rerun only runs what changed.

Throughput: typical responses (no reasoning, at most 4 kB) per CPU second through ours with the
prompt's entry point, against ours without one and the lenient mode at 6194ada, measured in the same
run (best of 3 interleaved rounds), with the load average before and after.

    python benchmarks/extraction_real.py --cache runs/verdicts.json --evalplus-cache runs/evalplus.json
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import importlib.util
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tree_sitter import Node
from tree_sitter_language_pack import get_parser

from codescaler_rerank.assembly import detect_entry_point
from codescaler_rerank.execution import Job, run_many
from codescaler_rerank.extraction import extract_code

OLD_COMMIT = "6194ada"
TYPICAL_BYTES = 4096


# --- EvalPlus's sanitizer (evalplus/sanitize.py), re-implemented ---------------------------------


def _syntax_ok(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, MemoryError, ValueError):
        return False


def evalplus_code_extract(text: str) -> str:
    """The longest (non-blank lines) run of at least two lines that parses; the first such run on ties.
    Same answer as EvalPlus's all-pairs loop, which it searches from the long end and stops early."""
    text = re.sub(r"\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])", "", text)
    lines = text.split("\n")
    suffix = [0] * (len(lines) + 1)  # non-blank lines from i to the end
    for i in range(len(lines) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + bool(lines[i].strip())
    best, pair = 0, (0, 0)
    for i in range(len(lines)):
        if suffix[i] <= best:
            break
        found = None
        for j in range(len(lines) - 1, i, -1):
            count = suffix[i] - suffix[j + 1]
            if count <= best or (found is not None and count < found[0]):
                break
            if _syntax_ok("\n".join(lines[i : j + 1])):
                found = (count, j)  # keep going: EvalPlus keeps the smallest j with this count
        if found is not None:
            best, pair = found[0], (i, found[1])
    return "\n".join(lines[pair[0] : pair[1] + 1])


def _walk(node: Node):
    yield node
    for child in node.children:
        yield from _walk(child)


def _first_identifier(node: Node) -> str | None:
    return next((c.text.decode() for c in node.children if c.type == "identifier"), None)


def evalplus_sanitize(text: str, entrypoint: str | None) -> str:
    code = evalplus_code_extract(text)
    data = code.encode()
    root = get_parser("python").parse(data).root_node
    names: set[str] = set()
    imports, definitions = [], []
    for child in root.children:
        if child.type in ("import_statement", "import_from_statement"):
            imports.append(child)
        elif child.type == "class_definition":
            name = _first_identifier(child)
            if name not in names:
                definitions.append((name, child))
                names.add(name)
        elif child.type == "function_definition":
            name = _first_identifier(child)
            if name not in names and any(n.type == "return_statement" for n in _walk(child)):
                definitions.append((name, child))
                names.add(name)
        elif child.type == "expression_statement" and child.children[0].type == "assignment":
            name = _first_identifier(child.children[0])
            if name not in names:
                definitions.append((name, child.children[0]))
                names.add(name)
    reachable = None
    if entrypoint:
        deps = {name: {n.text.decode() for n in _walk(node) if n.type == "identifier"} for name, node in definitions}
        reachable, queue = {entrypoint}, [entrypoint]
        while queue:
            for neighbour in deps.get(queue.pop(0), ()):
                if neighbour not in reachable:
                    reachable.add(neighbour)
                    queue.append(neighbour)
    out = b"".join(data[n.start_byte : n.end_byte] + b"\n" for n in imports)
    for name, node in definitions:
        if reachable is None or name in reachable:
            out += data[node.start_byte : node.end_byte] + b"\n"
    sanitized = out[:-1].decode().strip()
    return sanitized or evalplus_code_extract(text)


# --- the other rules ------------------------------------------------------------------------------


def lcb_extract(text: str) -> str:
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1 : fences[-1]])


_PAPER = re.compile(r"```(?:\w+)?\n(.*?)```", re.DOTALL)


def paper_extract(text: str) -> str:
    blocks = _PAPER.findall(text)
    if len(blocks) != 1:
        return ""
    code = blocks[0].strip()
    return code if _syntax_ok(code) else ""


def old_extract_code() -> Callable[..., object]:
    """`extract_code` as it was at OLD_COMMIT (a standalone module then)."""
    source = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:src/codescaler_rerank/extraction.py"], check=True, capture_output=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_extraction.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("old_extraction", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["old_extraction"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.extract_code


# --- measurement ----------------------------------------------------------------------------------


def extractors() -> dict[str, Callable[[dict], str]]:
    """The fast extractors (EvalPlus's is `evalplus_codes`, cached)."""
    old = old_extract_code()
    return {
        "ours": lambda r: extract_code(r["response"], entry_point=detect_entry_point(r["prompt"])).code,
        "ours_no_entry": lambda r: extract_code(r["response"]).code,
        "ours_old": lambda r: old(r["response"], "python", "lenient").code,  # type: ignore[attr-defined]
        "lcb": lambda r: lcb_extract(r["response"]),
        "paper": lambda r: paper_extract(r["response"]),
    }


def _evalplus_row(row: dict) -> str:
    return evalplus_sanitize(row["response"], row["entry_point"])


def evalplus_codes(rows: list[dict], cache_path: Path | None, jobs: int) -> list[str]:
    """EvalPlus's sanitizer on every row, from the cache where it has them. Its line-pair search is
    cubic in the response's lines: a 2,000-line response takes minutes, so results are cached."""
    cache: dict[str, str] = json.loads(cache_path.read_text()) if cache_path and cache_path.exists() else {}
    keys = [hashlib.sha1(f"{r['response']}\0{r['entry_point']}".encode()).hexdigest() for r in rows]
    todo = [i for i, key in enumerate(keys) if key not in cache]
    print(f"evalplus: {len(todo)} of {len(rows)} responses to sanitize", file=sys.stderr)
    with multiprocessing.Pool(jobs) as pool:
        for done, (i, code) in enumerate(zip(todo, pool.imap(_evalplus_row, [rows[i] for i in todo])), 1):
            cache[keys[i]] = code
            if cache_path and (done % 200 == 0 or done == len(todo)):  # an interrupted run keeps its work
                cache_path.write_text(json.dumps(cache))
    return [cache[key] for key in keys]


def run(rows: list[dict], codes: dict[str, list[str]], cache_path: Path | None) -> dict[str, list[bool]]:
    """Pass/fail of every extractor's code on every row (empty code fails without running)."""
    cache: dict[str, bool] = json.loads(cache_path.read_text()) if cache_path and cache_path.exists() else {}
    keys: dict[str, Job] = {}
    for name, column in codes.items():
        for row, code in zip(rows, column):
            if code.strip():
                program = (row["prelude"] + "\n\n" + code) if row["prelude"] else code
                key = hashlib.sha1(f"{program}\0{row['tests']}\0{row['entry_point']}".encode()).hexdigest()
                keys.setdefault(key, Job(code=program, tests=row["tests"], entry_point=row["entry_point"]))
    todo = [k for k in keys if k not in cache]
    print(f"{len(keys)} distinct programs, {len(todo)} to run", file=sys.stderr)
    for start in range(0, len(todo), 500):  # saved chunk by chunk: an interrupted run keeps its verdicts
        chunk = todo[start : start + 500]
        for key, result in zip(chunk, run_many([keys[k] for k in chunk])):
            cache[key] = result.passed
        if cache_path:
            cache_path.write_text(json.dumps(cache))
    passed = {}
    for name, column in codes.items():
        passed[name] = []
        for row, code in zip(rows, column):
            program = (row["prelude"] + "\n\n" + code) if row["prelude"] else code
            key = hashlib.sha1(f"{program}\0{row['tests']}\0{row['entry_point']}".encode()).hexdigest()
            passed[name].append(bool(code.strip()) and cache[key])
    return passed


def throughput(rows: list[dict], rounds: int = 3) -> dict[str, float]:
    """Typical responses per CPU second through each lenient extractor on this thread, best of `rounds`
    interleaved rounds: ours with the prompt's entry point, ours without, and the lenient mode at
    OLD_COMMIT (the baselines, measured in the same run)."""
    typical = [r for r in rows if "<think>" not in r["response"] and len(r["response"].encode()) <= TYPICAL_BYTES]
    pairs = [(r["response"], detect_entry_point(r["prompt"])) for r in typical]
    old = old_extract_code()
    runs: dict[str, Callable[[str, str | None], object]] = {
        "ours, entry point from the prompt": lambda text, entry: extract_code(text, entry_point=entry),
        "ours, no entry point": lambda text, entry: extract_code(text),
        f"lenient at {OLD_COMMIT}": lambda text, entry: old(text, "python", "lenient"),
    }
    best = dict.fromkeys(runs, 0.0)
    for name, extract in runs.items():  # warm the parsers and the worker
        for text, entry in pairs[:50]:
            extract(text, entry)
    for _ in range(rounds):
        for name, extract in runs.items():
            start = time.process_time()
            for text, entry in pairs:
                extract(text, entry)
            best[name] = max(best[name], len(pairs) / (time.process_time() - start))
    return best


def report(rows: list[dict], codes: dict[str, list[str]], passed: dict[str, list[bool]]) -> None:
    """Pass-after-extraction per extractor and benchmark, and ours against each other rule."""
    groups = {"all": list(range(len(rows)))}
    for i, row in enumerate(rows):
        groups.setdefault(row["benchmark"], []).append(i)
    print("| extractor | " + " | ".join(f"{g} (n={len(ix)})" for g, ix in groups.items()) + " |")
    print("|---|" + "---:|" * len(groups))
    for name, column in passed.items():
        cells = [f"{100 * sum(column[i] for i in ix) / len(ix):.1f} %" for ix in groups.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    for other in ("evalplus", "lcb", "paper", "ours_no_entry", "ours_old"):
        wins = sum(a and not b for a, b in zip(passed["ours"], passed[other]))
        losses = sum(b and not a for a, b in zip(passed["ours"], passed[other]))
        print(f"ours vs {other}: only ours passes {wins}, only {other} passes {losses}")
    empty = {name: sum(not code.strip() for code in column) for name, column in codes.items()}
    print(f"empty extractions: {empty}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="benchmarks/data/extraction_real.jsonl.gz")
    parser.add_argument("--cache", type=Path, default=None, help="JSON file of sandbox verdicts to reuse")
    parser.add_argument("--evalplus-cache", type=Path, default=None, help="JSON file of EvalPlus outputs to reuse")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for EvalPlus's sanitizer")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    rows = [json.loads(line) for line in gzip.open(args.data, "rt", encoding="utf-8")][: args.limit]
    codes = {name: [extract(row) for row in rows] for name, extract in extractors().items()}
    codes["evalplus"] = evalplus_codes(rows, args.evalplus_cache, args.jobs)
    passed = run(rows, codes, args.cache)
    report(rows, codes, passed)
    if not args.no_throughput:
        print(f"\nthroughput, load average before: {os.getloadavg()}")
        rates = throughput(rows)
        base = rates["ours, no entry point"]
        for name, rate in rates.items():
            print(f"  {name}: {rate:,.0f} typical responses/CPU-s ({rate / base:.2f}x ours without entry point)")
        print(f"load average after: {os.getloadavg()}")
    if os.environ.get("EXTRACTION_REAL_DUMP"):
        with open(os.environ["EXTRACTION_REAL_DUMP"], "w") as f:
            for i, row in enumerate(rows):
                f.write(json.dumps({"id": row["id"], **{n: [codes[n][i], passed[n][i]] for n in codes}}) + "\n")


if __name__ == "__main__":
    main()
