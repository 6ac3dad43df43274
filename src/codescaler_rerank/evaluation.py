"""Evaluate reward models: best-of-N pass rate on labelled problems, and accuracy on preference pairs.

Best-of-N (`evaluate_best_of_n`): every candidate of a problem is extracted and scored once, through the same
pipeline as `Reranker` (`extract_all` + `score_extractions`), then many subsets of N candidates are drawn and each
selection method picks one candidate per subset; its label (pass/fail in the sandbox) is the outcome. Methods:

- ``reward_model``: the reranker's pick, selector ``rm`` (its `selection_key`: shaped reward, raw score, shorter
  code, earlier);
- ``random``: the exact expectation of a uniform pick, i.e. the subset's mean label;
- ``first``: the subset's earliest candidate in the data set's order (a user's first sample only where the file
  keeps generation order; the bundled sets are deduplicated in first-seen order, which favours common programs);
- ``oracle``: 1 if any candidate of the subset passes;
- ``public_tests``: execution-based selection, selector ``tests``: the first candidate passing the problem's
  public tests (or the first candidate when none does); only on problems that have public tests (see
  `public_problem`);
- with `EvalConfig.selectors`: ``rm+votes`` (at its weight, or, given several `votes_weights`, at the one that did
  best on the other problems) and ``rm+tests`` (the public tests on the RM's best `tests_top_k` at a time, until
  one passes or `tests_max_runs` are spent), both from `selection`, on the same subsets.

`costs` holds each execution-based method's mean sandbox runs and seconds per selection. With `calibration`,
P(pass | score) is fitted leave-one-problem-out (or `calibration_file` is applied) and measured (ECE, reliability
bins); with `adaptive_targets` too, adaptive N is replayed against fixed N (`selector_eval.simulate_adaptive`).

Subsets are index sets kept in the data set's order: all of them when a problem has at most `subsets` of size N,
else `subsets` uniform draws, seeded per (seed, problem id, N), so a problem's numbers do not depend on which
other problems are evaluated. Problems with fewer than N candidates are left out at that N. Pass rates are
averaged per problem, then over problems (each problem weighs the same); confidence intervals are percentile
bootstraps over problems. Latency: the median wall-clock time to select from N candidates by each path (RM:
extract + score; public tests: run them in the sandbox, `workers` at a time; rm+tests: score, then run the
RM's best in the sandbox until one passes), timed on sampled subsets.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from pydantic import BaseModel, Field, PositiveInt
from tqdm import tqdm

from ._tables import maybe, table
from .calibration import Calibrator
from .datasets import Problem, Records, functional_tests, read_jsonl
from .execution import ExecutionResult, run_many, sandbox_runner
from .generators.base import Completion
from .pipeline import RewardScorer, ScoredExtraction, extract_all, score_each, score_extractions
from .public_tests import docstring_asserts, public_tests
from .reranker import build_candidate, selection_key
from .selection import DEFAULT_VOTES_WEIGHT, RmTestsSelector
from .selector_eval import (
    AdaptiveReport,
    CalibrationReport,
    Cost,
    Outcome,
    Pool,
    calibration_report,
    execution_selectors,
    fixed_p_pass,
    format_extras,
    leave_one_out_choice,
    leave_one_out_p_pass,
    mean_cost,
    plot_latency,
    plot_reliability,
    selector_outcomes,
    simulate_adaptive,
    votes_rates,
)

__all__ = [
    "EvalConfig", "EvalReport", "PairwiseReport", "PreferencePair", "docstring_asserts", "evaluate_best_of_n",
    "evaluate_pairs", "format_pairwise", "format_report", "load_pairs", "plot_report", "public_problem",
]

METHODS = ("reward_model", "random", "first", "oracle", "public_tests", "rm+votes", "rm+tests")
DEFAULT_NS = (1, 2, 4, 8, 16)


class EvalConfig(BaseModel):
    """Settings of a best-of-N evaluation (all recorded in the report)."""

    ns: list[PositiveInt] = list(DEFAULT_NS)
    subsets: PositiveInt = 200  # subsets drawn per (problem, N)
    seed: int = 0
    bootstrap: PositiveInt = 1000  # resamples of the problems for the confidence intervals
    confidence: float = Field(0.95, gt=0, lt=1)
    language: str | None = "python"
    mode: Literal["lenient", "strict", "paper"] = "lenient"
    dedup: bool = True
    public_tests: Literal["auto", "field", "none"] = "auto"  # "auto": the field, else the prompt's examples
    timeout: float = 5.0  # seconds per sandbox run of the public tests
    workers: PositiveInt | None = None  # sandbox processes at a time (default: CPU count)
    ray: bool = False  # run the public tests as Ray tasks on the cluster (`integrations.ray.run_many`)
    latency_samples: int = Field(10, ge=0)  # subsets timed per N and path (0: no latency measurement)
    selectors: list[Literal["rm+votes", "rm+tests"]] = []  # selectors measured besides rm and tests
    votes_weights: list[float] = Field([DEFAULT_VOTES_WEIGHT], min_length=1)  # several: chosen leave-one-out
    tests_top_k: PositiveInt = 1  # rm+tests: candidates run per wave
    tests_max_runs: PositiveInt | None = None  # rm+tests: most runs per selection (None: until one passes)
    calibration: Literal["isotonic", "platt"] | None = None  # fit P(pass | score) leave-one-problem-out
    calibration_file: str | None = None  # or apply this calibrator (`codescaler-rerank calibrate`)
    adaptive_targets: list[float] = []  # adaptive-N targets to replay (needs a calibration)


class Stat(BaseModel):
    """A mean with its confidence interval, over `n` units (problems or pairs)."""

    mean: float
    low: float
    high: float
    n: int


class ProblemResult(BaseModel):
    """One problem's share of passing candidates and, per N, each method's pass rate over its subsets."""

    problem_id: str
    candidates: int
    pass_rate: float
    public_pass_rate: float | None = None  # share of candidates passing the public tests; None: no public tests
    rates: dict[int, dict[str, float]] = {}
    votes_weight: dict[int, float] = {}  # the rm+votes weight used per N (chosen on the other problems)


class Latency(BaseModel):
    """Median wall-clock seconds to select from `n` candidates on this machine, by each path."""

    n: int
    reward_model: float
    public_tests: float | None = None
    ratio: float | None = None  # public_tests / reward_model
    rm_tests: float | None = None  # score, then the rm+tests selector with real sandbox runs


class Timing(BaseModel):
    """How long the bulk passes took, and the selection latency per N."""

    scoring_seconds: float  # extract + score every candidate once
    scored_candidates: int
    sandbox_seconds: float  # every candidate of the problems with public tests, `workers` at a time
    sandbox_runs: int
    workers: int
    latency: list[Latency] = []


class EvalReport(BaseModel):
    """Best-of-N pass rates per N and method (mean over problems, bootstrap CI), per problem, and timings."""

    reward_model: str
    config: EvalConfig
    results: dict[int, dict[str, Stat]]
    problems: list[ProblemResult]
    timing: Timing
    costs: dict[int, dict[str, Cost]] = {}  # mean over the problems with public tests
    votes_by_weight: dict[int, dict[float, float]] = {}  # rm+votes' mean pass rate at each weight given
    calibration: CalibrationReport | None = None
    adaptive: AdaptiveReport | None = None


class PreferencePair(BaseModel):
    """A preferred (`chosen`) and a dispreferred (`rejected`) answer to one prompt."""

    prompt: str
    chosen: str
    rejected: str
    source: str = "unknown"


class PairwiseReport(BaseModel):
    """How often the RM prefers the chosen answer (ties count one half), overall and per source."""

    reward_model: str
    accuracy: Stat
    ties: int
    invalid_chosen: int  # chosen answers whose code did not extract or parse (reward 0)
    invalid_rejected: int
    by_source: dict[str, Stat]


def evaluate_best_of_n(
    problems: Sequence[Problem], scorer: RewardScorer, config: EvalConfig | None = None, *, progress: bool = False
) -> EvalReport:
    """Best-of-N pass rates of `scorer` and the baselines on labelled `problems` (see the module docstring)."""
    config = config or EvalConfig()
    unlabelled = [p.problem_id for p in problems if p.labels is None]
    if unlabelled:
        raise ValueError(f"{len(unlabelled)} problems have no labels (e.g. {unlabelled[0]!r}): "
                         "label them first with codescaler_rerank.datasets.label_problems")
    if config.adaptive_targets and not (config.calibration or config.calibration_file):
        raise ValueError("adaptive_targets need a calibration (calibration= or calibration_file=)")
    workers = config.workers or os.cpu_count() or 1
    start = time.perf_counter()
    scored = list(_score(problems, scorer, config, progress))
    scoring_seconds = time.perf_counter() - start
    public = [public_problem(p, config.public_tests) for p in problems]
    start = time.perf_counter()
    public_results = _run_public(problems, public, config, workers, progress)
    sandbox_seconds = time.perf_counter() - start
    pools = [_pool(p, s, r) for p, s, r in zip(problems, scored, public_results)]
    calibration = _calibrate(pools, config)

    selectors = execution_selectors(config.tests_top_k, config.tests_max_runs)
    if "rm+tests" not in config.selectors:
        del selectors["rm+tests"]
    weights = config.votes_weights if "rm+votes" in config.selectors else []
    measured = [_problem_result(pool, config, selectors, weights)
                for pool in tqdm(pools, desc="subsets", disable=not progress)]
    results, costs, votes = ([m[k] for m in measured] for k in range(3))
    if weights:
        _choose_votes_weight(results, votes, weights)
    timing = Timing(
        scoring_seconds=scoring_seconds, scored_candidates=sum(len(p.candidates) for p in problems),
        sandbox_seconds=sandbox_seconds, sandbox_runs=sum(len(r) for r in public_results if r is not None),
        workers=workers, latency=_latency(problems, public, scorer, config, workers, progress),
    )
    adaptive = None
    if config.adaptive_targets:
        adaptive = simulate_adaptive(pools, config.adaptive_targets, max(config.ns), config.subsets, config.seed)
    votes_by_weight = {
        n: {w: statistics.fmean(v[n][k] for v in votes if n in v) for k, w in enumerate(weights)}
        for n in config.ns if any(n in v for v in votes)
    }
    return EvalReport(
        reward_model=_name(scorer), config=config, results=_aggregate(results, config), problems=results,
        timing=timing, costs=_mean_costs(costs, config), votes_by_weight=votes_by_weight,
        calibration=calibration, adaptive=adaptive,
    )


def public_problem(problem: Problem, source: Literal["auto", "field", "none"] = "auto") -> Problem | None:
    """A copy of `problem` whose tests are its public examples only; None when it has none.

    ``field``: the `public_tests` field; stdin/stdout cases for stdio problems, LiveCodeBench-style calls of
    ``Solution().<entry_point>`` (JSON lines in, JSON out) for function-style ones. ``auto``: the field, else, for
    function-style problems, the prompt's examples that become parent-judged calls of the entry point
    (`public_tests.public_tests`, as `rm+tests` and `tests` use them at inference). ``none``: no public tests.
    """
    if source == "none":
        return None
    if problem.public_tests:
        if problem.tests is None:
            return problem.model_copy(update={"stdio_tests": problem.public_tests})
        if problem.entry_point:
            return problem.model_copy(update={"tests": functional_tests(problem.entry_point, problem.public_tests)})
    if source == "auto" and problem.tests is not None:
        found = public_tests(problem.problem, entry_point=problem.entry_point)
        if found is not None:
            asserts = "".join(call.source + "\n" for call in found.calls)
            return problem.model_copy(update={"tests": asserts, "entry_point": found.entry_point})
    return None


def load_pairs(source: Records) -> list[PreferencePair]:
    """Preference pairs from a JSONL(.gz) file or records, in either format.

    CodeScalerPair-style: ``question_content``, ``code_pos``, ``code_neg``. TRL-style: ``chosen``/``rejected``
    strings with a ``prompt``, or conversations whose last message is the answer and whose last user message (in
    ``prompt``, else before the answer) is the prompt. The source is the ``source`` or ``data_source`` field.
    """
    records = read_jsonl(source) if isinstance(source, (str, os.PathLike)) else source
    return [_pair(record) for record in records]


def evaluate_pairs(
    pairs: Sequence[PreferencePair], scorer: RewardScorer, *, language: str | None = "python",
    mode: str = "lenient", confidence: float = 0.95, batch: int = 256, progress: bool = False,
) -> PairwiseReport:
    """Pairwise accuracy of `scorer`: chosen beats rejected on (shaped reward, raw score), as in reranking.

    Scored through the shared pipeline; programs equal after normalisation share a score and so tie. The CI is
    the normal approximation over pairs.
    """
    if not pairs:
        raise ValueError("no preference pairs to evaluate")
    outcomes: list[float] = []
    invalid = [0, 0]
    with tqdm(total=len(pairs), desc="pairs", disable=not progress) as bar:
        for start in range(0, len(pairs), batch):
            chunk = pairs[start:start + batch]
            groups = [(p.prompt, extract_all([p.chosen, p.rejected], language, mode, p.prompt)) for p in chunk]
            for chosen, rejected in score_extractions(scorer, groups):
                outcomes.append(_preference(chosen, rejected))
                invalid[0] += not chosen.valid
                invalid[1] += not rejected.valid
            bar.update(len(chunk))
    by_source: dict[str, list[float]] = {}
    for pair, outcome in zip(pairs, outcomes):
        by_source.setdefault(pair.source, []).append(outcome)
    return PairwiseReport(
        reward_model=_name(scorer), accuracy=_normal_stat(outcomes, confidence), ties=outcomes.count(0.5),
        invalid_chosen=invalid[0], invalid_rejected=invalid[1],
        by_source={source: _normal_stat(values, confidence) for source, values in sorted(by_source.items())},
    )


def format_report(report: EvalReport) -> str:
    """Readable tables: pass rate per N and method, per problem at the largest N, latency, and the extras."""
    methods = [m for m in METHODS if any(m in by_method for by_method in report.results.values())]
    config = report.config
    lines = [
        f"Best-of-N pass rate (%), rm={report.reward_model}: mean over problems "
        f"[{config.confidence:.0%} bootstrap CI], {config.subsets} subsets per problem and N",
        table(["N", "problems", *methods], [
            [str(n), str(stats["random"].n), *(_cell(stats.get(m)) for m in methods)]
            for n, stats in report.results.items()
        ]),
    ]
    if "public_tests" in methods:
        with_tests = sum(p.public_pass_rate is not None for p in report.problems)
        lines.append(f"public_tests, rm+tests: only the {with_tests} problems with public tests "
                     f"({config.public_tests!r})")
    if report.results:
        top = max(report.results)
        lines += ["", f"Per problem at N={top} (%):", table(["problem", "candidates", "passing", *methods], [
            [p.problem_id, str(p.candidates), f"{100 * p.pass_rate:.1f}",
             *(f"{100 * p.rates[top][m]:.1f}" if m in p.rates.get(top, {}) else "-" for m in methods)]
            for p in report.problems
        ])]
    t = report.timing
    sandbox = f"; public tests: {t.sandbox_runs} sandbox runs in {t.sandbox_seconds:.1f} s, {t.workers} at a time"
    lines += ["", f"Scoring: {t.scored_candidates} candidates in {t.scoring_seconds:.1f} s"
              + (sandbox if t.sandbox_runs else "")]
    if t.latency:
        lines += [f"Latency to select from N (s, median of {config.latency_samples}):", table(
            ["N", "reward_model", "public_tests", "public_tests / reward_model", "rm+tests"],
            [[str(x.n), f"{x.reward_model:.4f}", maybe(x.public_tests, "{:.4f}"), maybe(x.ratio, "{:.1f}x"),
              maybe(x.rm_tests, "{:.4f}")] for x in t.latency],
        )]
    weights = {n: [p.votes_weight[n] for p in report.problems if n in p.votes_weight] for n in config.ns}
    chosen = {n: w for n, w in weights.items() if w} if len(config.votes_weights) > 1 else {}
    return "\n".join(lines + format_extras(report.costs, chosen, report.votes_by_weight, report.calibration,
                                           report.adaptive))


def format_pairwise(report: PairwiseReport) -> str:
    """Readable table: accuracy overall and per source."""
    rows = [["all", str(report.accuracy.n), _cell(report.accuracy)]]
    rows += [[source, str(stat.n), _cell(stat)] for source, stat in report.by_source.items()]
    return "\n".join([
        f"Pairwise accuracy (%), rm={report.reward_model}: ties {report.ties}, "
        f"invalid chosen {report.invalid_chosen}, invalid rejected {report.invalid_rejected}",
        table(["source", "pairs", "accuracy"], rows),
    ])


def plot_report(report: EvalReport, path: str | os.PathLike[str]) -> None:
    """Save a PNG (needs matplotlib): pass rate vs N, one line per method with its confidence band; pass rate vs
    selection latency for the selectors; and, with a calibration, the reliability diagram."""
    from ._deps import require

    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg")
    pyplot = require("matplotlib.pyplot", "eval")
    latency = selection_latency(report)
    panels = 1 + bool(latency) + bool(report.calibration)
    fig, axes = pyplot.subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    ax = axes[0][0]
    ns = sorted(report.results)
    for k, method in enumerate(METHODS):
        stats = [(n, report.results[n][method]) for n in ns if method in report.results[n]]
        if stats:
            shift = 2 ** (0.04 * (k - 3))  # side by side, so equal values stay visible
            means = [100 * s.mean for _, s in stats]
            errors = [[m - 100 * s.low for m, (_, s) in zip(means, stats)],
                      [100 * s.high - m for m, (_, s) in zip(means, stats)]]
            ax.errorbar([n * shift for n, _ in stats], means, yerr=errors, marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set(xlabel="N (candidates per problem)", ylabel="pass rate (%)", ylim=(0, 102),
           title=f"Best-of-N, {len(report.problems)} problems, rm={Path(report.reward_model).name}")
    ax.grid(alpha=0.3)
    ax.legend()
    rest = list(axes[0][1:])
    if latency:
        plot_latency(latency, rest.pop(0))
    if report.calibration:
        plot_reliability(report.calibration, rest.pop(0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)


def selection_latency(report: EvalReport) -> dict[str, list[tuple[int, float, float]]]:
    """Per selector: (N, seconds to select, pass rate) at each N, from the bulk passes, so that one point does not
    move with the load of the moment: the RM's scoring seconds per candidate times N (rm, rm+votes), plus the mean
    sandbox seconds per selection (the sum of the runs' durations) for rm+tests; that sum alone for public_tests.
    The medians measured per subset are in `timing.latency`."""
    t = report.timing
    per_candidate = t.scoring_seconds / t.scored_candidates if t.scored_candidates else 0.0
    out: dict[str, list[tuple[int, float, float]]] = {}
    for n, stats in sorted(report.results.items()):
        sandbox = {name: cost.seconds for name, cost in report.costs.get(n, {}).items()}
        rm = per_candidate * n
        seconds = {"reward_model": rm, "rm+votes": rm, "public_tests": sandbox.get("public_tests"),
                   "rm+tests": rm + sandbox["rm+tests"] if "rm+tests" in sandbox else None}
        for method, value in seconds.items():
            if method in stats and value is not None and value > 0:
                out.setdefault(method, []).append((n, value, stats[method].mean))
    return out


def _score(
    problems: Sequence[Problem], scorer: RewardScorer, config: EvalConfig, progress: bool
) -> Iterable[list[ScoredExtraction]]:
    groups = ((p.problem, p.candidates, p.entry_point) for p in tqdm(problems, desc="scoring", disable=not progress))
    return score_each(scorer, groups, config.language, config.mode, config.dedup)


def _pool(problem: Problem, scored: Sequence[ScoredExtraction], public: list[ExecutionResult] | None) -> Pool:
    """A problem's candidates with each one's place in the reranker's order of the whole pool (0: best).

    `selection_key` is a total order ending in the candidate's index, so restricted to any subset kept in the
    data set's order it gives exactly the reranker's choice among that subset.
    """
    candidates = [build_candidate(i, Completion(text=code), s)
                  for i, (code, s) in enumerate(zip(problem.candidates, scored))]
    places = [0] * len(candidates)
    for place, c in enumerate(sorted(candidates, key=selection_key)):
        places[c.index] = place
    return Pool(problem.problem_id, candidates, list(problem.labels or []), places, public)


def _run_public(
    problems: Sequence[Problem], public: Sequence[Problem | None], config: EvalConfig, workers: int, progress: bool
) -> list[list[ExecutionResult] | None]:
    """Each candidate's run on its problem's public tests (None for problems without them), in one pool."""
    jobs = [pp.job(code) for p, pp in zip(problems, public) if pp is not None for code in p.candidates]
    runner = sandbox_runner(config.ray)
    results = iter(runner(jobs, workers=workers, progress=progress and bool(jobs), timeout=config.timeout))
    return [None if pp is None else [next(results) for _ in p.candidates] for p, pp in zip(problems, public)]


def _calibrate(pools: Sequence[Pool], config: EvalConfig) -> CalibrationReport | None:
    """Fill each pool's `p_pass` (leave-one-problem-out fits, or the file's calibrator) and measure it."""
    if config.calibration_file:
        calibrator = Calibrator.load(config.calibration_file)
        probs, method, source = fixed_p_pass(pools, calibrator), calibrator.method, config.calibration_file
    elif config.calibration:
        probs, method = leave_one_out_p_pass(pools, config.calibration), config.calibration
        source = "leave-one-problem-out"
    else:
        return None
    picks: dict[int, list[tuple[float, bool]]] = {}
    for pool, p_pass in zip(pools, probs):
        pool.p_pass = p_pass
        for n in config.ns:
            if n <= len(pool.labels):
                for subset in _subsets(len(pool.labels), n, config, pool.problem_id):
                    i = pool.pick(subset)
                    picks.setdefault(n, []).append((p_pass[i], pool.labels[i]))
    return calibration_report(pools, method, source, dict(sorted(picks.items())))


def _subsets(size: int, n: int, config: EvalConfig, problem_id: str) -> list[Sequence[int]]:
    """All n-subsets of range(size) if there are at most `config.subsets`, else that many random ones (sorted)."""
    if math.comb(size, n) <= config.subsets:
        return list(combinations(range(size), n))
    rng = random.Random(f"{config.seed}:{problem_id}:{n}")
    return [sorted(rng.sample(range(size), n)) for _ in range(config.subsets)]


def _problem_result(
    pool: Pool, config: EvalConfig, selectors: dict[str, Any], weights: Sequence[float]
) -> tuple[ProblemResult, dict[int, dict[str, Cost]], dict[int, list[float]]]:
    """Each method's pass rate per N over the subsets; the execution-based ones' mean sandbox cost per selection
    (measured, so kept out of the deterministic `ProblemResult`); rm+votes' rate at each weight."""
    labels = pool.labels
    rates: dict[int, dict[str, float]] = {}
    costs: dict[int, dict[str, Cost]] = {}
    votes: dict[int, list[float]] = {}
    for n in config.ns:
        if n > len(labels):
            continue
        subsets = _subsets(len(labels), n, config, pool.problem_id)
        picks: dict[str, list[float]] = {}
        spent: dict[str, list[Outcome]] = {}
        for subset in subsets:
            outcome = {
                "reward_model": labels[pool.pick(subset)],
                "random": sum(labels[i] for i in subset) / n,
                "first": labels[subset[0]],
                "oracle": any(labels[i] for i in subset),
            }
            for name, result in selector_outcomes(pool, subset, selectors).items():
                outcome[name] = result.passed
                spent.setdefault(name, []).append(result)
            for method, value in outcome.items():
                picks.setdefault(method, []).append(float(value))
        rates[n] = {method: statistics.fmean(values) for method, values in picks.items()}
        costs[n] = {name: mean_cost(v) for name, v in spent.items()}
        if weights:
            votes[n] = votes_rates(pool, subsets, weights)
            rates[n]["rm+votes"] = votes[n][0]
    public = None if pool.public is None else [r.passed for r in pool.public]
    return ProblemResult(
        problem_id=pool.problem_id, candidates=len(labels), pass_rate=_share(labels),
        public_pass_rate=None if public is None else _share(public), rates=rates,
        votes_weight={n: weights[0] for n in votes},
    ), costs, votes


