"""Scoring latency: padded batch vs tree-packed (SDPA with a boolean mask) vs tree-packed (FlexAttention).

Workloads: `n8` (one 400-token prompt, 8 completions of 180-1100 tokens) and `bulk` (64 prompts x 8 rollouts,
4 on CPU; prompt and completion lengths log-normal, medians 250 and 450 tokens). Models are random-weight Qwen3 classifiers built from hand-written
configs, so nothing downloads. Each packed method is first checked against the padded path on an fp32 twin of the
architecture (2 layers, same device and kernels); a mismatch aborts the run before anything is timed. The timed
runs print their own max abs difference to the padded batch too.

    python benchmarks/scoring.py --device cpu --arch tiny --machine "CPU, 2 cores (dev container)"
    python benchmarks/scoring.py --device cuda --arch qwen3-8b --machine "NVIDIA H200"

Reported per method: median/min/max latency, input tokens/s, the ratio to the compute floor (FLOPs of the packed
work, from the config, over the peak of a matmul measured in the same run: bf16 on CUDA, fp32 on CPU), the share of
that peak reached, the speed-up over the padded batch, and the max abs score difference to the padded batch.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers

from codescaler_rerank import RewardModel
from codescaler_rerank.packing import common_prefix_len, forward_flops
from codescaler_rerank.scoring_paths import compiled_graphs
from codescaler_rerank.testing import build_tiny_decoder_tokenizer

RESULTS = Path(__file__).with_name("RESULTS.md")
QWEN3_VOCAB = 151936


def qwen3_sizes(
    hidden: int, layers: int, heads: int, kv_heads: int, head_dim: int, intermediate: int
) -> dict[str, int]:
    """Qwen3Config size arguments."""
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "intermediate_size": intermediate,
    }


ARCHS = {
    "tiny": qwen3_sizes(64, 2, 2, 1, 32, 128),
    "qwen3-1.7b": qwen3_sizes(2048, 28, 16, 8, 128, 6144),
    "qwen3-4b": qwen3_sizes(2560, 36, 32, 8, 128, 9728),
    "qwen3-8b": qwen3_sizes(4096, 36, 32, 8, 128, 12288),
}
METHODS = {"padded": {"packing": False}, "packed-sdpa": {"attention": "sdpa"}, "packed-flex": {"attention": "flex"}}
CHECK_LAYERS = 2
CHECK_PROMPTS = 3
FP32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Workload:
    name: str
    sequences: list[list[int]]
    groups: list[int]


@dataclass(frozen=True)
class Timing:
    method: str
    seconds: list[float]
    tokens: int
    rows: int
    max_diff: float


def build_workloads(names: list[str], vocab: range, bulk_prompts: int, seed: int) -> list[Workload]:
    """The N=8 workload of the issue and a bulk RL-scoring one; token ids random, lengths as specified."""
    rng = random.Random(seed)

    def ids(n: int) -> list[int]:
        return [rng.choice(vocab) for _ in range(n)]

    def lognormal(median: float, sigma: float, low: int, high: int) -> int:
        return min(high, max(low, round(rng.lognormvariate(math.log(median), sigma))))

    built = []
    if "n8" in names:
        prompt = ids(400)
        lengths = [round(180 + (1100 - 180) * k / 7) for k in range(8)]
        built.append(Workload("n8", [prompt + ids(n) for n in lengths], [0] * 8))
    if "bulk" in names:
        sequences, groups = [], []
        for g in range(bulk_prompts):
            prompt = ids(lognormal(250, 0.6, 40, 1500))
            for _ in range(8):
                sequences.append(prompt + ids(lognormal(450, 0.8, 20, 4000 - len(prompt))))
                groups.append(g)
        built.append(Workload("bulk", sequences, groups))
    return built


def build_model(arch: str, vocab_size: int, pad_id: int, device: str, dtype: torch.dtype, layers: int | None = None):
    """A random-weight Qwen3ForSequenceClassification (1 logit) of `arch`, built on `device`."""
    sizes = {**ARCHS[arch], "num_hidden_layers": layers or ARCHS[arch]["num_hidden_layers"]}
    config = transformers.Qwen3Config(
        **sizes, vocab_size=vocab_size, max_position_embeddings=40960, num_labels=1, pad_token_id=pad_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device(device):
        return transformers.AutoModelForSequenceClassification.from_config(config, dtype=dtype).eval()


def packed_flops(config, workload: Workload) -> float:
    """FLOPs of the packed work: matmuls over its tokens (each prompt once) + attention over the visible pairs."""
    per_token, per_pair = forward_flops(config)
    tokens = pairs = 0
    for g in sorted(set(workload.groups)):
        seqs = [s for s, k in zip(workload.sequences, workload.groups) if k == g]
        p = common_prefix_len(seqs)
        own = [len(s) - p for s in seqs]
        tokens += p + sum(own)
        pairs += p * (p + 1) // 2 + sum(n * p + n * (n + 1) // 2 for n in own)
    return per_token * tokens + per_pair * pairs


def measure_peak(device: str, dtype: torch.dtype) -> float:
    """Best FLOP/s of a square matmul in `dtype` on `device`."""
    n = 8192 if device == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for _ in range(10):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def scorers(model, tokenizer, methods: list[str]) -> dict[str, RewardModel]:
    return {m: RewardModel(model, tokenizer, **METHODS[m]) for m in ["padded", *methods]}


def warm_up(rms: dict[str, RewardModel]) -> str:
    """`warmup()` each method (probe, flex compiles); one line of seconds and compiled graphs. A method that fell
    back to another path stops the run: its timings would be the other path's."""
    parts = []
    for method, rm in rms.items():
        warm = rm.warmup()
        if warm.path != method:
            sys.exit(f"{method} fell back to {warm.path} on this machine; not timing it")
        parts.append(f"{method} {warm.seconds:.1f} s ({warm.compiled_graphs} graphs compiled)")
    return "warm-up: " + ", ".join(parts)


