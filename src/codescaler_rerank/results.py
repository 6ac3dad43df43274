"""Result types of reranking."""

from __future__ import annotations

from typing import Sequence

from pydantic import BaseModel

from .generators.base import GenerationError, GenerationFailure


class Candidate(BaseModel):
    """One sampled answer after extraction, scoring and shaping; `rank` 1 is the selected one."""

    index: int  # position among the answers as generated / given
    text: str
    code: str
    language: str | None
    valid: bool
    reason: str  # "ok" or "code_in_reasoning" when valid (extraction.VALID_REASONS), else why invalid / not scored
    score: float | None  # raw reward-model score; None when the code was not scored
    reward: float  # shaped reward: 0.0 if invalid, softplus(score) otherwise
    rank: int
    truncated: bool = False  # the RM input was cut at the model's max_length
    duplicate_of: int | None = None  # index of the identical program whose score this one shares
    control_tokens: list[str] = []  # RM special tokens (e.g. "<|im_end|>") written literally in the code; the RM
    # reads them as the real tokens, as the CodeScaler recipe does; they cannot change another candidate's score
    finish_reason: str | None = None
    completion_tokens: int | None = None
    latency: float | None = None
    p_pass: float | None = None  # calibrated P(pass | score), when the reranker has a calibration
    tests_passed: bool | None = None  # verdict on the public tests (rm+tests, tests); None: not run


class Timings(BaseModel):
    """Wall-clock seconds per stage."""

    generate: float = 0.0
    extract: float = 0.0
    score: float = 0.0
    select: float = 0.0  # the selector (its sandbox runs, for rm+tests and tests) and calibration
    total: float = 0.0


class Usage(BaseModel):
    """Token counts: generation as reported by the backend, scoring as encoded for the RM."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    scored_tokens: int = 0
    scored_programs: int = 0  # distinct valid programs sent to the RM


class RerankResult(BaseModel):
    """The selected candidate, all candidates ranked best first, and what it cost."""

    best: Candidate
    candidates: list[Candidate]
    timings: Timings
    usage: Usage
    failures: list[GenerationFailure] = []
    reward_model: str | None = None
    selector: str = "rm"  # the selector that ordered `candidates` (see `selection`)
    confidence: float | None = None  # the best candidate's P(pass); None without a calibration
    abstained: bool = False  # confidence below the reranker's `min_confidence`: no candidate is likely correct
    samples: int | None = None  # samples drawn (all of them, adaptive `rerank(..., target=...)` included)
    sandbox_runs: int = 0  # sandbox runs the selector made


class NoCandidatesError(GenerationError):
    """Nothing to rank: the generation produced no completion. `failures` says why each sample failed."""

    def __init__(self, failures: Sequence[GenerationFailure] = ()) -> None:
        self.failures = list(failures)
        reasons = "; ".join(f"sample {f.index}: {f.error}" for f in self.failures[:3])
        more = f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        detail = f": {len(self.failures)} failed ({reasons}{more})" if self.failures else ""
        super().__init__(f"no completion to rank{detail}")

    def __reduce__(self):  # picklable across processes (Ray, multiprocessing), failures included
        return type(self), (self.failures,)