def _choose_votes_weight(
    results: Sequence[ProblemResult], votes: Sequence[dict[int, list[float]]], weights: Sequence[float]
) -> None:
    """Per N, give each problem rm+votes' rate at the weight that did best on the *other* problems."""
    if len(weights) < 2:
        return
    for n in sorted({n for v in votes for n in v}):
        held = [k for k, v in enumerate(votes) if n in v]
        for k, choice in zip(held, leave_one_out_choice([votes[k][n] for k in held])):
            results[k].rates[n]["rm+votes"] = votes[k][n][choice]
            results[k].votes_weight[n] = weights[choice]


def _mean_costs(per_problem: Sequence[dict[int, dict[str, Cost]]], config: EvalConfig) -> dict[int, dict[str, Cost]]:
    """Per N and execution-based method: the mean sandbox cost per selection over the problems that have it."""
    return {n: {m: mean_cost(costs) for m, costs in by.items()}
            for n, by in _by_n_and_method(config.ns, per_problem).items()}


def _by_n_and_method(ns: Sequence[int], per_problem: Sequence[dict[int, dict[str, Any]]]) -> dict[int, dict[str, list]]:
    """Per N and method, the problems' values in problem order; Ns no problem has are left out."""
    out: dict[int, dict[str, list]] = {}
    for n in ns:
        by_method: dict[str, list] = {}
        for values in per_problem:
            for method, value in values.get(n, {}).items():
                by_method.setdefault(method, []).append(value)
        if by_method:
            out[n] = by_method
    return out


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def _aggregate(results: Sequence[ProblemResult], config: EvalConfig) -> dict[int, dict[str, Stat]]:
    """Per N and method: the mean over problems with a percentile-bootstrap CI (resampling problems)."""
    return {n: {m: _bootstrap(values, config) for m, values in by.items()}
            for n, by in _by_n_and_method(config.ns, [r.rates for r in results]).items()}


