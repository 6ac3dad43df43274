"""One GPU check of the scoring paths (issue 12), for a machine with torch and transformers and nothing else.

On a random-weight classifier of `--arch` (Qwen3-8B by default): parity of packed-sdpa and packed-flex with padded
in fp32 and bf16; n8 and bulk latency of padded / packed-sdpa / packed-flex (bf16) against the compute floor and
padded, with warm-up time and compile counts; the fallback, by forcing FlexAttention to fail; the out-of-memory
path, by a memory cap (CUDA) or an injected OOM (CPU); the token budget re-read when free memory changes. Writes
the result as one `###` section of benchmarks/RESULTS.md (`## GPU` on CUDA) and exits 1 if a check failed.

    bash benchmarks/gpu_check.sh                   # on an H100/H200: Qwen3-8B architecture, < 8 minutes
    bash benchmarks/gpu_check.sh --tiny            # the same checks on CPU with the tiny model (CI-sized)

Imports the library's scoring modules without its package `__init__` where that cannot load (the package also
needs pydantic and tree-sitter, which a GPU machine's preinstalled stack may lack).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]
try:
    import codescaler_rerank  # noqa: F401  (the whole package, where its dependencies are installed)
except ImportError:
    package = types.ModuleType("codescaler_rerank")
    package.__path__ = [str(ROOT / "src" / "codescaler_rerank")]
    sys.modules["codescaler_rerank"] = package
    from codescaler_rerank.reward_model import RewardModel as _RewardModel

    package.RewardModel = _RewardModel

import scoring  # noqa: E402  (benchmarks/scoring.py: models, workloads, timing and the results file)

from codescaler_rerank.reward_model import RewardModel  # noqa: E402
from codescaler_rerank.scoring_paths import compiled_graphs, disagreement, tolerance  # noqa: E402
from codescaler_rerank.testing import build_tiny_decoder_tokenizer  # noqa: E402

PACKED = ("packed-sdpa", "packed-flex")
TARGETS = {"n8 × floor": 1.5, "n8 vs padded": 2.5, "bulk % peak": 60.0}


class Report:
    """Lines of the results section, and whether every check passed."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failed: list[str] = []
        self.start = time.perf_counter()

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
        self.lines += lines

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.add(f"- {'PASS' if ok else 'FAIL'} {name}: {detail}")
        if not ok:
            self.failed.append(name)

    def step(self, title: str) -> None:
        self.add("", f"**{title}** (at {time.perf_counter() - self.start:.0f} s)", "")


def parity(report: Report, model, tokenizer, workloads, dtype: torch.dtype) -> None:
    """Packed scores against padded on `workloads`, to the probe's tolerance for `dtype`."""
    limit = tolerance(dtype)
    padded = RewardModel(model, tokenizer, packing=False)
    for method in PACKED:
        rm = RewardModel(model, tokenizer, **scoring.METHODS[method])
        worst = 0.0
        for w in workloads:
            got, want = rm.score_token_ids(w.sequences, w.groups), padded.score_token_ids(w.sequences, w.groups)
            worst = max(worst, disagreement(got, want))
        name = f"parity {method} = padded, {str(dtype).removeprefix('torch.')}"
        report.check(name, rm.scoring_path == method and worst <= limit,
                     f"path {rm.scoring_path}, max |diff| / max(1, |padded|) = {worst:.1e} (limit {limit:g})")


def latency(report: Report, model, tokenizer, workloads, device: str, repeats: int, peak: float) -> None:
    """Warm-up, then n8 and bulk timings of every path, with the issue's targets."""
    rms = scoring.scorers(model, tokenizer, list(PACKED))
    report.add(scoring.warm_up(rms), "")
    graphs = compiled_graphs()
    measured = {}
    for w in workloads:
        timings = scoring.time_methods(rms, w, device, warmup=1, repeats=repeats)
        flops = scoring.packed_flops(model.config, w)
        report.add(*scoring.table(w, timings, flops, peak), "")
        flex, padded = timings[-1], timings[0]
        floor = flops / peak
        measured[w.name] = (statistics.median(flex.seconds), statistics.median(padded.seconds), floor)
    new = compiled_graphs() - graphs
    report.check("no compiles after warm-up", new == 0, f"{new} graphs compiled during the timed runs")
    if device == "cuda":
        flex_s, padded_s, floor = measured["n8"]
        report.check("n8 packed-flex ≤ 1.5 × floor", flex_s / floor <= TARGETS["n8 × floor"],
                     f"{flex_s / floor:.2f} × floor")
        report.check("n8 packed-flex ≥ 2.5 × faster than padded", padded_s / flex_s >= TARGETS["n8 vs padded"],
                     f"{padded_s / flex_s:.2f}×")
        flex_s, _, floor = measured["bulk"]
        report.check("bulk packed-flex ≥ 60 % of matmul peak", 100 * floor / flex_s >= TARGETS["bulk % peak"],
                     f"{100 * floor / flex_s:.1f} %")


def forced_fallback(report: Report, model, tokenizer, workload, device: str) -> None:
    """FlexAttention made to fail (its block mask raises): one warning naming the error, the next path, the scores."""
    flex = importlib.import_module("torch.nn.attention.flex_attention")
    original = flex.create_block_mask

    def fail(*args, **kwargs):
        raise RuntimeError("forced by gpu_check: flex attention unavailable")

    rm = RewardModel(model, tokenizer, attention="flex")
    flex.create_block_mask = fail
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = rm.score_token_ids(workload.sequences, workload.groups)
    finally:
        flex.create_block_mask = original
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    want = RewardModel(model, tokenizer, packing=False).score_token_ids(workload.sequences, workload.groups)
    expected = "packed-sdpa" if device == "cuda" else "padded"
    diff = disagreement(got, want)
    report.check("forced flex failure falls back", rm.scoring_path == expected and len(messages) == 1
                 and "forced by gpu_check" in messages[0] and diff <= tolerance(next(model.parameters()).dtype),
                 f"now {rm.scoring_path}, {len(messages)} warning(s): {messages[0][:160] if messages else '-'}; "
                 f"max diff to padded {diff:.1e}")


