"""Selectors: how the final pick is made from candidates the reward model has already scored and shaped.

Every selector gets the candidates in the reward model's order (best first, the reranker's `selection_key`) and
returns them re-ordered, best first, with the execution it spent. By name:

- ``rm`` (default, the paper): the RM's order as it is.
- ``rm+votes``: no execution. Valid candidates are grouped by program (`program_key`: for Python the syntax tree
  with local names numbered in order of appearance and docstrings and annotations left out, so layout, comments
  and naming do not count; other languages `extraction.normalize_code`); each gets
  ``z + weight * ln(group size)``, where ``z`` is its raw score standardised over the valid candidates of this
  request (mean 0, standard deviation 1; 1 when they all score the same). Highest first; ties and invalid
  candidates keep the RM's order.
- ``rm+tests``: the public tests (or the prompt's examples, see `public_tests`) run in the sandbox on the RM's
  best valid candidates, `top_k` at a time, stopping after the first wave in which one passes (or after
  `max_runs` runs); a verdict also holds for the candidate's program twins (same `program_key`), which are not
  run; passing candidates come first, the RM's best among them; with none passing, the RM's order.
- ``tests``: execution only: every valid candidate runs; the first passing one in generation order, else the
  first candidate (the `public_tests` baseline of `evaluation`).

`SelectionStage` is what `Reranker` runs after scoring: the selector, then P(pass) from a calibration, then
abstention below `min_confidence`.
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import math
import os
import statistics
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from ._syntax import MAX_BLOCK_COST, cost, python_tree, utf8
from .calibration import Calibrator, calibration_path
from .execution import ExecutionResult
from .extraction import normalize_code
from .public_tests import public_tests
from .results import Candidate, RerankResult

Check = Callable[[Sequence[Candidate]], Sequence[ExecutionResult]]
"""Runs candidates' code against the tests: one result per candidate, in order."""

DEFAULT_VOTES_WEIGHT = 1.0


@dataclass
class Selection:
    """Candidates best first, and the sandbox work spent choosing (runs, and the sum of their durations)."""

    ranked: list[Candidate]
    sandbox_runs: int = 0
    sandbox_seconds: float = 0.0
    verdicts: dict[int, bool] = field(default_factory=dict)  # candidate index -> passed, for those executed


class Selector(ABC):
    """Re-orders RM-ranked candidates; `uses_execution` selectors need a `check`."""

    name: ClassVar[str]
    uses_execution: ClassVar[bool] = False

    @abstractmethod
    def select(self, ranked: Sequence[Candidate], check: Check | None = None) -> Selection:
        """`ranked`: candidates in the RM's order, best first."""


class RmSelector(Selector):
    """The reward model's order (argmax of the shaped reward)."""

    name = "rm"

    def select(self, ranked: Sequence[Candidate], check: Check | None = None) -> Selection:
        return Selection(list(ranked))


class VotesSelector(Selector):
    """RM score plus self-consistency: ``z-scored raw score + weight * ln(size of its program group)``."""

    name = "rm+votes"

    def __init__(self, weight: float = DEFAULT_VOTES_WEIGHT) -> None:
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
        self.weight = weight

    def select(self, ranked: Sequence[Candidate], check: Check | None = None) -> Selection:
        valid = [c for c in ranked if c.valid and c.score is not None]
        if not valid:
            return Selection(list(ranked))
        keys = [program_key(c.code, c.language) for c in valid]
        sizes = {key: keys.count(key) for key in set(keys)}
        scores = [float(c.score) for c in valid]  # type: ignore[arg-type]
        mean, spread = statistics.fmean(scores), statistics.pstdev(scores) or 1.0
        votes = [(s - mean) / spread + self.weight * math.log(sizes[k]) for s, k in zip(scores, keys)]
        order = sorted(range(len(valid)), key=lambda i: -votes[i])  # stable: the RM's order breaks ties
        chosen = {c.index for c in valid}
        return Selection([valid[i] for i in order] + [c for c in ranked if c.index not in chosen])