def _bootstrap(values: list[float], config: EvalConfig) -> Stat:
    rng = random.Random(config.seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(config.bootstrap))
    alpha = (1 - config.confidence) / 2
    return Stat(mean=statistics.fmean(values), low=_quantile(means, alpha), high=_quantile(means, 1 - alpha),
                n=len(values))


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks of sorted values."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _normal_stat(values: list[float], confidence: float) -> Stat:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    return Stat(mean=mean, low=max(mean - z * spread, 0.0), high=min(mean + z * spread, 1.0), n=len(values))


def _latency(
    problems: Sequence[Problem], public: Sequence[Problem | None], scorer: RewardScorer, config: EvalConfig,
    workers: int, progress: bool,
) -> list[Latency]:
    """Median seconds to select from N by each path, over `latency_samples` random subsets per N."""
    rng = random.Random(f"{config.seed}:latency")
    out = []
    total = len(config.ns) * config.latency_samples
    with tqdm(total=total, desc="latency", disable=not (progress and total)) as bar:
        for n in config.ns:
            eligible = [(p, pp) for p, pp in zip(problems, public) if len(p.candidates) >= n]
            if not eligible or not config.latency_samples:
                continue
            rm, tests, rm_tests = [], [], []
            for k in range(config.latency_samples):
                problem, pp = eligible[k % len(eligible)]
                codes = [problem.candidates[i] for i in sorted(rng.sample(range(len(problem.candidates)), n))]
                start = time.perf_counter()
                extractions = extract_all(codes, config.language, config.mode, problem.problem, problem.entry_point)
                scored = score_extractions(scorer, [(problem.problem, extractions)], dedup=config.dedup)[0]
                rm.append(time.perf_counter() - start)
                if pp is not None:
                    start = time.perf_counter()
                    run_many([pp.job(code) for code in codes], workers=workers, timeout=config.timeout)
                    tests.append(time.perf_counter() - start)
                    if "rm+tests" in config.selectors:
                        rm_tests.append(rm[-1] + _time_rm_tests(pp, codes, scored, config, workers))
                bar.update()
            rm_s = statistics.median(rm)
            tests_s = statistics.median(tests) if tests else None
            out.append(Latency(n=n, reward_model=rm_s, public_tests=tests_s,
                               ratio=None if tests_s is None or rm_s <= 0 else tests_s / rm_s,
                               rm_tests=statistics.median(rm_tests) if rm_tests else None))
    return out


