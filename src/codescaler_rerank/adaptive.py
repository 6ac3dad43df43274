"""Adaptive N: sample in waves until the pick is likely correct (`Reranker.rerank(prompt, n, target=...)`).

Waves are cumulative sizes 2, 4, 8, ... ending at `n` (`wave_sizes`); a `seed` sampling knob goes up by one per
wave, so seeded backends draw new samples. After each wave only its new answers are
extracted and scored (one RM call per wave, through the same pipeline), all answers so far are ranked and selected
again, and sampling stops when the pick's calibrated P(pass) reaches `target` or `n` answers were drawn.
`RerankResult.samples` says how many were asked for; `usage` and `timings` add up over the waves.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterator

from .generators.base import GenerationFailure, GenerationOutput
from .pipeline import ScoredExtraction, score_extractions
from .results import NoCandidatesError, Timings

if TYPE_CHECKING:
    from .reranker import Reranker
    from .results import RerankResult

FIRST_WAVE = 2


def wave_sizes(n: int, first: int = FIRST_WAVE) -> list[int]:
    """Cumulative samples after each wave: `first`, doubling, ending at `n` (16: [2, 4, 8, 16]; 12: [2, 4, 8, 12])."""
    if n < 1 or first < 1:
        raise ValueError(f"n and the first wave must be at least 1, got n={n}, first={first}")
    sizes = []
    size = min(first, n)
    while size < n:
        sizes.append(size)
        size *= 2
    return sizes + [n]


class _Waves:
    """What the waves drew so far: the merged output, its scored extractions, and the time spent per stage."""

    def __init__(self, reranker: Reranker, prompt: str, n: int, target: float, tests: str | None) -> None:
        if reranker.selection.calibrator is None:
            raise ValueError("target= needs a calibration (codescaler-rerank calibrate, or Reranker(calibration=...))")
        if not 0 < target <= 1:
            raise ValueError(f"target must be in (0, 1], got {target}")
        self.reranker, self.prompt, self.target, self.tests = reranker, prompt, target, tests
        self.sizes = wave_sizes(n)
        self.output = GenerationOutput(completions=[])
        self.scored: list[ScoredExtraction] = []
        self.timings = Timings()
        self.drawn = 0
        self.result: RerankResult | None = None

    def plan(self, sampling: dict[str, Any]) -> Iterator[tuple[int, int, dict[str, Any], float]]:
        """Per wave: the samples there will be after it, how many to ask for, its sampling knobs (an integer `seed`
        moves on by one per wave, so a seeded backend does not repeat the earlier waves' samples), and its start."""
        seed = sampling.get("seed")
        for k, size in enumerate(self.sizes):
            knobs = {**sampling, "seed": seed + k} if isinstance(seed, int) and not isinstance(seed, bool) else sampling
            yield size, size - self.drawn, knobs, time.perf_counter()

    def add(self, size: int, wave: GenerationOutput, generate_time: float) -> bool:
        """Merge one wave (the samples up to `size`), rank everything so far; True when sampling should stop."""
        offset = len(self.output.completions)
        self.output.failures += [GenerationFailure(index=f.index + self.drawn, error=f.error) for f in wave.failures]
        if wave.completion_tokens is not None:
            self.output.completion_tokens = (self.output.completion_tokens or 0) + wave.completion_tokens
        self.drawn = size
        self.timings.generate += generate_time
        if wave.completions:
            t0 = time.perf_counter()
            extractions = self.reranker.extract(self.prompt, [c.text for c in wave.completions])
            t1 = time.perf_counter()
            [scored] = score_extractions(self.reranker.reward_model, [(self.prompt, extractions)],
                                         dedup=self.reranker.dedup)
            self.timings.extract += t1 - t0
            self.timings.score += time.perf_counter() - t1
            self.output.completions += wave.completions
            self.scored += [_shifted(s, offset) for s in scored]
        if not self.output.completions:
            return False
        self.result = self.reranker.finish(self.prompt, self.output, list(self.scored), Timings(), tests=self.tests,
                                           samples=self.drawn)
        t = self.timings
        t.select += self.result.timings.select  # each wave selects again: its selection time adds up
        self.result.timings = t.model_copy(update={"total": t.generate + t.extract + t.score + t.select})
        return (self.result.confidence or 0.0) >= self.target

    def final(self) -> RerankResult:
        if self.result is None:
            raise NoCandidatesError(self.output.failures)
        return self.result


def rerank_adaptive(
    reranker: Reranker, prompt: str, n: int, target: float, tests: str | None, sampling: dict[str, Any]
) -> RerankResult:
    """`Reranker.rerank(prompt, n, target=target)`: see the module docstring."""
    waves = _Waves(reranker, prompt, n, target, tests)
    generate = reranker._require_generator().generate
    for size, count, knobs, start in waves.plan(sampling):
        if waves.add(size, generate(prompt, count, **knobs), time.perf_counter() - start):
            break
    return waves.final()


async def arerank_adaptive(
    reranker: Reranker, prompt: str, n: int, target: float, tests: str | None, sampling: dict[str, Any]
) -> RerankResult:
    """Async `rerank_adaptive`: generation is awaited, scoring and selection run in a worker thread."""
    waves = _Waves(reranker, prompt, n, target, tests)
    generate = reranker._require_generator().agenerate
    for size, count, knobs, start in waves.plan(sampling):
        wave = await generate(prompt, count, **knobs)
        if await asyncio.to_thread(waves.add, size, wave, time.perf_counter() - start):
            break
    return waves.final()


def _shifted(s: ScoredExtraction, offset: int) -> ScoredExtraction:
    """`s` with its `duplicate_of` moved past the earlier waves' completions."""
    if s.duplicate_of is None or not offset:
        return s
    return replace(s, duplicate_of=s.duplicate_of + offset)