class RmTestsSelector(Selector):
    """Run the tests on the RM's best candidates, `top_k` at a time, until one passes (or `max_runs` are spent).

    A verdict holds for the candidate's program twins (same `program_key`: they differ only in local names,
    layout, comments, docstrings and annotations), which are not run again."""

    name = "rm+tests"
    uses_execution = True

    def __init__(self, top_k: int = 1, max_runs: int | None = None) -> None:
        if top_k < 1 or (max_runs is not None and max_runs < 1):
            raise ValueError("top_k and max_runs must be at least 1")
        self.top_k = top_k
        self.max_runs = max_runs

    def select(self, ranked: Sequence[Candidate], check: Check | None = None) -> Selection:
        check = _require(check, self.name)
        runnable = [c for c in ranked if c.valid]
        keys = {c.index: program_key(c.code, c.language) for c in runnable}
        known: dict[str, bool] = {}  # program key -> verdict
        selection = Selection([])
        while self.max_runs is None or selection.sandbox_runs < self.max_runs:
            room = self.top_k if self.max_runs is None else min(self.top_k, self.max_runs - selection.sandbox_runs)
            wave: dict[str, Candidate] = {}
            for c in runnable:
                if len(wave) == room:
                    break
                if keys[c.index] not in known:
                    wave.setdefault(keys[c.index], c)
            if not wave:
                break
            results = check(list(wave.values()))
            _record(selection, list(wave.values()), results)
            known.update((key, r.passed) for key, r in zip(wave, results))
            if any(r.passed for r in results):
                break
        selection.verdicts = {c.index: known[keys[c.index]] for c in runnable if keys[c.index] in known}
        selection.ranked = _passing_first(ranked, selection.verdicts)
        return selection


class TestsSelector(Selector):
    """Execution only: every valid candidate runs; the first passing one in generation order wins."""

    name = "tests"
    uses_execution = True

    def select(self, ranked: Sequence[Candidate], check: Check | None = None) -> Selection:
        check = _require(check, self.name)
        in_order = sorted(ranked, key=lambda c: c.index)
        runnable = [c for c in in_order if c.valid]
        selection = Selection([])
        if runnable:
            _record(selection, runnable, check(runnable))
        selection.ranked = _passing_first(in_order, selection.verdicts)
        return selection


SELECTORS: dict[str, type[Selector]] = {s.name: s for s in (RmSelector, VotesSelector, RmTestsSelector, TestsSelector)}


def get_selector(spec: str | Selector = "rm", **options: Any) -> Selector:
    """A selector by name (`options` go to its constructor), or an instance as is."""
    if isinstance(spec, Selector):
        return spec
    if spec not in SELECTORS:
        raise ValueError(f"unknown selector {spec!r}; choose one of {', '.join(SELECTORS)}")
    return SELECTORS[spec](**options)


