"""Every example runs offline (tiny random-weight models) and prints what it promises."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=240, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def needs(*modules: str):
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


def test_quickstart():
    out = run_example("quickstart.py")
    assert "# best (candidate" in out and "def second_largest" in out


def test_select_jsonl(tmp_path):
    out = tmp_path / "ranked.jsonl"
    run_example("select_jsonl.py", "-o", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["add", "neg"]
    assert records[0]["best"] == "def add(a, b):\n    return a + b"
    assert [c["valid"] for c in records[0]["ranking"]] == [True, False, False]


@needs("fastapi", "uvicorn", "prometheus_client")
def test_proxy_with_openai_client():
    out = run_example("proxy_with_openai_client.py")
    assert "def is_even" in out and out.count("rank ") == 4


@needs("trl", "datasets")
def test_trl_grpo_reward():
    out = run_example("trl_grpo_reward.py")
    assert "step 1: reward" in out and "step 2: reward" in out


@needs("langgraph")
def test_agents_langgraph():
    out = run_example("agents_langgraph.py")
    assert "def is_even" in out and out.count("rank ") == 4


@needs("agents", "fastapi", "uvicorn", "prometheus_client")
def test_agents_openai_proxy():
    out = run_example("agents_openai_proxy.py")
    assert "def is_even(n):\n    return n % 2 == 0" in out
