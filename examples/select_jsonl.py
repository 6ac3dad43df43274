"""Rank samples you already have: a JSONL of {"prompt", "candidates"} lines in, the same lines ranked out.

    python examples/select_jsonl.py                                 # offline: a demo file and a tiny random RM
    python examples/select_jsonl.py samples.jsonl -o ranked.jsonl --rm LARK-Lab/CodeScaler-1.7B

(`codescaler-rerank select samples.jsonl` does the same from the shell, with per-line errors and a progress bar.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from codescaler_rerank import Reranker
from codescaler_rerank.testing import reward_model_or_tiny

DEMO = [
    {"id": "add", "prompt": "Write a Python function add(a, b).", "candidates": [
        "```python\ndef add(a, b):\n    return a + b\n```", "Use the + operator.", "```python\ndef add(a, b)\n```",
    ]},
    {"id": "neg", "prompt": "Write a Python function neg(x).", "candidates": [
        "```python\ndef neg(x):\n    return -x\n```", "```python\ndef neg(x):\n    return 0 - x\n```",
    ]},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", type=Path, help="JSONL of {prompt, candidates} (default: a demo file)")
    parser.add_argument("--output", "-o", type=Path, help="ranked JSONL (default stdout)")
    parser.add_argument("--rm", help="reward model name or path (default: a tiny random-weight model built offline)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="select-jsonl-"))
    if args.input is None:
        args.input = workdir / "samples.jsonl"
        args.input.write_text("".join(json.dumps(r) + "\n" for r in DEMO), encoding="utf-8")
    reranker = Reranker(None, reward_model_or_tiny(args.rm))

    with args.input.open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    results = reranker.select_many([(r["prompt"], r["candidates"]) for r in records])  # one bulk RM call
    sink = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    with sink:
        for record, result in zip(records, results):
            ranking = [c.model_dump(include={"index", "valid", "reason", "reward"}) for c in result.candidates]
            sink.write(json.dumps({**record, "best": result.best.code, "ranking": ranking}) + "\n")


if __name__ == "__main__":
    main()