def check_exactness(model, tokenizer, workloads: list[Workload], methods: list[str], device: str) -> None:
    """Packed scores equal padded ones (fp32, to `FP32_TOLERANCE`) on this device, or the run stops here."""
    for w in workloads:
        for t in time_methods(scorers(model, tokenizer, methods), w, device, warmup=0, repeats=1)[1:]:
            print(f"exactness, fp32 {CHECK_LAYERS}-layer twin, {w.name}, {t.method}: max abs diff {t.max_diff:.2e}")
            if not t.max_diff <= FP32_TOLERANCE:
                sys.exit(f"{t.method} disagrees with the padded path on {w.name}; not timing it")


def max_abs_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b))


def time_methods(rms: dict[str, RewardModel], w: Workload, device: str, warmup: int, repeats: int) -> list[Timing]:
    """Warm each method up (FlexAttention compiles), then time `repeats` full scoring calls; padded comes first."""
    results = []
    for method, rm in rms.items():
        for _ in range(warmup):
            rm.score_token_ids(w.sequences, w.groups)
        seconds = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            scores = rm.score_token_ids(w.sequences, w.groups)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
        if rm.last_batching.path != method:
            sys.exit(f"{method} fell back to {rm.last_batching.path} during the timed runs")
        results.append((method, seconds, rm.last_batching, scores))
    reference = results[0][3]
    return [Timing(m, sec, b.tokens, b.rows, max_abs_diff(scores, reference)) for m, sec, b, scores in results]


def table(w: Workload, timings: list[Timing], flops: float, peak: float) -> list[str]:
    """Markdown rows for one workload."""
    input_tokens = sum(len(s) for s in w.sequences)
    floor = flops / peak
    padded = statistics.median(timings[0].seconds)
    summary = (
        f"{w.name}: {len(set(w.groups))} prompt(s), {len(w.sequences)} candidates, {input_tokens} input tokens, "
        f"{flops / 1e12:.3f} TFLOP packed, compute floor {floor * 1e3:.2f} ms"
    )
    header = "| method | median ms | min ms | max ms | tokens/s | tokens run | rows | × floor | % peak | vs padded |"
    lines = [summary, "", header + " max abs diff |", "|---|" + "---:|" * 10]
    for t in timings:
        median = statistics.median(t.seconds)
        lines.append(
            f"| {t.method} | {median * 1e3:.1f} | {min(t.seconds) * 1e3:.1f} | {max(t.seconds) * 1e3:.1f} "
            f"| {input_tokens / median:,.0f} | {t.tokens} | {t.rows} | {median / floor:.2f} "
            f"| {100 * floor / median:.1f} | {padded / median:.2f}× | {t.max_diff:.1e} |"
        )
    return lines


