"""The proxy against hostile and careless clients (issues 10 item 7, 15 item 2), on a real server on 127.0.0.1.

Connection attacks go over raw sockets: slow headers or body (slowloris), idle connections, an idle flood with
the open-files limit of a default Linux process. Client mistakes must be 4xx, server failures a generic 500/502
naming a request id, and what auth protects includes the docs, the RM path in /health and (optionally) /metrics.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import select
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import pytest

from codescaler_rerank.server import ServerConfig, create_app, running_server
from test_server import ANSWERS, PROMPT, PROXY_KEY, UPSTREAM_KEY, pytestmark, proxy, upstream  # noqa: F401

MESSAGES = [{"role": "user", "content": PROMPT}]


def post(base: str, body: bytes | dict, headers: dict | None = None, path: str = "/chat/completions") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json", **(headers or {})}
    return httpx.post(f"{base}{path}", content=content, headers=headers, timeout=30)


def connect(base: str) -> socket.socket:
    url = urlsplit(base)
    return socket.create_connection((url.hostname, url.port), timeout=5)


def trickle(sock: socket.socket, head: bytes, *, every: float = 0.2, limit: float = 6.0) -> tuple[float | None, bytes]:
    """Send `head`, then one more byte every `every` s; (seconds until the server closed or None, what it sent)."""
    start, received = time.monotonic(), b""
    sock.sendall(head)
    while time.monotonic() - start < limit:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return time.monotonic() - start, received
            received += chunk
            continue
        try:
            sock.send(b"x")
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start, received
    return None, received


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


# --- connections -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kept_alive", [False, True], ids=["first-request", "next-request"])
def test_slow_headers_are_cut_off(proxy, kept_alive):
    base = proxy(header_timeout=1.0)
    first = b"GET /health HTTP/1.1\r\nHost: proxy\r\n\r\n" if kept_alive else b""
    with connect(base) as sock:
        closed, raw = trickle(sock, first + b"GET /health HTTP/1.1\r\nHost: proxy\r\nX-Slow: ")
    assert closed is not None and closed < 4, "a client trickling its headers held the connection"
    statuses = [status_of(b"HTTP/1.1 " + part) for part in raw.split(b"HTTP/1.1 ")[1:]]
    assert statuses == ([200, 408] if kept_alive else [408])


def test_slow_body_is_cut_off(proxy):
    base = proxy(body_timeout=1.0)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
    with connect(base) as sock:
        closed, raw = trickle(sock, head + b"Content-Length: 100000\r\n\r\n{")
    assert closed is not None and closed < 4, "a client trickling its body held the connection"
    assert status_of(raw) == 408


def test_unauthenticated_slow_body_is_cut_off_after_the_401(proxy):
    base = proxy(api_key=PROXY_KEY, body_timeout=1.0)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Length: 100000\r\n\r\n{"
    with connect(base) as sock:
        closed, raw = trickle(sock, head)
    assert status_of(raw) == 401
    assert closed is not None and closed < 4, "the rest of a rejected body kept the connection open"


def test_idle_connections_are_closed(proxy):
    base = proxy(header_timeout=1.0)
    with connect(base) as sock:
        sock.settimeout(5)
        start = time.monotonic()
        assert sock.recv(1) == b""  # closed without a word
        assert time.monotonic() - start < 4


def test_idle_flood_does_not_lock_clients_out(proxy):
    base = proxy(limit_concurrency=20)
    root = base.removesuffix("/v1")
    idle = [connect(base) for _ in range(60)]
    try:
        assert httpx.get(f"{root}/health", timeout=5).status_code == 200
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""  # the longest idle made room
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.slow
def test_1100_idle_connections_with_default_fd_limit(upstream, tiny_qwen3_path):
    """`serve` in a process limited to 1024 open files (a common default) stays reachable under 1,100 idle sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        if hard != resource.RLIM_INFINITY and hard < 1300:
            pytest.skip("this test process cannot open 1,100 client sockets")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1300, hard))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cmd = [
        sys.executable, "-m", "codescaler_rerank", "serve", "--generator", "litellm:openai/ok",
        "--api-base", upstream.base_url, "--rm", str(tiny_qwen3_path), "--n", "2", "--port", str(port),
    ]
    env = {**os.environ, "CODESCALER_GENERATOR_API_KEY": UPSTREAM_KEY}
    process = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)),
    )
    root, idle = f"http://127.0.0.1:{port}", []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "the proxy did not come up"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{root}/health").status_code == 200:
                    break
            time.sleep(0.2)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(1100)]
        assert httpx.get(f"{root}/health", timeout=10).status_code == 200
        answer = httpx.post(f"{root}/v1/chat/completions", json={"messages": MESSAGES}, timeout=60)
        assert answer.status_code == 200
    finally:
        for s in idle:
            s.close()
        process.terminate()
        process.wait(timeout=30)


# --- client errors are 4xx ---------------------------------------------------------------------------------------


