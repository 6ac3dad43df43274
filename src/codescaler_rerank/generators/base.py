"""The generator protocol: anything that turns one prompt into N completions."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel


class Completion(BaseModel):
    """One sampled answer, with what the backend said about it."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency: float | None = None  # seconds for the request that produced it


class GenerationFailure(BaseModel):
    """One of the N requested samples that could not be produced."""

    index: int
    error: str


class GenerationOutput(BaseModel):
    """Completions that arrived, and failures for the ones that did not."""

    completions: list[Completion]
    failures: list[GenerationFailure] = []
    completion_tokens: int | None = None  # total over all completions, when the backend reported it


class GenerationError(RuntimeError):
    """No completion at all could be produced."""


@runtime_checkable
class Generator(Protocol):
    """Samples `n` answers to a user prompt; sampling knobs (temperature, top_p, max_tokens, stop, ...) pass through."""

    def generate(self, prompt: str, n: int, **sampling: Any) -> GenerationOutput: ...

    async def agenerate(self, prompt: str, n: int, **sampling: Any) -> GenerationOutput: ...
