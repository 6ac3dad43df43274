"""A real OpenAI-compatible HTTP server on 127.0.0.1, scripted by the requested model name.

Use it as a context manager::

    with OpenAIServer(answers=["a", "b"], api_key="sk-test") as server:
        client_base_url = server.base_url  # "http://127.0.0.1:<port>/v1"
        ...
        server.requests  # every request received, in arrival order
        server.max_in_flight  # most chat requests handled at the same time
        server.reset()  # between tests sharing one server

Endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``, in the OpenAI response format.
Each produced choice takes the next text of ``answers`` (cycling, shared by all requests), so one
request for n=3 over answers ``[a, b, c]`` returns a, b, c. A choice is cut to ``max_tokens``
words (finish_reason "length"), otherwise finish_reason is "stop". Tokens are whitespace words.

Scripted models (any other name behaves like ``ok``):

- ``ok``: returns the ``n`` choices asked for.
- ``no-n``: rejects ``n > 1`` with a 400 ``invalid_request_error`` (param "n"), like providers
  without multi-sampling; ``n == 1`` works.
- ``fewer``: returns only ``max(1, n // 2)`` choices.
- ``flaky``: rejects ``n > 1`` like ``no-n``; of its ``n == 1`` requests every 3rd (3rd, 6th, ...)
  fails with a 500.
- ``fail``: always a 500.
- ``slow``: sleeps ``slow_seconds`` before answering like ``ok``.
- ``tool``: answers with ``content: null`` and a tool call.

When started with ``api_key``, a request whose bearer token differs gets a 401.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from json_http import JSONRequestHandler

MODELS = ("ok", "no-n", "fewer", "flaky", "fail", "slow", "tool")


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class OpenAIServer:
    """Background-thread OpenAI-compatible server; see the module docstring for the scripted models."""

    def __init__(
        self,
        answers: list[str] | None = None,
        *,
        api_key: str | None = None,
        slow_seconds: float = 3.0,
    ) -> None:
        self.answers = list(answers or ["answer"])
        self.api_key = api_key
        self.slow_seconds = slow_seconds
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._answer_cycle = itertools.cycle(self.answers)
        self._flaky_count = 0
        self._in_flight = 0
        self.max_in_flight = 0
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ending in /v1."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def chat_requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """Bodies of the chat-completion requests received, optionally for one model only."""
        with self._lock:
            return [
                r.body
                for r in self.requests
                if r.path == "/v1/chat/completions" and (model is None or r.body.get("model") == model)
            ]

    def reset(self) -> None:
        """Forget the recorded requests and ``max_in_flight``; restart the answer cycle and the ``flaky`` count."""
        with self._lock:
            self.requests.clear()
            self._answer_cycle = itertools.cycle(self.answers)
            self._flaky_count = 0
            self.max_in_flight = self._in_flight

    def start(self) -> OpenAIServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers, and close the socket."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling (called from handler threads) ---

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_answers(self, count: int) -> list[str]:
        with self._lock:
            return [next(self._answer_cycle) for _ in range(count)]

    def _flaky_fails(self) -> bool:
        with self._lock:
            self._flaky_count += 1
            return self._flaky_count % 3 == 0

    def _chat(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for one chat-completion request."""
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, _error("Incorrect API key provided.", "invalid_request_error", code="invalid_api_key")
        model = str(body.get("model", "ok"))
        n = int(body.get("n") or 1)
        if model == "fail":
            return 500, _error("The server had an error while processing your request.", "server_error")
        if model in ("no-n", "flaky") and n > 1:
            return 400, _error("n > 1 is not supported for this model.", "invalid_request_error", param="n")
        if model == "flaky" and self._flaky_fails():
            return 500, _error("The server had an error while processing your request.", "server_error")
        if model == "slow" and self._stop.wait(self.slow_seconds):
            return 503, _error("Server is shutting down.", "server_error")
        count = max(1, n // 2) if model == "fewer" else n
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
        choices = []
        completion_tokens = 0
        for index, text in enumerate(self._next_answers(count)):
            words = text.split()
            finish_reason = "stop"
            max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
            if max_tokens is not None and len(words) > int(max_tokens):
                words, finish_reason = words[: int(max_tokens)], "length"
                text = " ".join(words)
            completion_tokens += len(words)
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if model == "tool":
                message["content"] = None
                message["tool_calls"] = [
                    {
                        "id": f"call_{uuid.uuid4().hex[:8]}",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": "{}"},
                    }
                ]
                finish_reason = "tool_calls"
            choices.append({"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None})
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _error(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _make_handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONRequestHandler):
        def _headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def do_GET(self) -> None:
            server._record(RecordedRequest("GET", self.path, self._headers(), {}))
            if self.path.rstrip("/") != "/v1/models":
                self._send(404, _error(f"Unknown path {self.path}", "invalid_request_error"))
                return
            created = int(time.time())
            models = [{"id": m, "object": "model", "created": created, "owned_by": "test"} for m in MODELS]
            self._send(200, {"object": "list", "data": models})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = None
            headers = self._headers()
            server._record(RecordedRequest("POST", self.path, headers, body if isinstance(body, dict) else {}))
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, _error(f"Unknown path {self.path}", "invalid_request_error"))
            elif not isinstance(body, dict):
                self._send(400, _error("Request body is not a JSON object.", "invalid_request_error"))
            else:
                server._enter()
                try:
                    status, payload = server._chat(headers, body)
                finally:
                    server._leave()
                self._send(status, payload)

    return Handler
