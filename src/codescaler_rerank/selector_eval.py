"""Selectors, calibration and adaptive N measured on labelled candidate pools (the parts of `evaluation` for them).

A `Pool` is one problem's candidates, scored once and labelled, with their public-test results when the problem
has public tests. Selectors run on subsets of a pool exactly as at inference (`selection`), except that their
`check` looks the verdicts up in the results of the one sandbox pass instead of running each subset again, so
their sandbox cost is the sum of those runs' measured durations. What is fitted on labels (the `rm+votes` weight
when several are given, the calibrator) is fitted leave-one-problem-out: a problem's numbers come from a fit on
the other problems only; a calibrator from a file is applied as it is.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

from pydantic import BaseModel

from ._tables import maybe, table
from .adaptive import wave_sizes
from .calibration import Calibrator, Method, expected_calibration_error, fit_calibrator, reliability
from .execution import ExecutionResult
from .results import Candidate
from .selection import RmTestsSelector, Selector, TestsSelector, VotesSelector


@dataclass
class Pool:
    """One problem's candidates (pool order), labels, RM places (0: best), public-test results and P(pass)."""

    problem_id: str
    candidates: list[Candidate]
    labels: list[bool]
    places: list[int]
    public: list[ExecutionResult] | None = None
    p_pass: list[float] | None = None

    def ranked(self, subset: Sequence[int]) -> list[Candidate]:
        """The subset's candidates in the RM's order."""
        return [self.candidates[i] for i in sorted(subset, key=self.places.__getitem__)]

    def pick(self, subset: Sequence[int]) -> int:
        """The RM's pick of the subset."""
        return min(subset, key=self.places.__getitem__)

    def check(self, candidates: Sequence[Candidate]) -> list[ExecutionResult]:
        """The public-test results of these candidates, from the one sandbox pass."""
        if self.public is None:
            raise ValueError(f"problem {self.problem_id!r} has no public tests")
        return [self.public[c.index] for c in candidates]


class Outcome(NamedTuple):
    """A selector's pick on one subset: whether it passes, and the sandbox runs and seconds it cost."""

    passed: bool
    runs: int
    seconds: float


class Cost(BaseModel):
    """Mean sandbox runs and seconds (the sum of the runs' durations) per selection."""

    runs: float
    seconds: float


def execution_selectors(top_k: int, max_runs: int | None) -> dict[str, Selector]:
    """The execution-based selectors under their report names (`tests` is the `public_tests` baseline)."""
    return {"rm+tests": RmTestsSelector(top_k=top_k, max_runs=max_runs), "public_tests": TestsSelector()}


def selector_outcomes(pool: Pool, subset: Sequence[int], selectors: dict[str, Selector]) -> dict[str, Outcome]:
    """Each selector's outcome on one subset (execution-based ones only where the pool has public tests)."""
    ranked = pool.ranked(subset)
    out = {}
    for name, selector in selectors.items():
        if selector.uses_execution and pool.public is None:
            continue
        selection = selector.select(ranked, pool.check if selector.uses_execution else None)
        out[name] = Outcome(pool.labels[selection.ranked[0].index], selection.sandbox_runs, selection.sandbox_seconds)
    return out


def mean_cost(outcomes: Sequence[Outcome | Cost]) -> Cost:
    """The mean runs and seconds of outcomes (or of costs)."""
    return Cost(runs=statistics.fmean(o.runs for o in outcomes), seconds=statistics.fmean(o.seconds for o in outcomes))


def votes_rates(pool: Pool, subsets: Sequence[Sequence[int]], weights: Sequence[float]) -> list[float]:
    """`rm+votes` pass rate over the subsets for each weight."""
    selectors = [VotesSelector(w) for w in weights]
    hits = [0] * len(weights)
    for subset in subsets:
        ranked = pool.ranked(subset)
        for k, selector in enumerate(selectors):
            hits[k] += pool.labels[selector.select(ranked).ranked[0].index]
    return [h / len(subsets) for h in hits]


def leave_one_out_choice(rates: Sequence[Sequence[float]]) -> list[int]:
    """For each problem (row), the option (column) with the best mean rate over the *other* problems (ties: the
    earliest option; with one problem, the first)."""
    total = [sum(col) for col in zip(*rates)]
    return [max(range(len(total)), key=lambda k: (total[k] - row[k], -k)) for row in rates]


def leave_one_out_p_pass(pools: Sequence[Pool], method: Method) -> list[list[float]]:
    """P(pass) of every candidate from a calibrator fitted on the other problems' candidates."""
    if len(pools) < 2:
        raise ValueError("leave-one-problem-out calibration needs at least 2 problems (or a calibration file)")
    out = []
    for k, pool in enumerate(pools):
        scores = [c.score for j, p in enumerate(pools) if j != k for c in p.candidates]
        labels = [y for j, p in enumerate(pools) if j != k for y in p.labels]
        calibrator = fit_calibrator(scores, labels, method)
        out.append([calibrator.p_pass(c.score) for c in pool.candidates])
    return out


