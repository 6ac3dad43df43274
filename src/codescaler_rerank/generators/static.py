"""A generator over answers the caller already has."""

from __future__ import annotations

from typing import Any, Sequence

from .base import Completion, GenerationError, GenerationOutput


class StaticGenerator:
    """Returns the first `n` of a fixed list of texts (all of them when `n` is None)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)

    def generate(self, prompt: str, n: int | None = None, **sampling: Any) -> GenerationOutput:
        texts = self.texts if n is None else self.texts[:n]
        if not texts:
            raise GenerationError("StaticGenerator has no candidates")
        return GenerationOutput(completions=[Completion(text=t) for t in texts])

    async def agenerate(self, prompt: str, n: int | None = None, **sampling: Any) -> GenerationOutput:
        return self.generate(prompt, n, **sampling)
