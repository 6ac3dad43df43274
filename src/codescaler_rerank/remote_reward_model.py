"""A reward model behind `vllm serve <rm> --runner pooling` servers: `/classify`, with `/pooling` as fallback.

Several URLs are replicas of one model: requests go to the least busy one and around one that fails.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import weakref
from typing import Any, Sequence

import httpx

from ._async import run_sync
from ._deps import require
from .formatting import EncodedInput, RMPreset, encode_rm_inputs, resolve_preset
from .reward_model import RewardModelError, ScoredInput, scored_inputs

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


def split_urls(url: str | Sequence[str]) -> list[str]:
    """Server base URLs from one URL, a comma-separated string or a list; `/v1` and trailing slashes dropped."""
    urls = url.split(",") if isinstance(url, str) else list(url)
    urls = [u.strip().rstrip("/").removesuffix("/v1") for u in urls if u.strip()]
    if not urls:
        raise ValueError("RemoteRewardModel needs at least one server URL")
    if len(set(urls)) != len(urls):
        raise ValueError(f"the same server URL is given twice: {urls}")
    return urls


class RemoteRewardModel:
    """Scores (prompt, code) pairs with a 1-logit classifier served by vLLM's OpenAI-compatible server(s).

    Input formatting is client-side: the library's one formatter (`encode_rm_inputs`: the RM tokenizer's chat
    template, right truncation at `max_length`) runs here, and the server gets token ids. So scores equal the
    Hugging Face `RewardModel`'s exactly, whatever the server's own templating or truncation would do.
    The tokenizer is loaded with transformers (the `hf` extra) from `tokenizer`, else from the served model's
    path as `/v1/models` reports it; pass `tokenizer=` when the client cannot reach that path.
    Requests carry `use_activation: false`, so scores are raw logits (vLLM would otherwise apply a sigmoid).
    `preset` (`formatting.RMPreset` or its name) defaults to the one the served model's name implies.

    Construction asks `/v1/models` for the model (and its `max_model_len`, which caps `max_length`) and sends
    one probe to pick the endpoint and to check that the model returns exactly one logit. Each request waits
    at most `timeout` seconds; connection errors, timeouts, 429 and 5xx are retried `max_retries` times with
    exponential backoff (`backoff`, 2x, 4x, ... seconds); other errors raise at once. At most `max_concurrency`
    requests of `batch_size` inputs are in flight per event loop.

    `url` may be a list of replicas of one model (or a comma-separated string). Construction checks that every
    replica serves the same model id and `max_model_len`. Each request goes to the replica with the fewest
    requests in flight (ties in turn); a replica that fails a request (connection error, timeout, 429, 5xx) is
    avoided for `cooldown` seconds and the request moves straight on to another one; the backoff sleep comes only
    after every replica has failed it. Scores do not depend on which replica answers.
    """

    def __init__(
        self,
        url: str | Sequence[str],
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
        cooldown: float = 30.0,
        preset: str | RMPreset | None = None,
    ) -> None:
        if max_concurrency < 1 or batch_size < 1 or max_retries < 0:
            raise ValueError("max_concurrency and batch_size must be at least 1, max_retries at least 0")
        self.urls = split_urls(url)
        self.url = ", ".join(self.urls)
        self.cooldown = cooldown
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_concurrency = max_concurrency
        self.batch_size = batch_size
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._in_flight = [0] * len(self.urls)
        self._failed_at: list[float | None] = [None] * len(self.urls)
        self._turn = itertools.count()
        card = run_sync(self._replica_card(model))
        self.model: str = card["id"]
        self.name = f"{self.url} ({self.model})"
        self.max_length = min(max_length, card.get("max_model_len") or max_length)
        if tokenizer is None:
            tokenizer = card.get("root") or self.model
        self.tokenizer = self._load_tokenizer(tokenizer, trust_remote_code)
        self.preset = resolve_preset(preset, card.get("root") or self.model)
        self.endpoint = run_sync(self._probe())

    def __repr__(self) -> str:
        urls = self.urls[0] if len(self.urls) == 1 else self.urls
        return f"RemoteRewardModel({urls!r}, model={self.model!r}, endpoint={self.endpoint!r})"

    def score(self, prompt: str, codes: Sequence[str]) -> list[float]:
        """Raw scores of `codes` as answers to `prompt`, in the order given."""
        return [s.score for s in self.score_pairs([(prompt, code) for code in codes])]

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        """Synchronous `ascore_pairs`; works inside a running event loop too."""
        return run_sync(self.ascore_pairs(pairs))

    async def ascore_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        """Score (prompt, code) pairs in concurrent requests of `batch_size` inputs."""
        encoded = encode_rm_inputs(self.tokenizer, pairs, self.max_length, self.preset)
        chunks = [encoded[i : i + self.batch_size] for i in range(0, len(encoded), self.batch_size)]
        async with self._client() as client:
            results = await asyncio.gather(*(self._classify(client, self.endpoint, chunk) for chunk in chunks))
        scores = [s for chunk_scores in results for s in chunk_scores]
        return scored_inputs(scores, encoded)

    # --- helpers ---

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=self._headers, timeout=self.timeout)

    async def _request(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any = None, replica: int | None = None
    ) -> httpx.Response:
        """One request with retries, on `replica` or on any; returns any response that is not 429/5xx (callers
        judge 4xx). Each round tries every replica (least in flight first) once; rounds after the first back off."""
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.setdefault(loop, asyncio.Semaphore(self.max_concurrency))
        replicas = range(len(self.urls)) if replica is None else [replica]
        error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            untried = list(replicas)
            while untried:
                async with semaphore:
                    i = self._pick(untried)
                    untried.remove(i)
                    failed = True
                    try:
                        response = await client.request(method, self.urls[i] + path, json=body)
                        failed = response.status_code == 429 or response.status_code >= 500
                    except httpx.TransportError as exc:
                        error = f"{self.urls[i]}: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
                        continue
                    finally:
                        self._done(i, failed)
                if not failed:
                    return response
                error = f"{self.urls[i]}: {_error_text(response)}"
        where = self.url if replica is None else self.urls[replica]
        raise RemoteRewardModelError(
            f"{method} {where}{path} failed after {self.max_retries + 1} attempts; last error: {error}"
        )

    def _pick(self, candidates: Sequence[int]) -> int:
        """The candidate replica with the fewest requests in flight, preferring ones not failed lately; ties in
        turn. Counts it as in flight."""
        with self._lock:
            now = time.monotonic()
            turn = next(self._turn)

            def key(i: int) -> tuple[bool, int, int]:
                failed = self._failed_at[i]
                cooling = failed is not None and now - failed < self.cooldown
                return cooling, self._in_flight[i], (i - turn) % len(self.urls)

            chosen = min(candidates, key=key)
            self._in_flight[chosen] += 1
            return chosen

    def _done(self, replica: int, failed: bool) -> None:
        with self._lock:
            self._in_flight[replica] -= 1
            self._failed_at[replica] = time.monotonic() if failed else None

    async def _replica_card(self, model: str | None) -> dict[str, Any]:
        """The model card of the first replica, checked to be what every replica serves."""
        async with self._client() as client:
            cards = await asyncio.gather(*(self._model_card(client, i, model) for i in range(len(self.urls))))
        first = cards[0]
        for url, card in zip(self.urls[1:], cards[1:]):
            for key in ("id", "max_model_len"):
                if card.get(key) != first.get(key):
                    raise RewardModelError(
                        f"replicas differ: {self.urls[0]} serves {key}={first.get(key)!r} but {url} serves "
                        f"{key}={card.get(key)!r}; every URL must serve the same reward model"
                    )
        return first

    async def _model_card(self, client: httpx.AsyncClient, replica: int, model: str | None) -> dict[str, Any]:
        """The `/v1/models` entry of `model`, or of the only model served, on one replica."""
        url = self.urls[replica]
        response = await self._request(client, "GET", "/v1/models", replica=replica)
        if response.status_code != 200:
            raise RemoteRewardModelError(f"GET {url}/v1/models: {_error_text(response)}")
        cards = response.json().get("data") or []
        ids = [c.get("id") for c in cards]
        if model is None and len(cards) == 1:
            return cards[0]
        if model is not None and model in ids:
            return cards[ids.index(model)]
        wanted = f"model {model!r} is not served" if model else "several models are served: pass model="
        raise RewardModelError(f"{url}: {wanted} (served: {ids})")

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
