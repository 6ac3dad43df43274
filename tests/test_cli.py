"""The `codescaler-rerank` command line, end to end with a tiny real reward model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from codescaler_rerank.cli import main

GOOD = "Sure:\n```python\ndef double(x):\n    return 2 * x\n```"
BAD = "```python\ndef double(x) return 2x\n```"


def test_extract_prints_code_or_json(tmp_path, capsys):
    response = tmp_path / "answer.md"
    response.write_text("Explanation first.\n" + GOOD + "\nRun it with `python x.py`.")
    assert main(["extract", str(response)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "def double(x):\n    return 2 * x" and "valid=True" in err
    assert main(["extract", str(response), "--json", "--mode", "strict"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] and data["language"] == "python" and data["reason"] == "ok"


def test_select_ranks_a_jsonl_file_and_reports_bad_lines(tmp_path, capsys, tiny_qwen3_path):
    source = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": "a", "prompt": "Double x.", "candidates": [BAD, GOOD]}),
        "{not json",
        json.dumps({"id": "c", "prompt": "Double x."}),
        json.dumps({"id": "d", "prompt": "Double x.", "candidates": [GOOD]}),
    ]
    source.write_text("\n".join(lines) + "\n")
    out_path = tmp_path / "out.jsonl"
    code = main(["select", str(source), "--rm", str(tiny_qwen3_path), "-o", str(out_path), "--no-progress"])
    assert code == 1  # two lines could not be ranked; the others still were
    records = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert len(records) == 4
    assert records[0]["id"] == "a" and records[0]["best"]["index"] == 1 and records[0]["best"]["valid"]
    assert records[1]["line"] == 2 and "invalid JSON" in records[1]["error"]
    assert records[2]["line"] == 3 and "candidates" in records[2]["error"]
    assert records[3]["id"] == "d" and records[3]["candidates"][0]["rank"] == 1
    assert "2 of 4 lines" in capsys.readouterr().err


def test_errors_are_one_line_and_nonzero(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": "p", "candidates": [GOOD]}) + "\n")
    assert main(["select", str(source), "--rm", str(tmp_path / "no-such-model"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: RewardModelError: cannot load reward model") and "\n" not in err


def test_module_entry_point_reads_stdin():
    proc = subprocess.run(
        [sys.executable, "-m", "codescaler_rerank", "extract", "--json"], input=GOOD, capture_output=True, text=True
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["valid"]


def test_usage_errors_exit_nonzero():
    with pytest.raises(SystemExit) as exc:
        main(["rerank"])  # --generator is required
    assert exc.value.code == 2


def test_rerank_samples_from_a_real_server_and_prints_json(tiny_qwen3_path, capsys):
    from openai_server import OpenAIServer

    with OpenAIServer([GOOD, BAD, "no code at all"]) as server:
        code = main([
            "rerank", "Double x.", "--generator", "litellm:openai/ok", "--api-base", server.base_url,
            "--n", "3", "--temperature", "0.7", "--rm", str(tiny_qwen3_path), "--json",
        ])
        (body,) = server.chat_requests()
    assert code == 0 and body["n"] == 3 and body["temperature"] == 0.7
    result = json.loads(capsys.readouterr().out)
    assert len(result["candidates"]) == 3
    assert result["best"]["valid"] and result["best"]["code"] == "def double(x):\n    return 2 * x"
    assert [c["valid"] for c in result["candidates"]] == [True, False, False]


def test_rerank_reads_the_prompt_from_stdin_and_prints_a_table(tiny_qwen3_path, capsys, monkeypatch):
    import io

    from openai_server import OpenAIServer

    monkeypatch.setattr(sys, "stdin", io.StringIO("Double x."))
    with OpenAIServer([GOOD, BAD]) as server:
        code = main([
            "rerank", "-", "--generator", "litellm:openai/ok", "--api-base", server.base_url, "--n", "2",
            "--rm", str(tiny_qwen3_path),
        ])
        prompts = {b["messages"][-1]["content"] for b in server.chat_requests()}
    out = capsys.readouterr().out
    assert code == 0 and prompts == {"Double x."}
    assert out.splitlines()[0].split() == ["rank", "idx", "valid", "reason", "score", "reward", "lines"]
    assert "# best (candidate 0):\ndef double(x):" in out


def test_table_reports_failed_samples(tiny_rm):
    from codescaler_rerank import GenerationFailure, GenerationOutput, Reranker
    from codescaler_rerank.cli import format_result
    from codescaler_rerank.generators.base import Completion

    output = GenerationOutput(
        completions=[Completion(text=GOOD)], failures=[GenerationFailure(index=1, error="Timeout: upstream too slow")]
    )
    text = format_result(Reranker(reward_model=tiny_rm).rank_output("Double x.", output))
    assert "failed sample 1: Timeout: upstream too slow" in text
