"""An OpenAI-compatible best-of-N proxy: `POST /v1/chat/completions` samples N answers upstream, answers with the best.

- The conversation goes to the upstream as it is (generators with `achat(messages, n, **sampling)`, such as
  `LiteLLMGenerator`); other generators get the last user message only. The reward model always scores
  (last user message's text, candidate code), the CodeScaler recipe.
- The reply's one choice is the selected answer; `codescaler` in the response holds the full ranking
  (candidates with scores and validity, timings per stage, usage, failures, and what the selection stage added:
  `selector`, `confidence`, `abstained`, `sandbox_runs`, per candidate `p_pass` and `tests_passed`). `n` in the
  request body (`extra_body={"n": 3}` with the openai client) sets the number of samples, not the number of
  choices; `tests` (a string of assertions) gives the execution-based selectors (`ServerConfig.selector`) their
  public tests, else they use the prompt's examples. `usage` counts all N samples.
- `stream: true` gets the selected answer in SSE chunks once selection is done (the ranking rides on the last one).
- Scoring of concurrent requests is merged into bulk calls of the reward model (`BatchingScorer`); a bulk call
  that raises is retried request by request, so one bad request fails alone.

Limits, and what a client gets (`ServerConfig` fields):

- auth (`api_key`): bearer token on `/v1/*`, `/get_reward`, `/docs`, `/redoc`, `/openapi.json`, the reward
  model's name in `/health`, and `/metrics` with `metrics_auth`; 401 otherwise.
- body (`max_body_bytes`) 413; malformed JSON, nesting deeper than 64, bad `n`/`stream`/`stream_options`/`tests`:
  400.
- `max_pending` requests in flight, counted until their ranking has stopped, not until their answer: 429.
- `request_timeout` seconds per request: 504, and the request's scoring job is cancelled (ranking stops at its
  next step, a queued scoring job is skipped).
- upstream answers over `max_answer_chars`, or past `max_total_answer_chars` in all, are dropped as failed samples
  (listed in `codescaler.failures`); none left: 502. Other upstream failures: 400 (context too long), 429 (rate
  limited), 504 (timed out) or 502 (anything else, with the reason).
- the reward model raising: 502; anything else unexpected: 500. Both name a request id (also in the
  `x-request-id` header of every answer); the exception is in the server log, never in the answer.
- connections (`_http_limits`): request headers within `header_timeout` s, the body within `body_timeout` s
  (408, closed), at most `limit_concurrency` connections (idle ones beyond are closed, oldest first; requests
  while all are busy: 503), idle keep-alive connections closed after `keep_alive` s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

from ._batching import BatchingScorer, JobCancelled, ScoringFailed, Ticket
from ._deps import require
from ._http_api import (
    ProxyError,
    RequestIdMiddleware,
    bearer_matches,
    internal_error,
    parse_json,
    read_body,
    request_id,
    upstream_error,
)
from ._metrics import ProxyMetrics
from .generators.base import GenerationError, GenerationFailure, GenerationOutput, Generator
from .messages import last_text
from .pipeline import RewardScorer
from .public_tests import parses
from .reranker import Reranker
from .results import RerankResult
from .reward_model import warm_up
from .selection import selection_stage
from .specs import load_reward_model

fastapi = require("fastapi", "server")
from fastapi import Request  # noqa: E402  (a module global, so FastAPI resolves the endpoint annotations)
from fastapi.responses import JSONResponse, Response, StreamingResponse  # noqa: E402

__all__ = ["BatchingScorer", "ProxyError", "ServerConfig", "create_app", "read_body", "running_server", "serve"]

SAMPLING_KEYS = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "presence_penalty",
    "frequency_penalty",
)
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
    max_pending: int = 64  # requests in flight (generating or ranking) before 429
    max_batch: int = 32  # requests scored in one bulk call
    batch_window: float = 0.01  # seconds the worker waits for more requests after the first
    request_timeout: float = 300.0
    max_body_bytes: int = 1 << 20
    max_answer_chars: int = 256 * 1024  # per upstream answer; longer ones are dropped as failed samples
    max_total_answer_chars: int = 4 * 1024 * 1024  # all answers of one request together
    metrics_auth: bool = False  # /metrics needs the bearer token too
    limit_concurrency: int = 1000  # open connections (and requests in progress)
    header_timeout: float = 10.0  # seconds to receive a request's line and headers
    body_timeout: float = 30.0  # seconds to receive a request's body after its headers
    keep_alive: int = 5  # seconds an idle kept-alive connection stays open
    sampling: dict[str, Any] = field(default_factory=dict)  # defaults under the request's own knobs
    selector: str = "rm"  # see `selection`: "rm", "rm+votes", "rm+tests", "tests"
    calibration: Any = None  # a Calibrator or its file (`codescaler-rerank calibrate`), for p_pass and confidence
    min_confidence: float | None = None  # below it a result is marked abstained (needs a calibration)


def cap_answers(output: GenerationOutput, per_answer: int, total: int) -> GenerationOutput:
    """`output` without the completions over `per_answer` characters or past `total` in all; they become failures."""
    kept, failures, used = [], list(output.failures), 0
    for index, completion in enumerate(output.completions):
        size = len(completion.text)
        if size > per_answer:
            failures.append(GenerationFailure(index=index, error=f"answer of {size} characters is over the {per_answer} limit"))
        elif used + size > total:
            failures.append(GenerationFailure(index=index, error=f"answers over {total} characters in all"))
        else:
            kept.append(completion)
            used += size
    if len(kept) == len(output.completions):
        return output
    return output.model_copy(update={"completions": kept, "failures": failures})


class _Proxy:
    """The request handling behind `create_app`."""

    def __init__(self, generator: Generator, reward_model: str | RewardScorer, config: ServerConfig) -> None:
        if config.metrics_auth and config.api_key is None:
            raise ValueError("metrics_auth needs an api_key")
        self.generator = generator
        self.config = config
        self.metrics = ProxyMetrics()
        self.scorer = BatchingScorer(
            load_reward_model(reward_model), max_batch=config.max_batch, window=config.batch_window,
            on_batch=self.metrics.observe_batch,
        )
        self.selection = selection_stage(None, config.selector, config.calibration, config.min_confidence)
        self._reranker(Ticket())  # a bad language, mode or dedup setting fails here, not at the first request
        self.model_name = config.model_name or getattr(generator, "model", None) or "codescaler-rerank"
        self.in_flight = 0
        self._lock = threading.Lock()
        self.executor = concurrent.futures.ThreadPoolExecutor(config.max_pending, thread_name_prefix="codescaler-rank")

    def authorized(self, request: Request) -> bool:
        key = self.config.api_key
        return key is None or bearer_matches(request.headers.get("authorization"), key)

    def authorize(self, request: Request) -> None:
        if not self.authorized(request):
            raise ProxyError(401, "invalid or missing API key (Authorization: Bearer <key>)", "authentication_error")

    async def read(self, request: Request) -> dict[str, Any]:
        """The request body, read up to `max_body_bytes`, then `parse`d."""
        return self.parse(await read_body(request, self.config.max_body_bytes))

    def parse(self, raw: bytes) -> dict[str, Any]:
        """Check the request body; `n` is set to the effective number of samples."""
        body = parse_json(raw)
        if not isinstance(body, dict):
            raise ProxyError(400, "request body must be a JSON object")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ProxyError(400, "'messages' must be a non-empty list of message objects", param="messages")
        for i, message in enumerate(messages):
            problem = _message_problem(message)
            if problem:
                raise ProxyError(400, f"messages[{i}]: {problem}", param="messages")
        if body.get("tools"):
            raise ProxyError(400, "tools are not supported by the best-of-N proxy", param="tools")
        n = self.config.n if body.get("n") is None else body["n"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= self.config.max_n:
            raise ProxyError(400, f"'n' must be an integer from 1 to {self.config.max_n}", param="n")
        if not isinstance(body.get("stream", False), (bool, type(None))):
            raise ProxyError(400, "'stream' must be a boolean", param="stream")
        if not isinstance(body.get("stream_options", {}), (dict, type(None))):
            raise ProxyError(400, "'stream_options' must be an object", param="stream_options")
        tests = body.get("tests")
        if tests is not None and not (isinstance(tests, str) and parses(tests)):
            raise ProxyError(400, "'tests' must be a string of Python assertions that parses", param="tests")
        return {**body, "n": n}

    def _admit(self) -> Ticket:
        with self._lock:
            if self.in_flight >= self.config.max_pending:
                raise ProxyError(429, f"server busy: {self.in_flight} requests in flight", "rate_limit_error")
            self.in_flight += 1
        self.metrics.in_flight.inc()
        return Ticket(self.config.request_timeout)

    def _release(self) -> None:
        with self._lock:
            self.in_flight -= 1
        self.metrics.in_flight.dec()

    async def rerank(self, body: dict[str, Any]) -> RerankResult:
        """Sample and rank, bounded by `max_pending` and `request_timeout`.

        The request counts as in flight until its ranking thread has stopped, which the ticket's cancellation
        (on timeout, or any other exit) makes happen at the ranking's next step.
        """
        ticket = self._admit()
        ranking: concurrent.futures.Future | None = None
        try:
            prompt, output, generate_time = await asyncio.wait_for(self._generate(body), ticket.remaining())
            ranking = self.executor.submit(self._rank, ticket, prompt, output, generate_time, body.get("tests"))
            result = await asyncio.wait_for(asyncio.wrap_future(ranking), ticket.remaining())
        except (asyncio.TimeoutError, JobCancelled) as exc:
            raise ProxyError(504, f"request took longer than {self.config.request_timeout}s", "timeout") from exc
        finally:
            ticket.cancel()
            if ranking is None:
                self._release()
            else:
                ranking.add_done_callback(lambda _: self._release())
        self.metrics.observe_result(result)
        return result

    async def _generate(self, body: dict[str, Any]) -> tuple[str, GenerationOutput, float]:
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
        output = cap_answers(output, self.config.max_answer_chars, self.config.max_total_answer_chars)
        return prompt, output, time.perf_counter() - start

    def _rank(
        self, ticket: Ticket, prompt: str, output: GenerationOutput, generate_time: float, tests: str | None = None
    ) -> RerankResult:
        """Extract, score and select in a worker thread; the ticket is checked before each step."""
        return self._reranker(ticket).rank_output(prompt, output, generate_time, tests=tests, checkpoint=ticket.check)

    def _reranker(self, ticket: Ticket) -> Reranker:
        """A Reranker whose scoring calls carry `ticket`, with the proxy's selection stage."""
        config, stage = self.config, self.selection
        return Reranker(
            None, self.scorer.bound(ticket), language=config.language, mode=config.mode, dedup=config.dedup,
            selector=stage.selector, calibration=stage.calibrator, min_confidence=stage.min_confidence,
        )

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