def _nested(depth: int) -> dict:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return {"messages": [{"role": "user", "content": PROMPT, "metadata": value}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests deeper"),
        (_nested(100), "nests deeper"),
        ({"messages": MESSAGES, "stream": True, "stream_options": 1}, "'stream_options' must be an object"),
        ({"messages": MESSAGES, "stream": "yes"}, "'stream' must be a boolean"),
        ({"messages": MESSAGES, "n": 0}, "'n' must be"),
        ({"messages": MESSAGES, "n": False}, "'n' must be"),
        ({"messages": MESSAGES, "n": []}, "'n' must be"),
        (b'{"messages": [{"role": "user", "content": "x"}], "n": ' + b"9" * 5000 + b"}", "not valid JSON"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "needs a string 'text'"),
        ({"messages": [{"role": "user", "content": 5}]}, "'content' must be"),
        ({"messages": [{"role": None, "content": PROMPT}]}, "'role' must be"),
    ],
    ids=[
        "deep-array", "nested-100", "stream-options-int", "stream-str", "n-0", "n-false", "n-empty-list", "n-digits",
        "text-part-int", "content-int", "role-null",
    ],
)
def test_client_errors_are_400(proxy, body, message):
    answer = post(proxy(), body)
    assert answer.status_code == 400 and message in answer.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/chat/completions", "/models", "/get_reward"])
@pytest.mark.parametrize("scheme", ["Bearer", "Basic"])
def test_non_ascii_authorization_is_401(proxy, path, scheme):
    base = proxy(api_key=PROXY_KEY)
    headers = {"authorization": f"{scheme} ключ-{PROXY_KEY}".encode()}
    if path == "/get_reward":
        answer = post(base.removesuffix("/v1"), {"query": [], "prompts": [], "labels": []}, headers, path)
    elif path == "/models":
        answer = httpx.get(f"{base}{path}", headers=headers)
    else:
        answer = post(base, {"messages": MESSAGES}, headers)
    assert answer.status_code == 401


def test_basic_auth_still_works_on_get_reward(proxy):
    root = proxy(api_key=PROXY_KEY).removesuffix("/v1")
    token = base64.b64encode(f"rl:{PROXY_KEY}".encode()).decode()
    answer = post(root, {"query": [], "prompts": [], "labels": []}, {"authorization": f"Basic {token}"}, "/get_reward")
    assert answer.status_code == 200


# --- server failures: a request id, not the exception -----------------------------------------------------------


class BrokenGenerator:
    """A generator whose client library fails with an internal detail in its message."""

    model = "broken"

    async def achat(self, messages, n, **sampling):
        raise RuntimeError("connection pool state at /srv/secret/config.yaml")

    async def agenerate(self, prompt, n, **sampling):
        raise AssertionError("not used: achat exists")


def test_internal_errors_name_a_request_id_not_the_exception(tiny_rm, caplog):
    with running_server(create_app(BrokenGenerator(), tiny_rm, ServerConfig(n=2))) as base:
        answer = post(base, {"messages": MESSAGES})
    error = answer.json()["error"]
    assert answer.status_code == 500 and error["type"] == "server_error"
    assert "secret" not in error["message"] and "RuntimeError" not in error["message"]
    rid = answer.headers["x-request-id"]
    assert rid in error["message"]
    assert any(rid in r.getMessage() and r.exc_info and "secret" in str(r.exc_info[1]) for r in caplog.records)


# --- upstream answer caps ----------------------------------------------------------------------------------------


def test_answers_over_the_caps_are_dropped_as_failures(proxy):
    shortest = min(len(a) for a in ANSWERS)
    answer = post(proxy(max_answer_chars=shortest), {"messages": MESSAGES})
    ranking = answer.json()["codescaler"]
    assert answer.status_code == 200 and [len(c["text"]) for c in ranking["candidates"]] == [shortest]
    assert len(ranking["failures"]) == 3 and "over the" in ranking["failures"][0]["error"]
    two = len(ANSWERS[0]) + len(ANSWERS[1])
    ranking = post(proxy(max_total_answer_chars=two), {"messages": MESSAGES}).json()["codescaler"]
    assert sorted(c["index"] for c in ranking["candidates"]) == [0, 1]
    assert [f["index"] for f in ranking["failures"]] == [2, 3] and "in all" in ranking["failures"][0]["error"]


def test_no_answer_left_is_502(proxy):
    answer = post(proxy(max_answer_chars=5), {"messages": MESSAGES})
    error = answer.json()["error"]
    assert answer.status_code == 502 and error["type"] == "upstream_error"
    assert "no completion to rank" in error["message"] and "over the 5 limit" in error["message"]


# --- what auth protects ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_docs_follow_the_auth_setting(proxy, path):
    root = proxy(api_key=PROXY_KEY).removesuffix("/v1")
    assert httpx.get(f"{root}{path}").status_code == 401
    assert httpx.get(f"{root}{path}", headers={"authorization": f"Bearer {PROXY_KEY}"}).status_code == 200


def test_docs_are_open_without_a_key(proxy):
    root = proxy().removesuffix("/v1")
    assert httpx.get(f"{root}/openapi.json").status_code == 200


def test_health_shows_the_reward_model_only_with_the_key(proxy, tiny_rm):
    root = proxy(api_key=PROXY_KEY).removesuffix("/v1")
    anonymous = httpx.get(f"{root}/health").json()
    assert anonymous["status"] == "ok" and "reward_model" not in anonymous
    known = httpx.get(f"{root}/health", headers={"authorization": f"Bearer {PROXY_KEY}"}).json()
    assert known["reward_model"] == tiny_rm.name


def test_metrics_auth_option(proxy):
    root = proxy(api_key=PROXY_KEY, metrics_auth=True).removesuffix("/v1")
    assert httpx.get(f"{root}/metrics").status_code == 401
    metrics = httpx.get(f"{root}/metrics", headers={"authorization": f"Bearer {PROXY_KEY}"})
    assert metrics.status_code == 200 and "codescaler_in_flight" in metrics.text
    with pytest.raises(ValueError, match="metrics_auth needs an api_key"):
        create_app(BrokenGenerator(), "unused", ServerConfig(metrics_auth=True))