@contextlib.contextmanager
def memory_capped(model, device: str, limit_tokens: int):
    """CUDA: cap this process's memory a little above what is allocated now, so large rows really run out.
    CPU: inject torch.cuda.OutOfMemoryError on forward passes over `limit_tokens` tokens."""
    if device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(min(1.0, (torch.cuda.memory_allocated() + 2 * 2**30) / total))
        try:
            yield "memory capped at allocated + 2 GiB"
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0)
        return

    def hook(module, args, kwargs):
        if kwargs["input_ids"].numel() > limit_tokens:
            raise torch.cuda.OutOfMemoryError(f"injected by gpu_check: {kwargs['input_ids'].numel()} tokens")

    handle = getattr(model, model.base_model_prefix).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield f"OOM injected above {limit_tokens} tokens"
    finally:
        handle.remove()


def out_of_memory(report: Report, model, tokenizer, workload, device: str) -> None:
    """Rows too big for the memory at hand are split and rescored; the budget stays halved; scores unchanged."""
    want = RewardModel(model, tokenizer, packing=False).score_token_ids(workload.sequences, workload.groups)
    rm = RewardModel(model, tokenizer, attention="flex", token_budget=1 << 20)  # all of bulk in one row
    before = rm.token_budget
    with memory_capped(model, device, limit_tokens=2048) as how:
        got = rm.score_token_ids(workload.sequences, workload.groups)
    batching = rm.last_batching
    diff = disagreement(got, want)
    report.check("out of memory: rows split, budget kept halved", batching.oom_splits > 0
                 and rm.token_budget < before and diff <= tolerance(next(model.parameters()).dtype),
                 f"{how}: {batching.oom_splits} splits, {batching.rows} rows, budget {before} -> {rm.token_budget}, "
                 f"max diff to padded {diff:.1e}")
    if device == "cuda":  # the default budget follows free memory, read on every call
        rm = RewardModel(model, tokenizer, attention="flex")
        roomy = rm.token_budget
        ballast = torch.empty(max(0, torch.cuda.mem_get_info()[0] - 4 * 2**30), dtype=torch.uint8, device="cuda")
        tight = rm.token_budget
        del ballast
        torch.cuda.empty_cache()
        report.check("token budget re-read per call", tight < roomy,
                     f"{roomy} tokens, {tight} with all but 4 GiB of free memory taken")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU (or --device): a quick check")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", choices=list(scoring.ARCHS), help="default: qwen3-8b, tiny with --tiny")
    parser.add_argument("--bulk-prompts", type=int, help="prompts (x 8 rollouts) in bulk: 32 on CUDA, 4 on CPU")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--machine", help="how the results file names this machine (default: detected)")
    parser.add_argument("--results", type=Path, default=scoring.RESULTS)
    args = parser.parse_args()
    cuda = args.device == "cuda"
    arch = args.arch or ("tiny" if args.tiny else "qwen3-8b")
    machine = args.machine or (torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tiny_decoder_tokenizer(tmp)
    vocab_size = len(tokenizer) if arch == "tiny" else scoring.QWEN3_VOCAB
    vocab = range(max(tokenizer.all_special_ids) + 1, len(tokenizer))
    report = Report()
    report.add(f"torch {torch.__version__}, transformers {transformers.__version__}, {machine}, arch {arch}; "
               "written by benchmarks/gpu_check.sh.")

    report.step("Parity, packed vs padded")
    checks = scoring.build_workloads(["n8", "bulk"], vocab, 3, seed=1)
    for dtype in (torch.float32, torch.bfloat16):
        model = scoring.build_model(arch, vocab_size, tokenizer.pad_token_id, args.device, dtype)
        parity(report, model, tokenizer, checks, dtype)
        del model
        if cuda:
            torch.cuda.empty_cache()

    dtype = torch.bfloat16 if cuda else torch.float32  # CPU: fp32, as benchmarks/scoring.py measures it
    report.step(f"Latency, {str(dtype).removeprefix('torch.')}")
    peak = scoring.measure_peak(args.device, dtype)
    model = scoring.build_model(arch, vocab_size, tokenizer.pad_token_id, args.device, dtype)
    report.add(f"Measured matmul peak {peak / 1e12:.3f} TFLOP/s; 1 warm-up + {args.repeats} timed runs per method.",
               "")
    workloads = scoring.build_workloads(["n8", "bulk"], vocab, args.bulk_prompts or (32 if cuda else 4), seed=0)
    latency(report, model, tokenizer, workloads, args.device, args.repeats, peak)

    report.step("Fallback and memory")
    forced_fallback(report, model, tokenizer, checks[0], args.device)
    out_of_memory(report, model, tokenizer, workloads[-1], args.device)
    verdict = "all checks passed" if not report.failed else f"FAILED: {', '.join(report.failed)}"
    report.add("", f"{verdict}; {time.perf_counter() - report.start:.0f} s in all.")
    scoring.record(args.results, "GPU" if cuda else "CPU", f"gpu_check: {machine}, {arch}", report.lines)
    print(f"recorded in {args.results}")
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
