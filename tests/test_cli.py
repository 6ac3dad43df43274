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