def _message_problem(message: dict[str, Any]) -> str | None:
    """What is wrong with one chat message's shape, or None."""
    if not isinstance(message.get("role"), str):
        return "'role' must be a string"
    content = message.get("content")
    if content is None or isinstance(content, str):
        return None
    if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
        return "'content' must be a string or a list of content parts"
    if any(part.get("type") == "text" and not isinstance(part.get("text"), str) for part in content):
        return "a text content part needs a string 'text'"
    return None


def answer_for(exc: Exception, rid: str) -> ProxyError:
    """The error a failed chat request gets: client and upstream errors as they are, server failures by id."""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, GenerationError):  # NoCandidatesError: every answer failed or was dropped
        return upstream_error(exc)
    if isinstance(exc, ScoringFailed):
        error = internal_error(exc.__cause__ or exc, rid, "the reward model failed on this request")
        return ProxyError(502, error.message, "reward_model_error")
    return internal_error(exc, rid)


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
        await asyncio.to_thread(warm_up, proxy.scorer.scorer)  # probe / compile before the first request
        async with proxy.scorer.running():
            yield
        proxy.executor.shutdown(wait=False, cancel_futures=True)

    open_docs = proxy.config.api_key is None
    app = fastapi.FastAPI(
        title="codescaler-rerank proxy", lifespan=lifespan, docs_url="/docs" if open_docs else None,
        redoc_url="/redoc" if open_docs else None, openapi_url="/openapi.json" if open_docs else None,
    )
    app.state.proxy = proxy
    app.add_middleware(RequestIdMiddleware)
    from .reward_endpoint import reward_router  # OpenRLHF's POST /get_reward, same key and body limit

    app.include_router(
        reward_router(proxy.scorer, api_key=proxy.config.api_key, max_body_bytes=proxy.config.max_body_bytes)
    )

    @app.exception_handler(ProxyError)
    async def _proxy_error(request: Any, exc: ProxyError) -> Any:
        headers = {"Retry-After": "1"} if exc.status == 429 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(Exception)
    async def _internal_error(request: Any, exc: Exception) -> Any:  # outside chat: /get_reward's RM failing, bugs
        error = answer_for(exc, request_id(request))
        return JSONResponse(error.body(), status_code=error.status)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        status = 500
        try:
            proxy.authorize(request)
            body = await proxy.read(request)
            result = await proxy.rerank(body)
            status = 200
        except Exception as exc:
            error = answer_for(exc, request_id(request))
            status = error.status
            if error is exc:
                raise
            raise error from exc
        finally:
            proxy.metrics.requests.labels(str(status)).inc()
        if not body.get("stream"):
            return proxy.completion(result, body["n"])
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = [f"data: {json.dumps(e)}\n\n" for e in proxy.chunks(result, body["n"], include_usage)]
        return StreamingResponse(iter(events + ["data: [DONE]\n\n"]), media_type="text/event-stream")

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        proxy.authorize(request)
        model = {"id": proxy.model_name, "object": "model", "created": 0, "owned_by": "codescaler-rerank"}
        return {"object": "list", "data": [model]}

    @app.get("/health")
    async def health(request: Request) -> Any:
        state = {"status": "ok", "in_flight": proxy.in_flight, "scorer_restarts": proxy.scorer.restarts}
        if proxy.authorized(request):  # the RM name can be a local path: only for clients with the key
            state["reward_model"] = proxy.scorer.name
        return state

    @app.get("/metrics")
    async def metrics(request: Request) -> Any:
        if proxy.config.metrics_auth:
            proxy.authorize(request)
        return Response(proxy.metrics.latest(proxy.metrics.registry), media_type=proxy.metrics.content_type)

    if not open_docs:
        _add_private_docs(app, proxy)
    return app


