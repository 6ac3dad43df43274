"""Throughput of lenient extraction for non-Python languages with and without the entry point (issue 16 item 2).

    python benchmarks/extraction_languages.py      # prints a markdown table; paste it into RESULTS.md

Synthetic typical responses (no real-response set exists for these languages): a solution defining `solve`
with a helper and a `main`, in the shapes chat answers take (one block; includes, helper and main in separate
blocks; a usage block after the answer). Responses per CPU second of this process plus its parse worker, one
thread, best of 3 interleaved rounds; the ratio is against plain lenient extraction in the same run.
"""

from __future__ import annotations

import os
import resource

from codescaler_rerank import _ts_client, extract_code

PROGRAMS = {
    "cpp": ("#include <iostream>\n#include <vector>\nusing namespace std;",
            "long long helper(long long x) {\n    return x * x;\n}\n\nlong long solve(const vector<long long>& v) {\n"
            "    long long s = 0;\n    for (auto x : v) s += helper(x);\n    return s;\n}",
            "int main() {\n    cout << solve({1, 2, 3}) << endl;\n    return 0;\n}"),
    "java": ("import java.util.*;",
             "class Solution {\n    static long helper(long x) { return x * x; }\n\n"
             "    public long solve(long[] v) {\n        long s = 0;\n        for (long x : v) s += helper(x);\n"
             "        return s;\n    }\n}",
             "public class Main {\n    public static void main(String[] args) {\n"
             "        System.out.println(new Solution().solve(new long[]{1, 2, 3}));\n    }\n}"),
    "javascript": ("const assert = require('assert');",
                   "function helper(x) {\n  return x * x;\n}\n\nfunction solve(v) {\n"
                   "  return v.reduce((s, x) => s + helper(x), 0);\n}",
                   "console.log(solve([1, 2, 3]));\nassert.strictEqual(solve([2]), 4);"),
    "go": ('package main\n\nimport "fmt"',
           "func helper(x int) int {\n\treturn x * x\n}\n\nfunc solve(v []int) int {\n\ts := 0\n"
           "\tfor _, x := range v {\n\t\ts += helper(x)\n\t}\n\treturn s\n}",
           "func main() {\n\tfmt.Println(solve([]int{1, 2, 3}))\n}"),
    "rust": ("use std::io;",
             "fn helper(x: i64) -> i64 {\n    x * x\n}\n\nfn solve(v: &[i64]) -> i64 {\n"
             "    v.iter().map(|&x| helper(x)).sum()\n}",
             "fn main() {\n    println!(\"{}\", solve(&[1, 2, 3]));\n}"),
}  # fmt: skip


def corpus() -> list[tuple[str, str]]:
    """(response, language): each program in three response shapes."""
    out = []
    for lang, (head, body, main) in PROGRAMS.items():
        out.append((f"Here is a solution:\n\n```{lang}\n{head}\n\n{body}\n\n{main}\n```\n\nLinear time.", lang))
        out.append((f"Imports:\n```{lang}\n{head}\n```\nThe function:\n```{lang}\n{body}\n```\n"
                    f"Try it:\n```{lang}\n{main}\n```\n", lang))  # fmt: skip
        out.append((f"```{lang}\n{head}\n\n{body}\n```\n\nUsage:\n\n```{lang}\n{main}\n```", lang))
    return out * 40


def cpu_seconds() -> float:
    """CPU time of this process plus its parse worker (a live child: read from /proc, not from rusage)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    worker = 0.0
    if _ts_client._worker.proc is not None:
        with open(f"/proc/{_ts_client._worker.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        worker = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return own.ru_utime + own.ru_stime + worker


def rate(responses: list[tuple[str, str]], entry_point: str | None) -> float:
    start = cpu_seconds()
    for text, lang in responses:
        extract_code(text, language=lang, entry_point=entry_point)
    return len(responses) / (cpu_seconds() - start)


def main() -> None:
    responses = corpus()
    rate(responses[:30], "solve")  # start the worker
    best = {"solve": 0.0, None: 0.0}
    for _ in range(3):
        for entry in (None, "solve"):
            best[entry] = max(best[entry], rate(responses, entry))
    load = os.getloadavg()[0]
    print(f"{len(responses)} synthetic responses ({', '.join(PROGRAMS)}), load {load:.1f}\n")
    print("| lenient extraction | responses/CPU-s | vs no entry point |\n|---|---:|---:|")
    print(f"| no entry point | {best[None]:,.0f} | 1.00x |")
    ratio = best["solve"] / best[None]
    print(f"| entry point `solve` (assembled in the worker) | {best['solve']:,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
