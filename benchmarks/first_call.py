"""What a fresh process pays before its first score, per scoring path: the measurement behind the CPU default.

Each run is a new Python process that builds the tiny random Qwen3 classifier, then times `RewardModel(...)` plus
its first n8 scoring call (1 prompt of 400 tokens, 8 candidates of 180-1100), then three more calls (steady
state). FlexAttention runs with a cold torch.compile cache (a new TORCHINDUCTOR_CACHE_DIR: a machine's first run)
and a warm one (later processes); padded is the baseline, measured in the same run, runs interleaved.

    python benchmarks/first_call.py --machine "CPU, 2 cores (dev container)"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = {"padded": 3, "packed-sdpa": 3, "packed-flex (cold cache)": 2, "packed-flex (warm cache)": 3}


def child(method: str) -> None:
    """One fresh process: seconds to the first score and per later call."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import scoring
    from codescaler_rerank import RewardModel
    from codescaler_rerank.testing import build_tiny_decoder_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tiny_decoder_tokenizer(tmp)
    vocab = range(max(tokenizer.all_special_ids) + 1, len(tokenizer))
    model = scoring.build_model("tiny", len(tokenizer), tokenizer.pad_token_id, "cpu", torch.float32)
    [w] = scoring.build_workloads(["n8"], vocab, 0, seed=0)
    start = time.perf_counter()
    rm = RewardModel(model, tokenizer, **scoring.METHODS[method.split(" ")[0]])
    rm.score_token_ids(w.sequences, w.groups)
    first = time.perf_counter() - start
    steady = []
    for _ in range(3):
        start = time.perf_counter()
        rm.score_token_ids(w.sequences, w.groups)
        steady.append(time.perf_counter() - start)
    print(json.dumps({"first": first, "steady": statistics.median(steady), "path": rm.last_batching.path}))


def run(method: str, cache: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache if "warm" in method else tempfile.mkdtemp()}
    out = subprocess.run([sys.executable, __file__, "--child", method], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--machine", default=f"CPU, {os.cpu_count()} cores")
    parser.add_argument("--no-record", dest="record", action="store_false")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    import scoring

    cache = tempfile.mkdtemp()
    run("packed-flex (warm cache)", cache)  # fills the warm cache
    results: dict[str, list[dict]] = {m: [] for m in RUNS}
    for k in range(max(RUNS.values())):
        for method, count in RUNS.items():
            if k < count:
                results[method].append(run(method, cache))
                print(method, results[method][-1], flush=True)
    base_first = statistics.median(r["first"] for r in results["padded"])
    base_steady = statistics.median(r["steady"] for r in results["padded"])
    lines = [
        f"Fresh processes, runs interleaved (load average {os.getloadavg()[0]:.1f} at the end); medians.", "",
        "| method | runs | first call s | vs padded | later calls ms | vs padded |", "|---|---:|---:|---:|---:|---:|",
    ]
    for method, rs in results.items():
        first, steady = statistics.median(r["first"] for r in rs), statistics.median(r["steady"] for r in rs)
        lines.append(f"| {method} | {len(rs)} | {first:.2f} | {base_first / first:.2f}× | {steady * 1e3:.0f} "
                     f"| {base_steady / steady:.2f}× |")
    print("\n".join(lines))
    if args.record:
        scoring.record(scoring.RESULTS, "CPU", f"First call in a fresh process, {args.machine}: tiny, float32", lines)


if __name__ == "__main__":
    main()
