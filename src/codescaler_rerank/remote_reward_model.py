"""A reward model behind a `vllm serve <rm> --runner pooling` server: `/classify`, with `/pooling` as fallback."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Sequence

import httpx

from ._async import run_sync
from ._deps import require
from .formatting import EncodedInput, encode_rm_inputs
from .reward_model import RewardModelError, ScoredInput

ENDPOINTS = ("/classify", "/pooling")


class RemoteRewardModelError(RewardModelError):
    """The server could not be reached or refused a request."""


def _error_text(response: httpx.Response) -> str:
    """The server's error message (vLLM's `{"error": {"message": ...}}`), else the raw body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    message = error.get("message") if isinstance(error, dict) else None
    return f"HTTP {response.status_code}: {message or response.text[:500]}"


class RemoteRewardModel:
    """Scores (prompt, code) pairs with a 1-logit classifier served by vLLM's OpenAI-compatible server.

    Input formatting is client-side: the library's one formatter (`encode_rm_inputs`: the RM tokenizer's chat
    template, right truncation at `max_length`) runs here, and the server gets token ids. So scores equal the
    Hugging Face `RewardModel`'s exactly, whatever the server's own templating or truncation would do.
    The tokenizer is loaded with transformers (the `hf` extra) from `tokenizer`, else from the served model's
    path as `/v1/models` reports it; pass `tokenizer=` when the client cannot reach that path.
    Requests carry `use_activation: false`, so scores are raw logits (vLLM would otherwise apply a sigmoid).

    Construction asks `/v1/models` for the model (and its `max_model_len`, which caps `max_length`) and sends
    one probe to pick the endpoint and to check that the model returns exactly one logit. Each request waits
    at most `timeout` seconds; connection errors, timeouts, 429 and 5xx are retried `max_retries` times with
    exponential backoff (`backoff`, 2x, 4x, ... seconds); other errors raise at once. At most `max_concurrency`
    requests of `batch_size` inputs are in flight per event loop.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        tokenizer: Any = None,
        api_key: str | None = None,
        max_length: int = 4096,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_concurrency: int = 8,
        batch_size: int = 32,
        trust_remote_code: bool = False,
    ) -> None:
        if max_concurrency < 1 or batch_size < 1 or max_retries < 0:
            raise ValueError("max_concurrency and batch_size must be at least 1, max_retries at least 0")
        self.url = url.rstrip("/").removesuffix("/v1")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_concurrency = max_concurrency
        self.batch_size = batch_size
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        card = run_sync(self._model_card(model))
        self.model: str = card["id"]
        self.name = f"{self.url} ({self.model})"
        self.max_length = min(max_length, card.get("max_model_len") or max_length)
        if tokenizer is None:
            tokenizer = card.get("root") or self.model
        self.tokenizer = self._load_tokenizer(tokenizer, trust_remote_code)
        self.endpoint = run_sync(self._probe())

    def __repr__(self) -> str:
        return f"RemoteRewardModel({self.url!r}, model={self.model!r}, endpoint={self.endpoint!r})"

    def score(self, prompt: str, codes: Sequence[str]) -> list[float]:
        """Raw scores of `codes` as answers to `prompt`, in the order given."""
        return [s.score for s in self.score_pairs([(prompt, code) for code in codes])]

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        """Synchronous `ascore_pairs`; works inside a running event loop too."""
        return run_sync(self.ascore_pairs(pairs))

    async def ascore_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        """Score (prompt, code) pairs in concurrent requests of `batch_size` inputs."""
        encoded = encode_rm_inputs(self.tokenizer, pairs, self.max_length)
        chunks = [encoded[i : i + self.batch_size] for i in range(0, len(encoded), self.batch_size)]
        async with self._client() as client:
            results = await asyncio.gather(*(self._classify(client, self.endpoint, chunk) for chunk in chunks))
        scores = [s for chunk_scores in results for s in chunk_scores]
        return [ScoredInput(s, len(e.input_ids), e.truncated) for s, e in zip(scores, encoded)]

    # --- helpers ---

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=self.timeout)

    async def _request(self, client: httpx.AsyncClient, method: str, path: str, body: Any = None) -> httpx.Response:
        """One request with retries; returns any response that is not 429/5xx (callers judge 4xx)."""
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.setdefault(loop, asyncio.Semaphore(self.max_concurrency))
        error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                async with semaphore:
                    response = await client.request(method, path, json=body)
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if response.status_code != 429 and response.status_code < 500:
                return response
            error = _error_text(response)
        raise RemoteRewardModelError(
            f"{method} {self.url}{path} failed after {self.max_retries + 1} attempts; last error: {error}"
        )

    async def _model_card(self, model: str | None) -> dict[str, Any]:
        """The `/v1/models` entry of `model`, or of the only model served."""
        async with self._client() as client:
            response = await self._request(client, "GET", "/v1/models")
        if response.status_code != 200:
            raise RemoteRewardModelError(f"GET {self.url}/v1/models: {_error_text(response)}")
        cards = response.json().get("data") or []
        ids = [c.get("id") for c in cards]
        if model is None and len(cards) == 1:
            return cards[0]
        if model is not None and model in ids:
            return cards[ids.index(model)]
        wanted = f"model {model!r} is not served" if model else "several models are served: pass model="
        raise RewardModelError(f"{self.url}: {wanted} (served: {ids})")

    def _load_tokenizer(self, tokenizer: Any, trust_remote_code: bool) -> Any:
        if not isinstance(tokenizer, str):
            return tokenizer
        transformers = require("transformers", "hf")
        try:
            return transformers.AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise RewardModelError(
                f"cannot load the tokenizer of {self.model!r} from {tokenizer!r} ({exc}); "
                "pass tokenizer= (a name, a path or a tokenizer object)"
            ) from exc

    async def _probe(self) -> str:
        """The first of ENDPOINTS that the server answers, checked to return one logit."""
        probe = encode_rm_inputs(self.tokenizer, [("probe", "pass")], self.max_length)
        async with self._client() as client:
            for endpoint in ENDPOINTS:
                try:
                    await self._classify(client, endpoint, probe)
                except _NotFound:
                    continue
                return endpoint
        raise RewardModelError(
            f"{self.url} serves {self.model!r} without {' or '.join(ENDPOINTS)}: it is not a pooling model "
            f"(a generator?); serve the reward model with `vllm serve <rm> --runner pooling`"
        )

    async def _classify(self, client: httpx.AsyncClient, endpoint: str, inputs: Sequence[EncodedInput]) -> list[float]:
        """Raw logits of token-id inputs from one request to `endpoint`."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": [e.input_ids for e in inputs],
            "use_activation": False,
        }
        if endpoint == "/pooling":
            body["task"] = "classify"
        response = await self._request(client, "POST", endpoint, body)
        if response.status_code == 404:
            raise _NotFound(endpoint)
        if response.status_code != 200:
            raise RemoteRewardModelError(f"POST {self.url}{endpoint}: {_error_text(response)}")
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        values = [d["probs"] if endpoint == "/classify" else d["data"] for d in data]
        if len(values) != len(inputs):
            raise RemoteRewardModelError(f"{self.url}{endpoint}: {len(values)} results for {len(inputs)} inputs")
        for value in values:
            if not isinstance(value, list) or len(value) != 1:
                width = len(value) if isinstance(value, list) else type(value).__name__
                raise RewardModelError(
                    f"{self.model!r} at {self.url} returns {width} values per input; "
                    "a CodeScaler-style reward model is a sequence classifier with exactly one logit"
                )
        return [float(v[0]) for v in values]


class _NotFound(Exception):
    """The server has no such endpoint (404)."""