@functools.lru_cache(maxsize=4096)
def program_key(code: str, language: str | None) -> str:
    """What `rm+votes` groups by (a digest): Python's structure with local names numbered (see the module
    docstring), else the normalised code. Cached: evaluation asks for the same programs many times."""
    key = None
    if language == "python" and cost(utf8(code), "python") <= MAX_BLOCK_COST:  # the bound `normalize_code` keeps
        tree = python_tree(code)
        if tree is not None:
            key = ast.dump(_Renamer(tree).visit(tree), annotate_fields=False)
    if key is None:
        key = normalize_code(code, language)
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class _Renamer(ast.NodeTransformer):
    """Numbers every name in order of appearance, except builtins and the module's own functions, classes and
    their methods (the interface the tests call); drops docstrings and annotations."""

    def __init__(self, tree: ast.Module) -> None:
        top = [s for s in tree.body if isinstance(s, _DEFINITIONS)]
        methods = {m.name for s in top if isinstance(s, ast.ClassDef) for m in s.body if isinstance(m, _DEFINITIONS)}
        self.kept = frozenset(dir(builtins)) | {s.name for s in top} | methods
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return name if name in self.kept else self.names.setdefault(name, f"_{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._name(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg, node.annotation = self._name(node.arg), None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name, node.returns = self._name(node.name), None
        _drop_docstring(node)
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        _drop_docstring(node)
        self.generic_visit(node)
        return node

    def visit_Module(self, node: ast.Module) -> ast.AST:
        _drop_docstring(node)
        self.generic_visit(node)
        return node


def _drop_docstring(node: ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        node.body = body[1:] or ([ast.Pass()] if not isinstance(node, ast.Module) else [])


def _passing_first(ordered: Sequence[Candidate], verdicts: dict[int, bool]) -> list[Candidate]:
    return [c for c in ordered if verdicts.get(c.index)] + [c for c in ordered if not verdicts.get(c.index)]


def _record(selection: Selection, wave: Sequence[Candidate], results: Sequence[ExecutionResult]) -> None:
    if len(results) != len(wave):
        raise ValueError(f"check returned {len(results)} results for {len(wave)} candidates")
    for c, r in zip(wave, results):
        selection.verdicts[c.index] = r.passed
        selection.sandbox_seconds += r.duration
    selection.sandbox_runs += len(wave)


def _require(check: Check | None, name: str) -> Check:
    if check is None:
        raise ValueError(f"selector {name!r} runs tests: it needs a check (tests for the prompt)")
    return check


@dataclass
class SelectionStage:
    """What `Reranker` does after scoring. Execution-based selectors run `tests` (assertions; None: the prompt's
    examples) as parent-judged calls in the sandbox (`sandbox`: `execution.run_many` options); with no tests that
    convert, the RM's order stands and no candidate has a verdict (`Candidate.tests_passed` is None)."""

    selector: Selector
    calibrator: Calibrator | None = None
    min_confidence: float | None = None
    sandbox: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.min_confidence is not None:
            if self.calibrator is None:
                raise ValueError("min_confidence needs a calibration (codescaler-rerank calibrate)")
            if not 0 <= self.min_confidence <= 1:
                raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")

    def apply(self, prompt: str, result: RerankResult, tests: str | None = None) -> RerankResult:
        """Re-order `result` in place by the selector; fill verdicts, P(pass), confidence, `abstained`."""
        start = time.perf_counter()
        result.selector = self.selector.name
        check = self._check(prompt, tests) if self.selector.uses_execution else None
        if check is not None or not self.selector.uses_execution:
            selection = self.selector.select(result.candidates, check)
            result.candidates = selection.ranked
            result.sandbox_runs = selection.sandbox_runs
            for c in result.candidates:
                c.tests_passed = selection.verdicts.get(c.index)
        for rank, c in enumerate(result.candidates, start=1):
            c.rank = rank
            if self.calibrator is not None:
                c.p_pass = self.calibrator.p_pass(c.score if c.valid else None)
        result.best = result.candidates[0]
        result.confidence = result.best.p_pass
        if self.min_confidence is not None:
            result.abstained = (result.confidence or 0.0) < self.min_confidence
        result.timings.select = time.perf_counter() - start
        result.timings.total += result.timings.select
        return result

    def _check(self, prompt: str, tests: str | None) -> Check | None:
        found = public_tests(prompt, tests)
        if found is None:
            return None
        run = found.runner(**self.sandbox)
        return lambda candidates: run([c.code for c in candidates])


def selection_stage(
    reward_model: Any, selector: str | Selector = "rm",
    calibration: str | os.PathLike[str] | Calibrator | None = "auto", min_confidence: float | None = None,
    sandbox: dict[str, Any] | None = None,
) -> SelectionStage:
    """A `SelectionStage` from `Reranker`'s arguments. `calibration`: a `Calibrator`, a JSON file saved by
    `codescaler-rerank calibrate`, None, or "auto": the `calibration.json` in the RM's local directory, if any."""
    if isinstance(calibration, str) and calibration == "auto":
        local = isinstance(reward_model, (str, os.PathLike))
        directory = reward_model if local else getattr(reward_model, "directory", None)
        calibration = calibration_path(directory) if directory else None
    if isinstance(calibration, (str, os.PathLike)):
        calibration = Calibrator.load(Path(calibration))
    return SelectionStage(get_selector(selector), calibration, min_confidence, dict(sandbox or {}))
