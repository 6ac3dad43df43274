"""A generator over any LiteLLM provider: hosted APIs or an OpenAI-compatible server (vLLM, SGLang, ...)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import weakref
from types import ModuleType
from typing import Any, Sequence

from .._async import run_sync
from .._deps import require
from .base import Completion, GenerationError, GenerationFailure, GenerationOutput

logger = logging.getLogger(__name__)
NO_API_KEY = "EMPTY"  # sent to an `api_base` server when no key is given (never the environment's provider key)


@functools.cache
def _litellm() -> ModuleType:
    """Import litellm once, without its network fetch of the price list and its stdout help banners."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = require("litellm", "litellm")
    litellm.suppress_debug_info = True
    return litellm


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class LiteLLMGenerator:
    """Samples `n` answers per prompt through `litellm.acompletion`, in one request when the provider allows it.

    Error policy: authentication, permission, not-found, context-window, timeout and rate-limit errors of
    the n-request raise GenerationError at once (more requests would not help). Any other error of it
    (e.g. a 400 or UnsupportedParamsError for `n`, a 5xx) falls back to `n` concurrent single requests;
    a 400 for `n` that single requests then get past is remembered, and later calls go straight to single
    requests. Single requests that fail become GenerationFailure entries; if nothing at all arrives,
    GenerationError names the first error. `max_concurrency` bounds in-flight requests per event loop.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        system: str | None = None,
        timeout: float = 120.0,
        max_concurrency: int = 16,
        num_retries: int = 2,
        **default_sampling: Any,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._litellm = _litellm()
        self.model = model
        self.api_base = api_base
        # OpenAI-compatible servers without auth (e.g. `vllm serve`) still need some key in the client.
        self._api_key = api_key if api_key is not None or api_base is None else NO_API_KEY
        self.system = system
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.num_retries = num_retries
        self.default_sampling = default_sampling
        self._n_rejected = False
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return (
            f"LiteLLMGenerator(model={self.model!r}, api_base={self.api_base!r}, api_key={key}, "
            f"system={self.system!r}, timeout={self.timeout}, max_concurrency={self.max_concurrency}, "
            f"num_retries={self.num_retries}, default_sampling={self.default_sampling!r})"
        )

    def generate(self, prompt: str, n: int, **sampling: Any) -> GenerationOutput:
        """Synchronous `agenerate`; works inside a running event loop too."""
        return run_sync(self.agenerate(prompt, n, **sampling))

    async def agenerate(self, prompt: str, n: int, **sampling: Any) -> GenerationOutput:
        """Sample `n` answers to a user prompt (after the optional system message)."""
        messages = [{"role": "user", "content": prompt}]
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": self.system})
        return await self.achat(messages, n, **sampling)

    async def achat(self, messages: Sequence[dict[str, Any]], n: int, **sampling: Any) -> GenerationOutput:
        """Sample `n` replies to a conversation sent as it is; per-call sampling knobs override the defaults."""
        if n < 1:
            raise ValueError("n must be at least 1")
        messages = list(messages)
        params = {**self.default_sampling, **sampling}

        completions: list[Completion] = []
        batch_tokens: int | None = 0  # completion tokens of the n-request (only its total is known)
        rejected_n = False
        if n > 1 and not self._n_rejected:
            try:
                completions, batch_tokens = await self._request(messages, n, params)
            except Exception as exc:
                if isinstance(exc, self._fatal_errors()):
                    raise GenerationError(f"request to {self.model} failed: {_describe(exc)}") from exc
                rejected_n = isinstance(exc, self._litellm.BadRequestError)
                logger.info("n=%d request to %s failed (%s); using single requests", n, self.model, _describe(exc))
            completions = completions[:n]

        start = len(completions)
        results = await asyncio.gather(*(self._single(messages, params) for _ in range(start, n)))
        failures = [
            GenerationFailure(index=start + i, error=_describe(r))
            for i, r in enumerate(results)
            if isinstance(r, Exception)
        ]
        completions += [r for r in results if isinstance(r, Completion)]
        if not completions:
            raise GenerationError(
                f"no completion from {self.model}: {len(failures)} of {n} requests failed; "
                f"first error: {failures[0].error}"
            )
        if rejected_n:
            self._n_rejected = True
        singles = [c.completion_tokens for c in completions[start:]]
        known = batch_tokens is not None and all(t is not None for t in singles)
        total = (batch_tokens or 0) + sum(t or 0 for t in singles) if known else None
        return GenerationOutput(completions=completions, failures=failures, completion_tokens=total)

    def _fatal_errors(self) -> tuple[type[Exception], ...]:
        """Errors of the n-request that single requests would only repeat."""
        lm = self._litellm
        return (
            lm.AuthenticationError,
            lm.PermissionDeniedError,
            lm.NotFoundError,
            lm.ContextWindowExceededError,
            lm.Timeout,
            lm.RateLimitError,
        )

    async def _single(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Completion | Exception:
        """One single-sample request; its error is returned, not raised."""
        try:
            completions, _ = await self._request(messages, 1, params)
        except Exception as exc:
            return exc
        return completions[0] if completions else GenerationError("the response had no choices")

    async def _request(
        self, messages: list[dict[str, Any]], n: int, params: dict[str, Any]
    ) -> tuple[list[Completion], int | None]:
        """One `acompletion` call for `n` choices (bounded by the per-loop semaphore), and its completion tokens."""
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.setdefault(loop, asyncio.Semaphore(self.max_concurrency))
        async with semaphore:
            started = time.perf_counter()
            response = await self._litellm.acompletion(
                model=self.model,
                messages=messages,
                n=n,
                api_base=self.api_base,
                api_key=self._api_key,
                timeout=self.timeout,
                max_retries=self.num_retries,  # the HTTP client retries 408/429/5xx and connection errors only
                **params,
            )
            latency = time.perf_counter() - started
        usage = getattr(response, "usage", None)
        choices = response.choices
        completions = [
            Completion(
                text=choice.message.content or "",
                finish_reason=choice.finish_reason,
                prompt_tokens=getattr(usage, "prompt_tokens", None),
                # with several choices in one response only the total is known
                completion_tokens=getattr(usage, "completion_tokens", None) if len(choices) == 1 else None,
                latency=latency,
            )
            for choice in choices
        ]
        return completions, getattr(usage, "completion_tokens", None)