def fixed_p_pass(pools: Sequence[Pool], calibrator: Calibrator) -> list[list[float]]:
    """P(pass) of every candidate from one calibrator (fitted elsewhere)."""
    return [[calibrator.p_pass(c.score) for c in pool.candidates] for pool in pools]


class ReliabilityBin(BaseModel):
    """Candidates whose predicted P(pass) fell in one bin: their mean prediction and observed pass rate."""

    predicted: float
    observed: float
    count: int


class CalibrationReport(BaseModel):
    """P(pass | score) measured on the evaluated problems: ECE over all candidates and over the RM's picks per N."""

    method: str
    source: str  # "leave-one-problem-out", or the calibration file applied
    ece: float
    candidates: int
    bins: list[ReliabilityBin]
    ece_selected: dict[int, float] = {}  # the RM's pick of each subset at N: its P(pass) against its label
    selected_bins: dict[int, list[ReliabilityBin]] = {}


def calibration_report(
    pools: Sequence[Pool], method: str, source: str, picks: dict[int, list[tuple[float, bool]]], bins: int = 10
) -> CalibrationReport:
    """ECE and reliability bins of the pools' `p_pass` (all candidates) and of the picks at each N."""
    probs = [p for pool in pools for p in pool.p_pass or []]
    labels = [y for pool in pools for y in pool.labels]

    def binned(ps: Sequence[float], ys: Sequence[bool]) -> list[ReliabilityBin]:
        return [ReliabilityBin(predicted=a, observed=b, count=c) for a, b, c in reliability(ps, ys, bins)]

    return CalibrationReport(
        method=method, source=source, ece=expected_calibration_error(probs, labels, bins), candidates=len(probs),
        bins=binned(probs, labels),
        ece_selected={n: expected_calibration_error([p for p, _ in v], [y for _, y in v], bins)
                      for n, v in picks.items()},
        selected_bins={n: binned([p for p, _ in v], [y for _, y in v]) for n, v in picks.items()},
    )


class AdaptivePoint(BaseModel):
    """Adaptive N at one target: mean pass rate and samples used (means over problems)."""

    target: float
    pass_rate: float
    samples: float
    fixed_n_same_pass_rate: float | None = None  # samples fixed N needs for that pass rate (interpolated)
    saved: float | None = None  # 1 - samples / fixed_n_same_pass_rate


class AdaptiveReport(BaseModel):
    """Adaptive N (RM pick, stop when its P(pass) >= target) against fixed N, on the same seeded sample orders."""

    waves: list[int]
    draws: int
    fixed: dict[int, float]  # N -> pass rate of the RM pick among the first N samples
    points: list[AdaptivePoint]


def simulate_adaptive(pools: Sequence[Pool], targets: Sequence[float], n: int, draws: int, seed: int) -> AdaptiveReport:
    """`rerank(prompt, n, target=...)` replayed on the pools: `draws` sample orders per problem (seeded per problem);
    after each wave of `adaptive.wave_sizes(n)`, stop if the RM's pick among the samples so far has P(pass) >=
    target. Fixed N is the pick among the first N samples of the same orders. Problems with fewer than `n`
    candidates are left out."""
    usable = [p for p in pools if p.p_pass is not None and len(p.candidates) >= n]
    sizes = wave_sizes(n)
    if not usable:
        return AdaptiveReport(waves=sizes, draws=draws, fixed={}, points=[])
    fixed: dict[int, list[float]] = {size: [] for size in sizes}
    by_target: dict[float, tuple[list[float], list[float]]] = {t: ([], []) for t in targets}
    for pool in usable:
        rng = random.Random(f"{seed}:{pool.problem_id}:adaptive")
        picks = []  # per draw, the RM's pick after each wave
        for _ in range(draws):
            order = rng.sample(range(len(pool.candidates)), n)
            picks.append([pool.pick(order[:size]) for size in sizes])
        for k, size in enumerate(sizes):
            fixed[size].append(statistics.fmean(pool.labels[draw[k]] for draw in picks))
        p_pass = pool.p_pass or []
        for target in targets:
            stops = [next((k for k, i in enumerate(draw) if p_pass[i] >= target), len(sizes) - 1) for draw in picks]
            by_target[target][0].append(statistics.fmean(pool.labels[draw[k]] for draw, k in zip(picks, stops)))
            by_target[target][1].append(statistics.fmean(sizes[k] for k in stops))
    fixed_rates = {size: statistics.fmean(v) for size, v in fixed.items()}
    points = []
    for target, (rates, used) in by_target.items():
        rate, samples = statistics.fmean(rates), statistics.fmean(used)
        equal = _samples_for(rate, fixed_rates)
        points.append(AdaptivePoint(target=target, pass_rate=rate, samples=samples, fixed_n_same_pass_rate=equal,
                                    saved=None if equal is None else 1 - samples / equal))
    return AdaptiveReport(waves=sizes, draws=draws, fixed=fixed_rates, points=points)


