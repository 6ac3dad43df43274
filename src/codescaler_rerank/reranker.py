"""Best-of-N selection: sample, extract, score, shape, select (a `selection` selector, calibration, abstention)."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, Callable, Sequence

from .extraction import Extraction, canonical_language, extract_code
from .generators.base import Completion, GenerationOutput, Generator
from .pipeline import RewardScorer, ScoredExtraction, dedup_mode, extract_all, score_extractions
from .results import Candidate, NoCandidatesError, RerankResult, Timings, Usage
from .reward_model import DEFAULT_REWARD_MODEL
from .selection import Selector, selection_stage
from .specs import load_generator, load_reward_model

Request = tuple[str, Sequence[str]] | tuple[str, Sequence[str], str | None]  # (prompt, candidates[, tests])


def selection_key(c: Candidate) -> tuple:
    """Best first: higher shaped reward, then higher raw score, then shorter code, then earlier candidate."""
    score = c.score if c.score is not None else float("-inf")
    return (-c.reward, -score, len(c.code), c.index)


class Reranker:
    """Samples N answers from a generator and returns them ranked by a reward model.

    `generator` and `reward_model` take instances or spec strings (`"litellm:openai/gpt-4o-mini"`,
    `"LARK-Lab/CodeScaler-8B"` or a local path). `sampling` holds default sampling knobs for `rerank`.
    `mode`: extraction rule, "lenient" (default), "strict" or "paper" (the recipe's, Python only; the RL default).
    Lenient extraction uses the entry point the prompt names (`assembly.detect_entry_point`), in every language.
    `dedup`: "normalized" (default; True) scores programs that differ only in layout or comments once,
    "exact" only identical code, "none" (False) every candidate.
    `selector`: how the pick is made from the scored candidates (see `selection`): "rm" (default, the paper's
    argmax), "rm+votes", "rm+tests", "tests", or a `Selector`. Execution-based selectors run the `tests=` of a
    call, else the prompt's examples, as parent-judged calls in the sandbox (`sandbox`: `run_many` options).
    `calibration`: P(pass | score) for `Candidate.p_pass` and `RerankResult.confidence`: a `Calibrator`, a file
    saved by `codescaler-rerank calibrate`, None, or "auto" (the `calibration.json` in a local RM's directory).
    `min_confidence`: results whose confidence is below it are marked `abstained` (needs a calibration).
    """

    def __init__(
        self,
        generator: str | Generator | None = None,
        reward_model: str | RewardScorer = DEFAULT_REWARD_MODEL,
        *,
        language: str | None = "python",
        mode: str = "lenient",
        dedup: str | bool = "normalized",
        sampling: dict[str, Any] | None = None,
        selector: str | Selector = "rm",
        calibration: Any = "auto",
        min_confidence: float | None = None,
        sandbox: dict[str, Any] | None = None,
    ) -> None:
        extract_code("", language=language, mode=mode)  # a bad mode or language fails here, not at the first call
        self.generator = load_generator(generator) if generator is not None else None
        self.reward_model = load_reward_model(reward_model)
        self.language = canonical_language(language) if language else None
        self.mode = mode
        self.dedup = dedup_mode(dedup)
        self.sampling = dict(sampling or {})
        spec = reward_model if isinstance(reward_model, str) else self.reward_model
        self.selection = selection_stage(spec, selector, calibration, min_confidence, sandbox)

    def rerank(
        self, prompt: str, n: int = 8, *, target: float | None = None, tests: str | None = None, **sampling: Any
    ) -> RerankResult:
        """Sample `n` answers to `prompt` and rank them. With `target`, sample in waves (2, 4, 8, ... up to `n`) and
        stop once the pick's P(pass) reaches it (`adaptive`); `result.samples` says how many were drawn."""
        sampling = {**self.sampling, **sampling}
        if target is not None:
            from .adaptive import rerank_adaptive

            return rerank_adaptive(self, prompt, n, target, tests, sampling)
        start = time.perf_counter()
        output = self._require_generator().generate(prompt, n, **sampling)
        return self.rank_output(prompt, output, time.perf_counter() - start, tests=tests, samples=n)

    async def arerank(
        self, prompt: str, n: int = 8, *, target: float | None = None, tests: str | None = None, **sampling: Any
    ) -> RerankResult:
        """Async `rerank`: generation is awaited, scoring and selection run in a worker thread."""
        sampling = {**self.sampling, **sampling}
        if target is not None:
            from .adaptive import arerank_adaptive

            return await arerank_adaptive(self, prompt, n, target, tests, sampling)
        start = time.perf_counter()
        output = await self._require_generator().agenerate(prompt, n, **sampling)
        return await asyncio.to_thread(
            self.rank_output, prompt, output, time.perf_counter() - start, tests=tests, samples=n
        )

    def select(self, prompt: str, candidates: Sequence[str], *, tests: str | None = None) -> RerankResult:
        """Rank answers you already have (`tests`: assertions for execution-based selectors)."""
        return self.rank_output(prompt, _as_output(candidates), 0.0, tests=tests)

    async def aselect(self, prompt: str, candidates: Sequence[str], *, tests: str | None = None) -> RerankResult:
        """Async `select`: scoring runs in a worker thread."""
        return await asyncio.to_thread(functools.partial(self.select, prompt, candidates, tests=tests))

    def select_many(self, requests: Sequence[Request]) -> list[RerankResult]:
        """Rank the answers of several prompts, given as (prompt, candidates) or (prompt, candidates, tests), in one
        bulk reward-model call. Each result is what `select` would give; `timings.score` is the shared call's."""
        return self._rank([
            (request[0], _as_output(request[1]), 0.0, request[2] if len(request) > 2 else None, None)
            for request in requests
        ])

    def _require_generator(self) -> Generator:
        if self.generator is None:
            raise ValueError("this Reranker has no generator: pass generator=... or use select() with your candidates")
        return self.generator

    def rank_output(
        self, prompt: str, output: GenerationOutput, generate_time: float = 0.0, *, tests: str | None = None,
        samples: int | None = None, checkpoint: Callable[[], None] | None = None,
    ) -> RerankResult:
        """Rank what a generator returned (extract, score, shape, select); for callers that sample themselves.

        Raises `NoCandidatesError` (a `GenerationError` carrying `output.failures`) when there is no completion.
        `checkpoint` is called before each extraction and before scoring; whatever it raises stops the ranking
        (the proxy's request deadline).
        """
        return self._rank([(prompt, output, generate_time, tests, samples)], checkpoint)[0]

    def _rank(
        self, items: Sequence[tuple[str, GenerationOutput, float, str | None, int | None]],
        checkpoint: Callable[[], None] | None = None,
    ) -> list[RerankResult]:
        """Extract each output's completions, score all of them in one call, and rank each output."""
        for _, output, *_ in items:
            if not output.completions:
                raise NoCandidatesError(output.failures)
        extract_times, groups = [], []
        for prompt, output, *_ in items:
            t0 = time.perf_counter()
            groups.append((prompt, self.extract(prompt, [c.text for c in output.completions], checkpoint)))
            extract_times.append(time.perf_counter() - t0)
        if checkpoint is not None:
            checkpoint()
        t0 = time.perf_counter()
        scored_groups = score_extractions(self.reward_model, groups, dedup=self.dedup)
        score_time = time.perf_counter() - t0
        return [
            self.finish(prompt, output, scored, Timings(
                generate=generate_time, extract=extract_time, score=score_time,
                total=generate_time + extract_time + score_time,
            ), tests=tests, samples=samples, checkpoint=checkpoint)
            for (prompt, output, generate_time, tests, samples), scored, extract_time
            in zip(items, scored_groups, extract_times)
        ]

    def extract(
        self, prompt: str, texts: Sequence[str], checkpoint: Callable[[], None] | None = None
    ) -> list[Extraction]:
        """The code of each response to `prompt`, by this reranker's language and mode (lenient: with the entry
        point the prompt names)."""
        return extract_all(texts, self.language, self.mode, prompt, checkpoint=checkpoint)

    def finish(
        self, prompt: str, output: GenerationOutput, scored: list[ScoredExtraction], timings: Timings, *,
        tests: str | None = None, samples: int | None = None, checkpoint: Callable[[], None] | None = None,
    ) -> RerankResult:
        """The ranked result of scored completions: the RM's order, then the selection stage (after `checkpoint`,
        if given, which may raise to stop before any sandbox run)."""
        completions = output.completions
        candidates = sorted(
            (build_candidate(i, comp, s) for i, (comp, s) in enumerate(zip(completions, scored))), key=selection_key
        )
        for rank, c in enumerate(candidates, start=1):
            c.rank = rank
        usage = Usage(
            prompt_tokens=max((c.prompt_tokens or 0 for c in completions), default=0),
            completion_tokens=(
                output.completion_tokens
                if output.completion_tokens is not None
                else sum(c.completion_tokens or 0 for c in completions)
            ),
            scored_tokens=sum(s.n_tokens for s in scored if s.duplicate_of is None),
            scored_programs=sum(1 for s in scored if s.score is not None and s.duplicate_of is None),
        )
        result = RerankResult(
            best=candidates[0], candidates=candidates, timings=timings, usage=usage,
            failures=output.failures, reward_model=getattr(self.reward_model, "name", None), samples=samples,
        )
        if checkpoint is not None:
            checkpoint()
        return self.selection.apply(prompt, result, tests)


def _as_output(candidates: Sequence[str]) -> GenerationOutput:
    if isinstance(candidates, str):
        raise TypeError("candidates must be a list of strings, not one string")
    if not candidates:
        raise ValueError("no candidates to rank")
    return GenerationOutput(completions=[Completion(text=t) for t in candidates])


def build_candidate(index: int, completion: Completion, s: ScoredExtraction) -> Candidate:
    """A Candidate (rank still 0) from a completion and its scored extraction."""
    return Candidate(
        index=index, text=completion.text, code=s.extraction.code, language=s.extraction.language,
        valid=s.valid, reason=s.reason, score=s.score, reward=s.reward, rank=0, truncated=s.truncated,
        duplicate_of=s.duplicate_of, control_tokens=list(s.control_tokens), finish_reason=completion.finish_reason,
        completion_tokens=completion.completion_tokens, latency=completion.latency,
    )


def rerank(
    prompt: str,
    n: int = 8,
    *,
    generator: str | Generator,
    reward_model: str | RewardScorer = DEFAULT_REWARD_MODEL,
    **kwargs: Any,
) -> RerankResult:
    """One-shot `Reranker(generator, reward_model, **kwargs).rerank(prompt, n)`: `Reranker` options (`selector`,
    `calibration`, ...) and `rerank` ones (`target`, `tests`) are taken from kwargs; the others are sampling knobs.

    Reward models given by name are loaded once and kept (the two most recent).
    """
    sampling = {k: kwargs.pop(k) for k in list(kwargs) if k not in RERANKER_OPTIONS}
    if isinstance(reward_model, str):
        reward_model = _cached_reward_model(reward_model)
    return Reranker(generator, reward_model, **kwargs).rerank(prompt, n, **sampling)


RERANKER_OPTIONS = ("language", "mode", "dedup", "sampling", "selector", "calibration", "min_confidence", "sandbox")
_cached_reward_model = functools.lru_cache(maxsize=2)(load_reward_model)