def record(path: Path, chapter: str, title: str, body: list[str]) -> None:
    """Replace the `### title` section of the results file, or add it at the end of its `## chapter`."""
    lines = path.read_text(encoding="utf-8").split("\n") if path.exists() else ["# Scoring benchmark results", ""]
    heading = f"### {title}"
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "### "))), len(lines))
    else:
        if f"## {chapter}" not in lines:
            lines += [f"## {chapter}", ""]  # after the blank line the final newline leaves
        first = lines.index(f"## {chapter}") + 1
        start = end = next((i for i in range(first, len(lines)) if lines[i].startswith("## ")), len(lines))
    lines[start:end] = [heading, "", *body, ""]
    path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", choices=list(ARCHS), default="tiny")
    parser.add_argument("--workloads", nargs="+", choices=["n8", "bulk"], default=["n8", "bulk"])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS)[1:], default=list(METHODS)[1:])
    parser.add_argument("--bulk-prompts", type=int, help="prompts (x 8 rollouts) in bulk: default 64, 4 on CPU")
    parser.add_argument("--warmup", type=int, help="untimed runs per method: default 2, 1 on CPU")
    parser.add_argument("--repeats", type=int, help="timed runs per method: default 5, 3 on CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--machine", help="how the results file names this machine (default: detected)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-record", dest="record", action="store_false", help="print only")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    bulk_prompts = args.bulk_prompts or (64 if cuda else 4)
    warmup = args.warmup if args.warmup is not None else (2 if cuda else 1)
    repeats = args.repeats or (5 if cuda else 3)
    machine = args.machine or (torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads")

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tiny_decoder_tokenizer(tmp)
    vocab_size = len(tokenizer) if args.arch == "tiny" else QWEN3_VOCAB
    vocab = range(max(tokenizer.all_special_ids) + 1, len(tokenizer))
    twin = build_model(args.arch, vocab_size, tokenizer.pad_token_id, args.device, torch.float32, CHECK_LAYERS)
    check_exactness(twin, tokenizer, build_workloads(["n8", "bulk"], vocab, CHECK_PROMPTS, args.seed), args.methods,
                    args.device)
    del twin
    if cuda:
        torch.cuda.empty_cache()

    peak = measure_peak(args.device, dtype)
    model = build_model(args.arch, vocab_size, tokenizer.pad_token_id, args.device, dtype)
    workloads = build_workloads(args.workloads, vocab, bulk_prompts, args.seed)
    rms = scorers(model, tokenizer, args.methods)
    warmed, graphs = warm_up(rms), compiled_graphs()
    title = f"{machine}: {args.arch}, {str(dtype).removeprefix('torch.')}"
    budgets = ", ".join(f"{m} {rm.token_budget}" for m, rm in rms.items())
    setup = (
        f"torch {torch.__version__}, transformers {transformers.__version__}; measured matmul peak "
        f"{peak / 1e12:.3f} TFLOP/s; token budgets: {budgets}; {warmup} warm-up + {repeats} timed runs per method."
    )
    body = [setup, ""]
    for w in workloads:
        lines = table(w, time_methods(rms, w, args.device, warmup, repeats), packed_flops(model.config, w), peak)
        print("\n".join(lines) + "\n")
        body += [*lines, ""]
    body += [f"{warmed}; graphs compiled after warm-up, over all timed runs: {compiled_graphs() - graphs}.", ""]
    print(body[-2])
    if args.record:
        record(args.results, "GPU" if cuda else "CPU", title, body[:-1])
        print(f"recorded under '### {title}' in {args.results}")


if __name__ == "__main__":
    main()