def _time_rm_tests(
    public: Problem, codes: Sequence[str], scored: Sequence[ScoredExtraction], config: EvalConfig, workers: int
) -> float:
    """Seconds the rm+tests selector takes on scored candidates, running their public tests in the sandbox."""
    ranked = sorted((build_candidate(i, Completion(text=c), s) for i, (c, s) in enumerate(zip(codes, scored))),
                    key=selection_key)

    def check(candidates: Sequence[Any]) -> list[ExecutionResult]:
        jobs = [public.job(codes[c.index]) for c in candidates]
        return run_many(jobs, workers=min(workers, len(jobs)), timeout=config.timeout)

    start = time.perf_counter()
    RmTestsSelector(top_k=config.tests_top_k, max_runs=config.tests_max_runs).select(ranked, check)
    return time.perf_counter() - start


def _pair(record: dict[str, Any]) -> PreferencePair:
    source = str(record.get("source") or record.get("data_source") or "unknown")
    if "code_pos" in record:
        return PreferencePair(prompt=record["question_content"], chosen=record["code_pos"],
                              rejected=record["code_neg"], source=source)
    if "chosen" not in record or "rejected" not in record:
        raise ValueError(f"a pair needs question_content/code_pos/code_neg or chosen/rejected; got {sorted(record)}")
    implicit, chosen = _answer(record["chosen"])
    rejected = _answer(record["rejected"])[1]
    prompt = record.get("prompt", implicit)
    if not isinstance(prompt, str):
        prompt = _last_user(prompt)
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, source=source)


def _answer(value: str | list[dict[str, Any]]) -> tuple[str, str]:
    """(the prompt in its leading messages, the answer) of a TRL string or conversation."""
    if isinstance(value, str):
        return "", value
    *head, last = value
    return _last_user(head), last["content"]


def _last_user(messages: list[dict[str, Any]]) -> str:
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")


def _preference(chosen: ScoredExtraction, rejected: ScoredExtraction) -> float:
    """1 if the RM prefers `chosen`, 0.5 on a tie, else 0 (compared like the reranker: reward, then raw score)."""
    a, b = (_order(chosen), _order(rejected))
    return 1.0 if a > b else 0.5 if a == b else 0.0


def _order(s: ScoredExtraction) -> tuple[float, float]:
    return s.reward, s.score if s.score is not None else -math.inf


def _name(scorer: RewardScorer) -> str:
    return str(getattr(scorer, "name", None) or type(scorer).__name__)


def _cell(stat: Stat | None) -> str:
    return "-" if stat is None else f"{100 * stat.mean:.1f} [{100 * stat.low:.1f}, {100 * stat.high:.1f}]"
