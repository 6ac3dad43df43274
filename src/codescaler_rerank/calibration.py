"""P(pass | RM score): isotonic or Platt calibration fitted on labelled candidates, saved as JSON next to the RM.

Pure Python (no numpy or sklearn). A candidate whose code is invalid or unscored gets P(pass) = 0, as its shaped
reward is 0. `fit_on_problems` scores labelled problems through the shared pipeline and fits on them (what
`codescaler-rerank calibrate` runs); `expected_calibration_error` and `reliability` measure a calibrator on
held-out candidates.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

from pydantic import BaseModel

from .pipeline import RewardScorer, score_each

if TYPE_CHECKING:
    from .datasets import Problem

CALIBRATION_FILE = "calibration.json"
METHODS = ("isotonic", "platt")
Method = Literal["isotonic", "platt"]


class Calibrator(BaseModel):
    """A fitted map from raw RM score to P(pass).

    ``isotonic``: a non-decreasing fit (pool-adjacent-violators). `xs` holds the lowest and highest score of each
    block of pooled candidates and `ys` the block's pass rate at both: flat within a block, linear between blocks
    and flat outside the fitted range (as scikit-learn's `IsotonicRegression`). ``platt``: `1 / (1 + exp(-(a *
    score + b)))`, `a` and `b` fitted by maximum likelihood (Newton steps, a small L2 penalty on the slope so
    separable data stays finite).
    """

    method: Method
    xs: list[float] = []
    ys: list[float] = []
    a: float = 0.0
    b: float = 0.0
    n: int = 0  # candidates it was fitted on
    positives: int = 0
    reward_model: str | None = None

    def p_pass(self, score: float | None) -> float:
        """P(pass) of a candidate with raw score `score` (None, invalid or not finite: 0)."""
        if score is None or not math.isfinite(score):
            return 0.0
        if self.method == "platt":
            return _sigmoid(self.a * score + self.b)
        if not self.xs:
            return 0.0
        i = bisect.bisect_right(self.xs, score)
        if i == 0:
            return self.ys[0]
        if i == len(self.xs):
            return self.ys[-1]
        x0, x1, y0, y1 = self.xs[i - 1], self.xs[i], self.ys[i - 1], self.ys[i]
        return y0 + (y1 - y0) * (score - x0) / (x1 - x0)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the calibrator as JSON; a directory gets `calibration.json` inside it. Returns the file."""
        path = Path(path)
        if path.is_dir():
            path = path / CALIBRATION_FILE
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibrator:
        """Read a calibrator saved by `save` (a file, or a directory holding `calibration.json`)."""
        path = Path(path)
        if path.is_dir():
            path = path / CALIBRATION_FILE
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


def fit_calibrator(
    scores: Sequence[float | None], labels: Sequence[bool], method: Method = "isotonic",
    *, reward_model: str | None = None,
) -> Calibrator:
    """Fit P(pass | score) on labelled candidates; unscored ones (None) are left out of the fit."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores for {len(labels)} labels")
    pairs = sorted((float(s), bool(y)) for s, y in zip(scores, labels) if s is not None and math.isfinite(s))
    if not pairs:
        raise ValueError("no scored candidates to calibrate on")
    info = {"n": len(pairs), "positives": sum(y for _, y in pairs), "reward_model": reward_model}
    if method == "platt":
        a, b = _fit_platt([s for s, _ in pairs], [y for _, y in pairs])
        return Calibrator(method="platt", a=a, b=b, **info)
    xs, ys = _pava(pairs)
    return Calibrator(method="isotonic", xs=xs, ys=ys, **info)


def fit_on_problems(
    problems: Sequence[Problem], scorer: RewardScorer, method: Method = "isotonic", *, language: str | None = "python",
    mode: str = "lenient", dedup: str | bool = "normalized",
) -> Calibrator:
    """Score the labelled candidates of `problems` (extract, score, as `Reranker` does) and fit on them."""
    unlabelled = [p.problem_id for p in problems if p.labels is None]
    if unlabelled:
        raise ValueError(f"{len(unlabelled)} problems have no labels (e.g. {unlabelled[0]!r})")
    scores: list[float | None] = []
    labels: list[bool] = []
    groups = ((p.problem, p.candidates, p.entry_point) for p in problems)
    for problem, scored in zip(problems, score_each(scorer, groups, language, mode, dedup)):
        scores += [s.score if s.valid else None for s in scored]
        labels += problem.labels or []
    return fit_calibrator(scores, labels, method, reward_model=getattr(scorer, "name", None))


def calibration_path(reward_model: str | os.PathLike[str]) -> Path | None:
    """The `calibration.json` saved next to a local reward model directory, if there is one."""
    path = Path(reward_model) / CALIBRATION_FILE
    return path if path.is_file() else None


def expected_calibration_error(probs: Sequence[float], labels: Sequence[bool], bins: int = 10) -> float:
    """ECE: the share-weighted mean |mean predicted - observed pass rate| over equal-width probability bins."""
    table = reliability(probs, labels, bins)
    total = sum(count for _, _, count in table)
    return sum(count * abs(pred - obs) for pred, obs, count in table) / total if total else 0.0


def reliability(probs: Sequence[float], labels: Sequence[bool], bins: int = 10) -> list[tuple[float, float, int]]:
    """Per non-empty equal-width bin of predicted P(pass): (mean predicted, observed pass rate, count)."""
    sums: list[list[float]] = [[0.0, 0.0, 0] for _ in range(bins)]
    for p, y in zip(probs, labels):
        k = min(int(p * bins), bins - 1)
        sums[k][0] += p
        sums[k][1] += float(y)
        sums[k][2] += 1
    return [(sp / c, sy / c, int(c)) for sp, sy, c in sums if c]


def _pava(pairs: list[tuple[float, bool]]) -> tuple[list[float], list[float]]:
    """Pool adjacent violators over score-sorted pairs (equal scores pooled first): each block's lowest and highest
    score, and its pass rate at both (one point for a block of one score)."""
    blocks: list[list[float]] = []  # [lowest score, highest score, positives, count]
    for score, label in pairs:
        if blocks and blocks[-1][1] == score:
            blocks[-1][2] += label
            blocks[-1][3] += 1
        else:
            blocks.append([score, score, float(label), 1])
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][3] >= blocks[-1][2] / blocks[-1][3]:
            low, high, pos, count = blocks.pop()
            blocks[-1] = [blocks[-1][0], high, blocks[-1][2] + pos, blocks[-1][3] + count]
    xs, ys = [], []
    for low, high, pos, count in blocks:
        ends = [low] if low == high else [low, high]
        xs += ends
        ys += [pos / count] * len(ends)
    return xs, ys


def _fit_platt(xs: list[float], ys: list[bool], l2: float = 1e-3, steps: int = 100) -> tuple[float, float]:
    """Logistic regression of the label on one feature (standardised inside), by Newton's method."""
    mean = sum(xs) / len(xs)
    scale = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs)) or 1.0
    zs = [(x - mean) / scale for x in xs]
    a = b = 0.0
    for _ in range(steps):
        ga, gb, haa, hab, hbb = l2 * a, 0.0, l2, 0.0, 1e-9
        for z, y in zip(zs, ys):
            p = _sigmoid(a * z + b)
            w = p * (1 - p)
            ga += (p - y) * z
            gb += p - y
            haa += w * z * z
            hab += w * z
            hbb += w
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return a / scale, b - a * mean / scale


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
