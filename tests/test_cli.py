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
    response.write_text(GOOD + "\n```python\nprint(double(2))\n```")
    assert main(["extract", str(response), "--entry-point", "double"]) == 0
    assert capsys.readouterr().out.strip() == "def double(x):\n    return 2 * x"


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
    assert [r["line"] for r in records] == [1, 2, 3, 4]
    assert records[0]["input"]["id"] == "a" and records[0]["error"] is None
    assert records[0]["result"]["best"]["index"] == 1 and records[0]["result"]["best"]["valid"]
    assert records[1]["input"] is None and records[1]["result"] is None and "invalid JSON" in records[1]["error"]
    assert records[2]["input"] == {"id": "c", "prompt": "Double x."} and "candidates" in records[2]["error"]
    assert records[3]["input"]["id"] == "d" and records[3]["result"]["candidates"][0]["rank"] == 1
    assert "2 of 4 lines" in capsys.readouterr().err


class CountingScorer:
    """The real tiny RM, counting its bulk calls; `fail_prompt` makes a call containing that prompt raise."""

    def __init__(self, model, fail_prompt=None):
        self.model, self.name, self.fail_prompt = model, model.name, fail_prompt
        self.calls = []

    def score_pairs(self, pairs):
        self.calls.append(len(pairs))
        if any(prompt == self.fail_prompt for prompt, _ in pairs):
            raise RuntimeError("scoring failed for this prompt")
        return self.model.score_pairs(pairs)


def _select(reranker, data, **kwargs):
    import io

    from codescaler_rerank.jsonl_select import select_jsonl

    sink = io.StringIO()
    counts = select_jsonl(reranker, io.BytesIO(data), sink, **kwargs)
    return counts, [json.loads(line) for line in sink.getvalue().splitlines()]


def test_select_scores_the_file_in_bulk_calls(tiny_rm):
    from codescaler_rerank import Reranker

    prompts = [f"Double x, case {i}." for i in range(10)]
    candidates = [GOOD, BAD, "```python\ndef double(x):\n    return x + x\n```"]
    data = "".join(json.dumps({"prompt": p, "candidates": candidates}) + "\n" for p in prompts)
    scorer = CountingScorer(tiny_rm)
    (rows, errors), out = _select(Reranker(reward_model=scorer), data.encode(), batch_lines=4)
    assert (rows, errors) == (10, 0)
    assert scorer.calls == [8, 8, 4]  # 10 lines in 3 RM calls (2 valid programs per line), not 10
    one_by_one = Reranker(reward_model=tiny_rm)
    for prompt, row in zip(prompts, out):
        alone = one_by_one.select(prompt, candidates)
        got = row["result"]["candidates"]
        assert [c["index"] for c in got] == [c.index for c in alone.candidates]
        assert [c["score"] for c in got] == pytest.approx([c.score for c in alone.candidates], abs=1e-5)


def test_select_keeps_every_line_of_hostile_input(tiny_rm):
    from codescaler_rerank import Reranker

    ok = {"prompt": "Double x.", "candidates": [GOOD], "error": "theirs", "line": 99, "result": "theirs too"}
    lines = [
        b"\xef\xbb\xbf" + json.dumps({"prompt": "Double x.", "candidates": [GOOD]}).encode(),  # UTF-8 BOM
        json.dumps({"prompt": "Double x.", "candidates": ["caf\u00e9 \xff"]}).encode()[:-3] + b"\xff\"]}",  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nested too deeply for the json module
        json.dumps(ok).encode(),
        b"",
        json.dumps({"prompt": "fail me", "candidates": [GOOD]}).encode(),  # its bulk RM call raises
        b"\r",
        json.dumps({"prompt": "Double x.", "candidates": []}).encode(),
        json.dumps({"prompt": "Double x.", "candidates": [BAD, GOOD]}).encode(),
    ]
    scorer = CountingScorer(tiny_rm, fail_prompt="fail me")
    (rows, errors), out = _select(Reranker(reward_model=scorer), b"\n".join(lines) + b"\n", batch_lines=100)
    assert (rows, errors) == (9, 6) and [r["line"] for r in out] == list(range(1, 10))
    assert [r["error"] is None for r in out] == [True, False, False, True, False, False, False, False, True]
    assert all((r["result"] is None) == (r["error"] is not None) for r in out)
    assert "not valid UTF-8" in out[1]["error"] and "nested too deeply" in out[2]["error"]
    assert out[3]["input"] == ok and out[3]["result"]["best"]["valid"]  # the record's own keys stay its own
    assert out[4]["error"] == out[6]["error"] == "empty line"
    assert out[5]["error"] == "RuntimeError: scoring failed for this prompt" and out[5]["input"]["prompt"] == "fail me"
    assert "non-empty" in out[7]["error"] and out[8]["result"]["best"]["index"] == 1
    assert scorer.calls == [4, 1, 1, 1, 1]  # the bulk call failed, so its 4 lines were retried one by one