def _samples_for(rate: float, fixed: dict[int, float]) -> float | None:
    """Samples fixed N needs to reach `rate`: linear interpolation on the fixed-N curve where it rises past `rate`
    (the smallest N already at it, if the curve starts above; None if fixed N never reaches it)."""
    points = sorted(fixed.items())
    if points and rate <= points[0][1]:
        return float(points[0][0])
    for (n0, r0), (n1, r1) in zip(points, points[1:]):
        if r0 < rate <= r1:
            return n0 + (n1 - n0) * (rate - r0) / (r1 - r0)
    return None


def format_extras(costs: dict[int, dict[str, Cost]], votes_weights: dict[int, list[float]],
                  votes_by_weight: dict[int, dict[float, float]], calibration: CalibrationReport | None,
                  adaptive: AdaptiveReport | None) -> list[str]:
    """Report lines for sandbox cost per selection, the rm+votes weights chosen, calibration and adaptive N."""
    lines = []
    if costs:
        names = sorted({name for by in costs.values() for name in by})
        both = {"rm+tests", "public_tests"} <= set(names)
        lines += ["", "Sandbox work per selection (mean runs / seconds, the sum of the runs' durations):", table(
            ["N", *names, *(["rm+tests / public_tests (s)"] if both else [])],
            [[str(n), *(f"{by[m].runs:.2f} / {by[m].seconds:.3f}" if m in by else "-" for m in names),
              *([maybe(_ratio(by.get("rm+tests"), by.get("public_tests")), "{:.2f}")] if both else [])]
             for n, by in costs.items()],
        )]
    if votes_weights:
        lines.append("rm+votes weight chosen on the other problems: " + ", ".join(
            f"N={n}: {sorted(set(w))}" for n, w in votes_weights.items()))
    if len({w for by in votes_by_weight.values() for w in by}) > 1:
        lines += ["rm+votes pass rate (%) at each weight, mean over problems:", table(
            ["N", *(f"w={w:g}" for w in next(iter(votes_by_weight.values())))],
            [[str(n), *(f"{100 * r:.1f}" for r in by.values())] for n, by in votes_by_weight.items()])]
    if calibration is not None:
        c = calibration
        lines += ["", f"Calibration ({c.method}, {c.source}): ECE {c.ece:.3f} over {c.candidates} candidates; "
                  "of the RM's pick: " + ", ".join(f"N={n} {e:.3f}" for n, e in c.ece_selected.items())]
    if adaptive is not None and adaptive.points:
        a = adaptive
        lines += [f"Adaptive N (waves {a.waves}, {a.draws} sample orders per problem); fixed N: " + ", ".join(
            f"N={n} {100 * r:.1f}%" for n, r in a.fixed.items()), table(
            ["target", "pass rate (%)", "samples", "fixed N for that rate", "samples saved"],
            [[f"{p.target:.2f}", f"{100 * p.pass_rate:.1f}", f"{p.samples:.2f}",
              maybe(p.fixed_n_same_pass_rate, "{:.2f}"), maybe(p.saved, "{:.0%}")] for p in a.points],
        )]
    return lines


def _ratio(a: Cost | None, b: Cost | None) -> float | None:
    return None if a is None or b is None or b.seconds <= 0 else a.seconds / b.seconds


def plot_latency(points: dict[str, list[tuple[int, float, float]]], ax: Any) -> None:
    """Pass rate against seconds to select, one line per selector, each point labelled with its N."""
    for method, series in points.items():
        ax.plot([s for _, s, _ in series], [100 * r for _, _, r in series], marker="o", label=method)
        for n, s, r in series:
            ax.annotate(f"N={n}", (s, 100 * r), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log")
    ax.set(xlabel="seconds to select: RM scoring x N + sandbox run time (bulk passes, this machine)",
           ylabel="pass rate (%)", ylim=(0, 102), title="Pass rate vs selection cost")
    ax.grid(alpha=0.3)
    ax.legend()


def plot_reliability(calibration: CalibrationReport, ax: Any) -> None:
    """Reliability diagram: observed pass rate per predicted-P(pass) bin, all candidates and the RM's pick."""
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    series = [("all candidates", calibration.bins, calibration.ece)]
    if calibration.selected_bins:
        n = max(calibration.selected_bins)
        series.append((f"RM pick, N={n}", calibration.selected_bins[n], calibration.ece_selected[n]))
    for label, bins, ece in series:
        ax.plot([b.predicted for b in bins], [b.observed for b in bins], marker="o", label=f"{label} (ECE {ece:.3f})")
    ax.set(xlabel="predicted P(pass)", ylabel="observed pass rate", xlim=(0, 1), ylim=(0, 1),
           title=f"Reliability, {calibration.method} ({calibration.source})")
    ax.grid(alpha=0.3)
    ax.legend()
