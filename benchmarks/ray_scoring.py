"""Bulk scoring throughput with Ray Data: an actor pool of 1 vs 2 `RewardScorer`s, against one process.

The reward model is a random-weight Qwen3 classifier (4 layers, hidden 256) built here, so nothing downloads; rows
are {prompt, response} rollouts with ~300-token fenced programs. Actor start-up (a process that imports torch and
loads the model) is a fixed cost, so the throughput counts the rows that arrive after the first output batch over
the time from that batch to the last (each pool size on a fresh cluster); the wall time with start-up is printed too.
The baseline is one `RewardScorer` called in this process on the same batches (after one warm-up batch). Every Ray run's scores are checked
against the baseline's (max abs difference printed); rows lost or reordered abort the run.

    python benchmarks/ray_scoring.py --rows 768 --machine "CPU, 2 cores (dev container)"
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import pandas as pd
import ray
import torch
import transformers

from codescaler_rerank.integrations.ray import RewardScorer, score_dataset
from codescaler_rerank.testing import build_tiny_decoder_tokenizer

WORDS = ("total", "value", "items", "index", "result", "count", "left", "right", "data", "key")


def build_model(path: str) -> None:
    tokenizer = build_tiny_decoder_tokenizer(path)
    config = transformers.Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False, num_labels=1,
    )
    torch.manual_seed(0)
    transformers.Qwen3ForSequenceClassification(config).save_pretrained(path)


def rollouts(k: int) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for i in range(k):
        body = "\n".join(f"    {rng.choice(WORDS)} = {rng.choice(WORDS)} + {rng.randint(0, 99)}" for _ in range(30))
        rows.append({"id": i, "prompt": f"Task {i % 16}: combine the values and return the total.",
                     "response": f"```python\ndef solve(values):\n{body}\n    return total\n```"})
    return rows


def run_pool(path: str, rows: list[dict], actors: int, batch_size: int) -> tuple[float, float, list[dict]]:
    """(rows/s after the first output batch, wall seconds with start-up, output rows) of one pool size."""
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        start = time.perf_counter()
        scored = score_dataset(ray.data.from_items(rows), path, actors=actors, batch_size=batch_size,
                               num_cpus=os.cpu_count() / actors)
        out: list[dict] = []
        first = first_rows = 0.0
        for batch in scored.iter_batches(batch_size=None, batch_format="pandas"):
            out += batch.to_dict("records")
            if not first:
                first, first_rows = time.perf_counter(), len(out)
        end = time.perf_counter()
        return (len(out) - first_rows) / (end - first), end - start, out
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=768)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--machine", default="")
    args = parser.parse_args()
    path = tempfile.mkdtemp(prefix="ray-bench-rm-")
    build_model(path)
    rows = rollouts(args.rows)

    scorer = RewardScorer(path)
    scorer(pd.DataFrame(rows[: args.batch_size]))  # warm-up, as the actors' first batch is not timed apart either
    start = time.perf_counter()
    batches = [scorer(pd.DataFrame(rows[i : i + args.batch_size])) for i in range(0, len(rows), args.batch_size)]
    base_seconds = time.perf_counter() - start
    baseline = [s for b in batches for s in b["score"]]
    base_rate = len(rows) / base_seconds
    print(f"machine: {args.machine}  load average at start: {os.getloadavg()[0]:.1f}")
    print(f"one process (torch threads {torch.get_num_threads()}): {len(rows)} rows in {base_seconds:.1f} s, "
          f"{base_rate:.1f} rows/s")
    rates = {}
    for actors in (1, 2):
        rates[actors], wall, out = run_pool(path, rows, actors, args.batch_size)
        if [r["id"] for r in out] != list(range(len(rows))):
            raise SystemExit(f"{actors} actor(s): rows lost or reordered")
        diff = max(abs(r["score"] - s) for r, s in zip(out, baseline))
        print(f"ray, {actors} actor(s): {len(rows)} rows in {wall:.1f} s with start-up; {rates[actors]:.1f} rows/s "
              f"after the first batch ({rates[actors] / base_rate:.2f}x one process), max |score diff| {diff:.2e}")
    print(f"2 actors / 1 actor: {rates[2] / rates[1]:.2f}x  load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
