"""benchmarks/gpu_check.sh runs every check on CPU with the tiny model (`--tiny`), as it would on an H100/H200."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
CHECKS = [
    "parity packed-sdpa = padded, float32", "parity packed-flex = padded, float32",
    "parity packed-sdpa = padded, bfloat16", "parity packed-flex = padded, bfloat16",
    "no compiles after warm-up", "forced flex failure falls back", "out of memory: rows split, budget kept halved",
]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpu_check_passes_on_cpu_with_the_tiny_model(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Scoring benchmark results\n\n## CPU\n", encoding="utf-8")
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_TIMEOUT": "880"}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--tiny", "--device", "cpu", "--results", str(results)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "### gpu_check: CPU" in text and "all checks passed" in text and "FAIL" not in text
    assert [check for check in CHECKS if f"PASS {check}:" not in text] == []
    assert "| packed-flex |" in text and "warm-up: padded" in text
