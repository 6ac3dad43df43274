"""`codescaler-rerank select` throughput: lines per reward-model call (bulk) vs one RM call per line (the baseline).

    python benchmarks/cli_select.py [--lines 64] [--candidates 8] [--batch-lines 32] [--rm PATH]

Both runs rank the same JSONL through `jsonl_select.select_jsonl` with the same reward model (default: a tiny
random Qwen3 classifier built offline, so the numbers measure the pipeline, not a real model) and must give the
same rankings; the script prints lines/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time

from codescaler_rerank import Reranker, RewardModel
from codescaler_rerank.jsonl_select import select_jsonl
from codescaler_rerank.testing import build_tiny_qwen3_classifier


def make_jsonl(lines: int, candidates: int) -> bytes:
    """`lines` prompts, each with `candidates` distinct small programs (one invalid)."""
    rows = []
    for i in range(lines):
        answers = [f"```python\ndef f(x):\n    return x * {i} + {j}\n```" for j in range(candidates - 1)]
        rows.append({"prompt": f"Write f(x) for case {i}.", "candidates": answers + ["no code here"]})
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def run(reranker: Reranker, data: bytes, batch_lines: int) -> tuple[float, list[dict]]:
    sink = io.StringIO()
    start = time.perf_counter()
    select_jsonl(reranker, io.BytesIO(data), sink, batch_lines=batch_lines)
    return time.perf_counter() - start, [json.loads(line) for line in sink.getvalue().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--batch-lines", type=int, default=32)
    parser.add_argument("--rm", help="reward model path (default: a tiny random Qwen3 classifier)")
    args = parser.parse_args()
    path = args.rm or tempfile.mkdtemp(prefix="tiny-rm-")
    if args.rm is None:
        build_tiny_qwen3_classifier(path)
    reranker = Reranker(None, RewardModel.from_pretrained(path))
    data = make_jsonl(args.lines, args.candidates)
    run(reranker, data[: data.index(b"\n") + 1], 1)  # warm-up
    one, rows_one = run(reranker, data, 1)
    bulk, rows_bulk = run(reranker, data, args.batch_lines)
    order = [[c["index"] for c in r["result"]["candidates"]] for r in rows_one]
    assert order == [[c["index"] for c in r["result"]["candidates"]] for r in rows_bulk], "rankings differ"
    print(f"{args.lines} lines x {args.candidates} candidates, rm={path}")
    print(f"one RM call per line : {args.lines / one:8.1f} lines/s ({one:.2f} s)")
    print(f"{args.batch_lines} lines per RM call: {args.lines / bulk:8.1f} lines/s ({bulk:.2f} s)")
    print(f"ratio bulk / per-line: {one / bulk:.2f}x")


if __name__ == "__main__":
    main()
