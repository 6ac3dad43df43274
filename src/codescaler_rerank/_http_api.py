"""Request plumbing of the proxy: OpenAI-style errors, request ids, auth, bounded body reading and JSON parsing.

Client mistakes are 4xx with a reason; server-side failures are logged with a request id and answered with a
generic message naming that id, never with the exception's text.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from typing import Any

from ._deps import require
from .generators.base import GenerationError

fastapi = require("fastapi", "server")
from fastapi import Request  # noqa: E402
from starlette.requests import ClientDisconnect  # noqa: E402

log = logging.getLogger("codescaler_rerank.server")

MAX_JSON_DEPTH = 64  # nesting of request bodies (OpenAI bodies need < 10)
MAX_REASON_CHARS = 500  # upstream error text passed on to the client


class ProxyError(Exception):
    """An error answered as an OpenAI-style JSON error with this HTTP status."""

    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": None}}


def _short(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


def upstream_error(exc: GenerationError) -> ProxyError:
    """Map a generation failure to the proxy's answer: by the upstream status code when the cause has one."""
    code = getattr(exc.__cause__, "status_code", None)
    reason = _short(str(exc))
    if code in (408, 504):
        return ProxyError(504, f"upstream timed out: {reason}", "upstream_timeout")
    if code == 429:
        return ProxyError(429, f"upstream rate limit: {reason}", "rate_limit_error")
    if code in (400, 413, 422):
        return ProxyError(400, f"upstream rejected the request: {reason}")
    return ProxyError(502, f"upstream failed: {reason}", "upstream_error")


def internal_error(exc: BaseException, request_id: str, what: str = "internal error") -> ProxyError:
    """Log `exc` with its traceback under `request_id`; the 500 the client gets names only the id."""
    log.error("request %s: %s", request_id, what, exc_info=exc)
    return ProxyError(500, f"{what} (request id {request_id}; details are in the server log)", "server_error")


def request_id(request: Request) -> str:
    """The id `RequestIdMiddleware` gave this request (a fresh one outside it)."""
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex[:16]


class RequestIdMiddleware:
    """Pure ASGI middleware: a fresh request id per HTTP request, in `request.state` and the `x-request-id` header."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def bearer_matches(header: str | None, api_key: str) -> bool:
    """Whether an Authorization header is `Bearer <api_key>`, compared as bytes in constant time.

    Header values arrive latin-1 decoded; any byte is fine (a non-ASCII header is a wrong key, not an error).
    """
    try:
        raw = (header or "").encode("latin-1")
    except UnicodeEncodeError:
        return False
    return secrets.compare_digest(raw, f"Bearer {api_key}".encode())


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read up to `limit` bytes (413 beyond; 400 if the client hung up or sent a bad length)."""
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError as exc:
        raise ProxyError(400, "invalid Content-Length header") from exc
    if declared > limit:
        raise ProxyError(413, f"request body over {limit} bytes")
    raw = bytearray()
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise ProxyError(413, f"request body over {limit} bytes")
    except ClientDisconnect as exc:
        raise ProxyError(400, "the client disconnected before the request body was complete") from exc
    return bytes(raw)


def parse_json(raw: bytes) -> Any:
    """The body as JSON: 400 if it is not JSON or nests deeper than `MAX_JSON_DEPTH`."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise ProxyError(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers over the digit limit
        raise ProxyError(400, f"request body is not valid JSON: {_short(str(exc))}") from exc
    if _nests_deeper(value, MAX_JSON_DEPTH):
        raise ProxyError(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def _nests_deeper(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False