def test_select_output_may_be_the_input_and_survives_a_failed_run(tmp_path, tiny_qwen3_path, tiny_rm):
    from codescaler_rerank import Reranker
    from codescaler_rerank.jsonl_select import replaced_on_success, select_jsonl

    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"id": 1, "prompt": "Double x.", "candidates": [BAD, GOOD]}) + "\n")
    data.chmod(0o640)
    assert main(["select", str(data), "--rm", str(tiny_qwen3_path), "-o", str(data), "--no-progress"]) == 0
    (row,) = [json.loads(line) for line in data.read_text().splitlines()]
    assert row["input"]["id"] == 1 and row["result"]["best"]["index"] == 1 and data.stat().st_mode & 0o777 == 0o640

    class Interrupted(CountingScorer):
        def score_pairs(self, pairs):
            if self.calls:
                raise KeyboardInterrupt
            return super().score_pairs(pairs)

    before = data.read_bytes()
    two_chunks = (json.dumps({"prompt": "p", "candidates": [GOOD]}) + "\n") * 2
    import io

    with pytest.raises(KeyboardInterrupt), replaced_on_success(data) as out:
        select_jsonl(Reranker(reward_model=Interrupted(tiny_rm)), io.BytesIO(two_chunks.encode()), out, batch_lines=1)
    assert data.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]


def test_select_reads_undecodable_stdin_line_by_line(tiny_qwen3_path, capsys, monkeypatch):
    import io

    good = json.dumps({"prompt": "Double x.", "candidates": [BAD, GOOD]}).encode()
    data = b"\xef\xbb\xbf" + good + b"\n\xff\xfe not text\n" + good + b"\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["select", "-", "--rm", str(tiny_qwen3_path), "--no-progress"]) == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3] and "not valid UTF-8" in rows[1]["error"]
    assert rows[0]["result"]["best"]["index"] == rows[2]["result"]["best"]["index"] == 1
    assert "1 of 3 lines" in captured.err


def test_select_help_documents_the_row_format(capsys):
    with pytest.raises(SystemExit):
        main(["select", "--help"])
    out = capsys.readouterr().out
    assert '"line"' in out and '"input"' in out and '"result"' in out and '"error"' in out and "renames" in out


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


WRONG = "```python\ndef double(x):\n    return x + 1\n```"
DOUBLE_PROMPT = 'def double(x):\n    """Twice x.\n    >>> double(2)\n    4\n    """\n'


def test_rerank_with_a_selector_given_tests_and_adaptive_n(tiny_qwen3_path, tmp_path, capsys):
    from openai_server import OpenAIServer

    from codescaler_rerank.calibration import Calibrator

    tests = tmp_path / "tests.py"
    tests.write_text("assert double(5) == 10\n")
    with OpenAIServer([WRONG, WRONG, GOOD]) as server:
        code = main(["rerank", "Double x.", "--generator", "litellm:openai/ok", "--api-base", server.base_url,
                     "--n", "3", "--rm", str(tiny_qwen3_path), "--selector", "tests", "--tests", str(tests)])
    out = capsys.readouterr().out
    assert code == 0 and "selector=tests (3 sandbox runs)" in out and "# best (candidate 2):" in out
    assert out.splitlines()[0].split() == ["rank", "idx", "valid", "reason", "score", "reward", "tests", "lines"]
    calibration = Calibrator(method="isotonic", xs=[0.0], ys=[0.95]).save(tmp_path / "calibration.json")
    with OpenAIServer(["no code"] * 3 + [GOOD] + ["no code"] * 4) as server:
        code = main(["rerank", "Double x.", "--generator", "litellm:openai/ok", "--api-base", server.base_url,
                     "--n", "8", "--rm", str(tiny_qwen3_path), "--target", "0.9", "--calibration", str(calibration),
                     "--min-confidence", "0.99", "--json"])
        sizes = [body["n"] for body in server.chat_requests()]
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and sizes == [2, 2] and result["samples"] == 4 and result["best"]["index"] == 3
    assert result["confidence"] == pytest.approx(0.95) and result["abstained"] is True


def test_select_runs_each_lines_tests(tmp_path, tiny_qwen3_path):
    source = tmp_path / "in.jsonl"
    lines = [
        {"prompt": "Double x.", "candidates": [WRONG, GOOD], "tests": "assert double(3) == 6\n"},
        {"prompt": DOUBLE_PROMPT, "candidates": [WRONG, GOOD]},  # the prompt's own example
        {"prompt": "Double x.", "candidates": [GOOD, WRONG]},  # no tests: the RM's order
        {"prompt": "Double x.", "candidates": [GOOD], "tests": 3},
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    code = main(["select", str(source), "--rm", str(tiny_qwen3_path), "-o", str(out), "--no-progress",
                 "--selector", "tests"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 1 and "'tests' must be a string" in rows[3]["error"]
    assert [r["result"]["best"]["index"] for r in rows[:2]] == [1, 1]
    assert [r["result"]["sandbox_runs"] for r in rows[:3]] == [2, 2, 0]
    assert all(r["result"]["selector"] == "tests" for r in rows[:3])
