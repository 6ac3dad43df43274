"""Build the set of real model responses used by `extraction_real.py` (issue 16), reproducibly.

Sources (see benchmarks/EXTRACTION_DATA.md for provenance and licences), read from bare git clones
(`--mirrors DIR`, holding `<owner>+<name>/repo`; default /work/.mirror) at the commits pinned below:

* MapCoder (MIT): single-turn responses (Direct, CoT, Analogical prompting) of ChatGPT, GPT-4-Turbo
  and Gemini on HumanEval and MBPP (MultiPL-E typed prompts with their tests). The first response of
  each record, i.e. the answer to the original prompt.
* can-ai-code (MIT): raw answers of hundreds of local and API models to free-form "write a python
  function f(x) that ..." interview questions; tests built from the record's own checks (`f.call`).

Each output row: id, source, model, benchmark, task_id, prompt, response, entry_point, prelude (the
imports of the prompt's code, run before every extractor's code), tests (assert-style, complete).

    python benchmarks/build_extraction_data.py --out benchmarks/data/extraction_real.jsonl.gz \
        --sample tests/data/extraction_sample.jsonl.gz
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import subprocess
from pathlib import Path

from codescaler_rerank.datasets import load_bundled

MIRRORS = Path("/work/.mirror")
MAPCODER = ("Md-Ashraful-Pramanik/MapCoder", "0027da71030b441cca2bc6f95def86b9aa5c7dea")
CANAICODE = ("the-crypt-keeper/can-ai-code", "aa5a2f6d3fabb2aba9173902371cb8307e664c0f")
# (path under final-results/, model, prompting, benchmark, how many records)
MAPCODER_FILES = [
    ("ChatGPT/HumanEval/ChatGPT-CoT-Python3-0-1.jsonl", "gpt-3.5-turbo", "cot", "humaneval", 164),
    ("ChatGPT/HumanEval/ChatGPT-Analogical-Python3-0-1.jsonl", "gpt-3.5-turbo", "analogical", "humaneval", 164),
    ("GPT4/HumanEval/GPT4-Turbo-CoT-Human-Python3-0-1.jsonl", "gpt-4-turbo", "cot", "humaneval", 164),
    ("GPT4/HumanEval/GPT4-Turbo-Analogical-Human-Python3-0-1.jsonl", "gpt-4-turbo", "analogical", "humaneval", 164),
    ("Gemini/HumanEval/Gemini-CoT-Human-Python3-0-1.jsonl", "gemini-pro", "cot", "humaneval", 164),
    ("Gemini/HumanEval/Gemini-Direct-Human-Python3-0-1.jsonl", "gemini-pro", "direct", "humaneval", 164),
    ("GPT4/MBPP/GPT4-Turbo-CoT-MBPP-Python3-0-1.jsonl", "gpt-4-turbo", "cot", "mbpp", 200),
    ("GPT4/MBPP/GPT4-Turbo-Analogical-MBPP-Python3-0-1.jsonl", "gpt-4-turbo", "analogical", "mbpp", 200),
    ("ChatGPT/MBPP/ChatGPT-Analogical-MBPP-Python3-0-1.jsonl", "gpt-3.5-turbo", "analogical", "mbpp", 200),
]
# can-ai-code's sandbox returns results through JSON (generators as lists, bytes items as ints);
# its checks compare with ==, `eq-any` (one of), or dicts key by key.
CANAICODE_HARNESS = '''
import json as _json, types as _types

def _call(*args):
    value = {entry}(*args)
    if isinstance(value, _types.GeneratorType):
        value = list(value)
    if isinstance(value, list):
        value = [int.from_bytes(x, "little") if isinstance(x, bytes) else x for x in value]
    return _json.loads(_json.dumps(value))

def _same(got, expected, any_of):
    if any_of:
        return got in expected
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(got.get(k) == v for k, v in expected.items())
    return got == expected
'''


def git_show(mirrors: Path, repo: str, commit: str, path: str) -> bytes:
    git_dir = mirrors / repo.replace("/", "+") / "repo"
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def git_ls(mirrors: Path, repo: str, commit: str) -> list[str]:
    git_dir = mirrors / repo.replace("/", "+") / "repo"
    out = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "-r", "--name-only", commit], check=True, capture_output=True
    ).stdout.decode()
    return out.split("\n")


def prompt_imports(prompt: str) -> str:
    """The top-level imports of a code prompt (HumanEval's `from typing import List`), '' if none."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ""
    lines = prompt.split("\n")
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join("\n".join(lines[n.lineno - 1 : n.end_lineno]) for n in imports)


def mapcoder_rows(mirrors: Path) -> list[dict]:
    humaneval = {p.problem_id: p for p in load_bundled("humaneval")}
    repo, commit = MAPCODER
    rows = []
    for path, model, style, benchmark, limit in MAPCODER_FILES:
        records = [json.loads(line) for line in git_show(mirrors, repo, commit, "final-results/" + path).splitlines()]
        for record in records[:limit]:
            responses = record["responses"]
            if not responses or not isinstance(responses[0], str):
                continue
            task_id, entry = record["task_id"], record["entry_point"]
            if benchmark == "humaneval":
                problem = humaneval[task_id]
                prompt, tests = problem.problem, problem.tests
            else:
                prompt, tests = record["prompt"], record["test"]
            rows.append(
                {
                    "id": f"mapcoder/{model}/{style}/{task_id}",
                    "source": f"github.com/{repo}@{commit[:12]}:final-results/{path}",
                    "model": model,
                    "benchmark": benchmark,
                    "task_id": task_id,
                    "prompt": prompt,
                    "response": responses[0],
                    "entry_point": entry,
                    "prelude": prompt_imports(prompt),
                    "tests": tests,
                }
            )
    return rows


def prompt_text(prompt: str | list) -> str:
    """The prompt as text: chat messages (a list of {role, content}) joined in order."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(str(m.get("content", "")) for m in prompt if isinstance(m, dict))


def canaicode_tests(entry: str, checks: list[dict]) -> str | None:
    """Assert-style tests from can-ai-code checks that call the function; None if there are none."""
    asserts = []
    for check in checks:
        expression = check.get("assert", "")
        if "f.call(" not in expression or "f.name" in expression or "f.args" in expression:
            continue
        any_of = "eq-any" in check
        expected = check["eq-any"] if any_of else check.get("eq")
        asserts.append(f"assert _same({expression.replace('f.call(', '_call(')}, {expected!r}, {any_of})")
    if not asserts:
        return None
    return CANAICODE_HARNESS.format(entry=entry) + "\n" + "\n".join(asserts) + "\n"


def canaicode_rows(mirrors: Path) -> list[dict]:
    repo, commit = CANAICODE
    rows = []
    for path in sorted(p for p in git_ls(mirrors, repo, commit) if p.startswith("results/") and p.endswith(".ndjson")):
        interview = "senior" if "eval_senior" in path else "junior-v2"
        choices = []
        for line in git_show(mirrors, repo, commit, path).splitlines():
            record = json.loads(line)
            answer, signature = record.get("answer"), record.get("Signature", "")
            if record.get("language") != "python" or not isinstance(answer, str) or not answer.strip():
                continue
            entry = signature.split("(")[0].strip()
            tests = canaicode_tests(entry, record.get("checks") or [])
            if not entry.isidentifier() or tests is None:
                continue
            key = hashlib.sha1(f"{path}:{record['name']}".encode()).hexdigest()
            choices.append((key, record, entry, tests))
        if not choices:
            continue
        _, record, entry, tests = min(choices, key=lambda c: c[0])  # one answer per results file
        rows.append(
            {
                "id": f"canaicode/{Path(path).stem}/{record['name']}",
                "source": f"github.com/{repo}@{commit[:12]}:{path}",
                "model": str(record.get("model", "")),
                "benchmark": f"canaicode-{interview}",
                "task_id": record["name"],
                "prompt": prompt_text(record.get("prompt", "")),
                "response": record["answer"],
                "entry_point": entry,
                "prelude": "",
                "tests": tests,
            }
        )
    return rows


def _rank(row: dict) -> str:
    return hashlib.sha1(row["id"].encode()).hexdigest()


def sample(rows: list[dict], per_benchmark: int = 20, multi_block: int = 20) -> list[dict]:
    """The test fixture: per benchmark, the `per_benchmark` responses of at most 4 kB first in sha1(id)
    order, then the first `multi_block` others with two or more fences (where assembly matters)."""
    small = sorted((row for row in rows if len(row["response"].encode()) <= 4096), key=_rank)
    chosen: list[dict] = []
    for benchmark in sorted({row["benchmark"] for row in rows}):
        chosen += [row for row in small if row["benchmark"] == benchmark][:per_benchmark]
    ids = {row["id"] for row in chosen}
    chosen += [row for row in small if row["id"] not in ids and row["response"].count("```") >= 4][:multi_block]
    return chosen


def write(rows: list[dict], path: Path) -> None:
    """Gzipped JSONL, byte for byte reproducible (no file name or time in the gzip header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(data, mtime=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/data/extraction_real.jsonl.gz")
    parser.add_argument("--sample", type=Path, default=None, help="also write the test fixture sample here")
    parser.add_argument("--mirrors", type=Path, default=MIRRORS, help="folder of <owner>+<name>/repo bare clones")
    args = parser.parse_args()
    rows = mapcoder_rows(args.mirrors) + canaicode_rows(args.mirrors)
    out = Path(args.out)
    write(rows, out)
    if args.sample:
        write(sample(rows), args.sample)
        print(f"{len(sample(rows))} sample responses -> {args.sample} ({args.sample.stat().st_size} bytes)")
    models = len({row["model"] for row in rows})
    by_benchmark: dict[str, int] = {}
    for row in rows:
        by_benchmark[row["benchmark"]] = by_benchmark.get(row["benchmark"], 0) + 1
    print(f"{len(rows)} responses from {models} models {by_benchmark} -> {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
