"""Validity-preserving reward shaping (CodeScaler): 0 for invalid code, softplus(score) otherwise."""

from __future__ import annotations

import math


def softplus(x: float) -> float:
    """log(1 + exp(x)), without overflow for large |x|."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def shape_reward(score: float | None, valid: bool) -> float:
    """Shaped reward: 0.0 when the code is invalid, else softplus(score) > 0, so any valid program beats an invalid one."""
    if not valid:
        return 0.0
    if score is None or not math.isfinite(score):
        raise ValueError(f"a valid candidate needs a finite score, got {score!r}")
    return softplus(score)