def _add_private_docs(app: fastapi.FastAPI, proxy: _Proxy) -> None:
    """`/openapi.json`, `/docs` and `/redoc` behind the bearer token (a browser's Swagger UI cannot send it)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Any:
        proxy.authorize(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Any:
        proxy.authorize(request)
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> Any:
        proxy.authorize(request)
        return get_redoc_html(openapi_url="/openapi.json", title=app.title)


def is_loopback(host: str) -> bool:
    """Whether `host` binds to the loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uvicorn_config(app: fastapi.FastAPI, **options: Any) -> Any:
    """A `uvicorn.Config` for `app` with the connection limits of its `ServerConfig` (see `_http_limits`)."""
    uvicorn = require("uvicorn", "server")
    from ._http_limits import FD_RESERVE, connection_budget, limited_protocol

    config: ServerConfig = app.state.proxy.config
    connections = connection_budget(config.limit_concurrency, FD_RESERVE + config.max_pending)
    protocol = limited_protocol(config.header_timeout, config.body_timeout, connections)
    # uvicorn answers 503 from `limit_concurrency` open connections on; eviction keeps them below it while any is idle
    return uvicorn.Config(
        app, http=protocol, limit_concurrency=connections + 1, timeout_keep_alive=config.keep_alive, **options
    )


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
    app = create_app(generator, reward_model, config)
    uvicorn.Server(uvicorn_config(app, host=host, port=port, log_level="info")).run()


@contextlib.contextmanager
def running_server(app: fastapi.FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread (port 0: a free one); yields the `/v1` base URL."""
    uvicorn = require("uvicorn", "server")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn_config(app, log_level="warning"))
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
