"""An OpenAI-compatible best-of-N proxy: `POST /v1/chat/completions` samples N answers upstream, answers with the best.

- The conversation goes to the upstream as it is (generators with `achat(messages, n, **sampling)`, such as
  `LiteLLMGenerator`); other generators get the last user message only. The reward model always scores
  (last user message's text, candidate code), the CodeScaler recipe.
- The reply's one choice is the selected answer; `codescaler` in the response holds the full ranking
  (candidates with scores and validity, timings, usage, failures). `n` in the request body (`extra_body={"n": 3}`
  with the openai client) sets the number of samples, not the number of choices. `usage` counts all N samples.
- `stream: true` gets the selected answer in SSE chunks once selection is done (the ranking rides on the last one).
- Scoring of concurrent requests is merged: each request's `score_pairs` call joins one queue, and one worker
  task scores everything pending in one bulk call of the reward model (`BatchingScorer`).
- Bearer auth on `/v1/*` when `api_key` is set (`/health` and `/metrics` stay open), 413 over `max_body_bytes`,
  429 when `max_pending` requests are already in flight, 504 after `request_timeout` seconds, and upstream
  failures as 400 (context too long), 429 (rate limited), 504 (timed out) or 502 (anything else, with the reason).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator, Sequence

from ._deps import require
from .generators.base import GenerationError, Generator
from .messages import last_text
from .pipeline import RewardScorer
from .reranker import Reranker
from .results import RerankResult
from .reward_model import ScoredInput
from .specs import load_reward_model

fastapi = require("fastapi", "server")
from fastapi import Request  # noqa: E402  (a module global, so FastAPI resolves the endpoint annotations)
from fastapi.responses import JSONResponse, Response, StreamingResponse  # noqa: E402

SAMPLING_KEYS = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "presence_penalty",
    "frequency_penalty",
)
STAGES = ("generate", "extract", "score", "total")
STREAM_PIECE = 64  # characters per streamed content chunk


@dataclass
class ServerConfig:
    """Knobs of the proxy; see the module docstring for what each limit answers."""

    n: int = 8
    max_n: int = 32
    api_key: str | None = None
    model_name: str | None = None  # the name in /v1/models and in responses (default: the generator's model)
    language: str | None = "python"
    mode: str = "lenient"
    dedup: bool = True
    max_pending: int = 64  # requests in flight (generating or scoring) before 429
    max_batch: int = 32  # requests scored in one bulk call
    batch_window: float = 0.01  # seconds the worker waits for more requests after the first
    request_timeout: float = 300.0
    max_body_bytes: int = 1 << 20
    sampling: dict[str, Any] = field(default_factory=dict)  # defaults under the request's own knobs


class BatchingScorer:
    """A RewardScorer that merges concurrent `score_pairs` calls into bulk calls of the wrapped scorer.

    `score_pairs` is called from worker threads (Reranker's scoring step); it queues its pairs on the event
    loop and waits. One worker task takes the first pending call, gathers whatever else arrives within
    `window` seconds (up to `max_batch` calls), and scores them all in one call in a thread.
    """

    def __init__(
        self, scorer: RewardScorer, *, max_batch: int = 32, window: float = 0.01, on_batch: Any = None
    ) -> None:
        self.scorer = scorer
        self.name = getattr(scorer, "name", type(scorer).__name__)
        self.max_batch = max_batch
        self.window = window
        self.on_batch = on_batch  # called with (requests, pairs) per bulk call
        self._queue: asyncio.Queue[tuple[Sequence[tuple[str, str]], concurrent.futures.Future]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        """Queue `pairs` for the next bulk call and wait for their scores (call from a thread, not the loop)."""
        if self._loop is None or self._queue is None:
            raise RuntimeError("BatchingScorer is not running: use it inside `async with scorer.running():`")
        future: concurrent.futures.Future[list[ScoredInput]] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (pairs, future))
        return future.result()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BatchingScorer]:
        """Run the worker task on the current event loop while the context is open."""
        self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
        worker = asyncio.create_task(self._work())
        try:
            yield self
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            self._loop = self._queue = None

    async def _work(self) -> None:
        assert self._loop is not None and self._queue is not None
        while True:
            jobs = [await self._queue.get()]
            deadline = self._loop.time() + self.window
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), max(0.0, deadline - self._loop.time())))
                except asyncio.TimeoutError:
                    break
            pairs = [pair for job_pairs, _ in jobs for pair in job_pairs]
            if self.on_batch is not None:
                self.on_batch(len(jobs), len(pairs))
            try:
                scored = await asyncio.to_thread(self.scorer.score_pairs, pairs)
            except Exception as exc:
                for _, future in jobs:
                    future.set_exception(exc)
                continue
            start = 0
            for job_pairs, future in jobs:
                future.set_result(scored[start : start + len(job_pairs)])
                start += len(job_pairs)


class ProxyError(Exception):
    """An error answered as an OpenAI-style JSON error with this HTTP status."""

    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": None}}


def upstream_error(exc: GenerationError) -> ProxyError:
    """Map a generation failure to the proxy's answer: by the upstream status code when the cause has one."""
    code = getattr(exc.__cause__, "status_code", None)
    if code in (408, 504):
        return ProxyError(504, f"upstream timed out: {exc}", "upstream_timeout")
    if code == 429:
        return ProxyError(429, f"upstream rate limit: {exc}", "rate_limit_error")
    if code in (400, 413, 422):
        return ProxyError(400, f"upstream rejected the request: {exc}")
    return ProxyError(502, f"upstream failed: {exc}", "upstream_error")


class _Metrics:
    """Prometheus metrics of one app, in their own registry."""

    def __init__(self) -> None:
        prom = require("prometheus_client", "server")
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter(
            "codescaler_requests", "Chat completion requests by HTTP status", ["status"], registry=self.registry
        )
        self.stage_seconds = prom.Histogram(
            "codescaler_stage_seconds", "Seconds per stage of a reranked request", ["stage"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, float("inf")),
        )
        self.candidates = prom.Counter(
            "codescaler_candidates", "Sampled candidates by extraction validity and reason", ["valid", "reason"],
            registry=self.registry,
        )
        self.batch_requests = prom.Histogram(
            "codescaler_score_batch_requests", "Requests merged into one scoring call", registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, float("inf")),
        )
        self.batch_pairs = prom.Histogram(
            "codescaler_score_batch_pairs", "Programs scored in one scoring call", registry=self.registry,
            buckets=(1, 4, 16, 64, 256, 1024, float("inf")),
        )
        self.in_flight = prom.Gauge("codescaler_in_flight", "Requests being served", registry=self.registry)
        self.latest = prom.generate_latest
        self.content_type = prom.CONTENT_TYPE_LATEST

    def observe_batch(self, requests: int, pairs: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_pairs.observe(pairs)

    def observe_result(self, result: RerankResult) -> None:
        for stage in STAGES:
            self.stage_seconds.labels(stage).observe(getattr(result.timings, stage))
        for c in result.candidates:
            self.candidates.labels(str(c.valid).lower(), c.reason).inc()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read up to `limit` bytes (413 beyond)."""
    if int(request.headers.get("content-length") or 0) > limit:
        raise ProxyError(413, f"request body over {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ProxyError(413, f"request body over {limit} bytes")
    return bytes(raw)


class _Proxy:
    """The request handling behind `create_app`."""

    def __init__(self, generator: Generator, reward_model: str | RewardScorer, config: ServerConfig) -> None:
        self.generator = generator
        self.config = config
        self.metrics = _Metrics()
        self.scorer = BatchingScorer(
            load_reward_model(reward_model), max_batch=config.max_batch, window=config.batch_window,
            on_batch=self.metrics.observe_batch,
        )
        self.reranker = Reranker(None, self.scorer, language=config.language, mode=config.mode, dedup=config.dedup)
        self.model_name = config.model_name or getattr(generator, "model", None) or "codescaler-rerank"
        self.in_flight = 0
        self.executor = concurrent.futures.ThreadPoolExecutor(config.max_pending, thread_name_prefix="codescaler-rank")

    def authorize(self, header: str | None) -> None:
        expected = self.config.api_key
        if expected is not None and not secrets.compare_digest(header or "", f"Bearer {expected}"):
            raise ProxyError(401, "invalid or missing API key (Authorization: Bearer <key>)", "authentication_error")

    async def read(self, request: Request) -> dict[str, Any]:
        """The request body, read up to `max_body_bytes`, then `parse`d."""
        return self.parse(await read_body(request, self.config.max_body_bytes))

    def parse(self, raw: bytes) -> dict[str, Any]:
        """Check the request body; `n` is set to the effective number of samples."""
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProxyError(400, f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ProxyError(400, "request body must be a JSON object")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ProxyError(400, "'messages' must be a non-empty list of message objects", param="messages")
        if body.get("tools"):
            raise ProxyError(400, "tools are not supported by the best-of-N proxy", param="tools")
        n = body.get("n") or self.config.n
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= self.config.max_n:
            raise ProxyError(400, f"'n' must be an integer from 1 to {self.config.max_n}", param="n")
        return {**body, "n": n}

    async def rerank(self, body: dict[str, Any]) -> RerankResult:
        """Sample and rank, bounded by `max_pending` and `request_timeout`."""
        if self.in_flight >= self.config.max_pending:
            raise ProxyError(429, f"server busy: {self.in_flight} requests in flight", "rate_limit_error")
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            return await asyncio.wait_for(self._rerank(body), self.config.request_timeout)
        except asyncio.TimeoutError as exc:
            raise ProxyError(504, f"request took longer than {self.config.request_timeout}s", "timeout") from exc
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()

    async def _rerank(self, body: dict[str, Any]) -> RerankResult:
        messages = body["messages"]
        prompt = last_text(messages, "user")
        if prompt is None:
            raise ProxyError(400, "the conversation needs a user message with text content", param="messages")
        n = body["n"]
        sampling = {**self.config.sampling, **{k: body[k] for k in SAMPLING_KEYS if body.get(k) is not None}}
        chat = getattr(self.generator, "achat", None)
        start = time.perf_counter()
        try:
            if chat is not None:
                output = await chat(messages, n, **sampling)
            else:
                output = await self.generator.agenerate(prompt, n, **sampling)
        except GenerationError as exc:
            raise upstream_error(exc) from exc
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self.executor, self.reranker.rank_output, prompt, output, time.perf_counter() - start
        )
        self.metrics.observe_result(result)
        return result

    def completion(self, result: RerankResult, n: int) -> dict[str, Any]:
        """The OpenAI chat.completion body: the best candidate as the one choice, the ranking under `codescaler`."""
        return {
            **self._envelope("chat.completion"),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": result.best.text},
                "finish_reason": result.best.finish_reason or "stop",
                "logprobs": None,
            }],
            "usage": _usage(result),
            "codescaler": _ranking(result, n),
        }

    def chunks(self, result: RerankResult, n: int, include_usage: bool) -> list[dict[str, Any]]:
        """The selected answer as chat.completion.chunk events; the last choice chunk carries the ranking."""
        envelope = self._envelope("chat.completion.chunk")
        text = result.best.text
        deltas = [{"role": "assistant", "content": ""}] + [
            {"content": text[i : i + STREAM_PIECE]} for i in range(0, len(text), STREAM_PIECE)
        ]
        events = [{**envelope, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        events.append({
            **envelope,
            "choices": [{"index": 0, "delta": {}, "finish_reason": result.best.finish_reason or "stop"}],
            "codescaler": _ranking(result, n),
        })
        if include_usage:
            events.append({**envelope, "choices": [], "usage": _usage(result)})
        return events

    def _envelope(self, kind: str) -> dict[str, Any]:
        created = int(time.time())
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": kind, "created": created, "model": self.model_name}


def _usage(result: RerankResult) -> dict[str, int]:
    usage = result.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _ranking(result: RerankResult, n: int) -> dict[str, Any]:
    return {"n": n, **result.model_dump(mode="json", exclude={"best"})}


def create_app(
    generator: Generator, reward_model: str | RewardScorer, config: ServerConfig | None = None
) -> fastapi.FastAPI:
    """The FastAPI app of the proxy; the scoring worker runs while the app's lifespan is open."""
    proxy = _Proxy(generator, reward_model, config or ServerConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with proxy.scorer.running():
            yield
        proxy.executor.shutdown(wait=False, cancel_futures=True)

    app = fastapi.FastAPI(title="codescaler-rerank proxy", lifespan=lifespan)
    app.state.proxy = proxy
    from .reward_endpoint import reward_router  # OpenRLHF's POST /get_reward, same key and body limit

    app.include_router(
        reward_router(proxy.scorer, api_key=proxy.config.api_key, max_body_bytes=proxy.config.max_body_bytes)
    )

    @app.exception_handler(ProxyError)
    async def _proxy_error(request: Any, exc: ProxyError) -> Any:
        headers = {"Retry-After": "1"} if exc.status == 429 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(Exception)
    async def _internal_error(request: Any, exc: Exception) -> Any:
        return JSONResponse(ProxyError(500, f"{type(exc).__name__}: {exc}", "server_error").body(), status_code=500)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        status = 500
        try:
            proxy.authorize(request.headers.get("authorization"))
            body = await proxy.read(request)
            result = await proxy.rerank(body)
            status = 200
        except ProxyError as exc:
            status = exc.status
            raise
        finally:
            proxy.metrics.requests.labels(str(status)).inc()
        if not body.get("stream"):
            return proxy.completion(result, body["n"])
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = [f"data: {json.dumps(e)}\n\n" for e in proxy.chunks(result, body["n"], include_usage)]
        return StreamingResponse(iter(events + ["data: [DONE]\n\n"]), media_type="text/event-stream")

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        proxy.authorize(request.headers.get("authorization"))
        model = {"id": proxy.model_name, "object": "model", "created": 0, "owned_by": "codescaler-rerank"}
        return {"object": "list", "data": [model]}

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok", "in_flight": proxy.in_flight, "reward_model": proxy.scorer.name}

    @app.get("/metrics")
    async def metrics() -> Any:
        return Response(proxy.metrics.latest(proxy.metrics.registry), media_type=proxy.metrics.content_type)

    return app


def is_loopback(host: str) -> bool:
    """Whether `host` binds to the loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    generator: Generator,
    reward_model: str | RewardScorer,
    config: ServerConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Run the proxy with uvicorn until interrupted; an API key is required when bound beyond loopback."""
    config = config or ServerConfig()
    if config.api_key is None and not is_loopback(host):
        raise ValueError(f"binding to {host} needs an API key (--api-key or CODESCALER_API_KEY)")
    uvicorn = require("uvicorn", "server")
    uvicorn.run(create_app(generator, reward_model, config), host=host, port=port, log_level="info")


@contextlib.contextmanager
def running_server(app: fastapi.FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread (port 0: a free one); yields the `/v1` base URL."""
    uvicorn = require("uvicorn", "server")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="codescaler-proxy")
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the proxy failed to start")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
