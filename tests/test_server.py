"""The best-of-N proxy, served by uvicorn on 127.0.0.1, called with the official openai client, over a real upstream."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import httpx
import pytest

from codescaler_rerank import Reranker
from codescaler_rerank.generators.litellm_generator import LiteLLMGenerator
from codescaler_rerank.server import ServerConfig, create_app, running_server, serve
from openai_server import OpenAIServer

pytestmark = [
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "prometheus_client", "litellm")),
        reason="needs the server and litellm extras",
    ),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

openai = pytest.importorskip("openai")

UPSTREAM_KEY = "sk-upstream"
PROXY_KEY = "sk-proxy"
ANSWERS = [
    "```python\ndef add(a, b):\n    return a + b\n```",
    "Just add them.",
    "```python\ndef add(a, b):\n    return sum([a, b])\n```",
    "```python\ndef add(a, b)\n    return a - b\n```",
]
PROMPT = "Write a Python function add(a, b)."


@pytest.fixture(scope="module")
def upstream():
    with OpenAIServer(ANSWERS, api_key=UPSTREAM_KEY, slow_seconds=1.5) as srv:
        yield srv


@pytest.fixture
def proxy(upstream, tiny_rm):
    """Start a proxy over an upstream model of the scripted server.

    proxy(model, timeout=..., api_base=..., reward_model=..., **ServerConfig fields) -> the /v1 base URL.
    """
    upstream.reset()
    with contextlib.ExitStack() as stack:

        def start(
            model: str = "ok", *, timeout: float = 10, api_base: str | None = None, reward_model=None, **config
        ) -> str:
            generator = LiteLLMGenerator(
                f"openai/{model}", api_base=api_base or upstream.base_url, api_key=UPSTREAM_KEY,
                num_retries=0, timeout=timeout,
            )
            config.setdefault("n", 4)
            app = create_app(generator, reward_model or tiny_rm, ServerConfig(**config))
            return stack.enter_context(running_server(app))

        yield start


def client(base_url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)


def test_best_of_n_answer_with_ranking(proxy, upstream, tiny_rm):
    base = proxy()
    messages = [
        {"role": "system", "content": "You write Python."},
        {"role": "user", "content": "Write a function."},
        {"role": "assistant", "content": "Which one?"},
        {"role": "user", "content": PROMPT},
    ]
    completion = client(base).chat.completions.create(model="anything", messages=messages, temperature=0.7)
    ranking = completion.model_extra["codescaler"]
    (body,) = upstream.chat_requests()
    assert body["messages"] == messages and body["n"] == 4 and body["temperature"] == 0.7
    assert completion.object == "chat.completion" and completion.model == "openai/ok"
    assert len(completion.choices) == 1 and completion.choices[0].finish_reason == "stop"
    assert ranking["n"] == 4 and [c["rank"] for c in ranking["candidates"]] == [1, 2, 3, 4]
    assert completion.choices[0].message.content == ranking["candidates"][0]["text"]
    assert set(ranking["timings"]) == {"generate", "extract", "score", "select", "total"}
    assert ranking["reward_model"] == tiny_rm.name
    assert (ranking["selector"], ranking["confidence"], ranking["abstained"], ranking["sandbox_runs"]) == (
        "rm", None, False, 0)
    assert completion.usage.prompt_tokens == sum(len(m["content"].split()) for m in messages)
    # the same scoring path as rerank(): the RM sees the last user message
    expected = Reranker(None, tiny_rm).select(PROMPT, ANSWERS)
    assert [(c["index"], c["valid"], c["reason"]) for c in ranking["candidates"]] == [
        (c.index, c.valid, c.reason) for c in expected.candidates
    ]
    scores = [c["score"] for c in ranking["candidates"]]
    assert scores == [None if c.score is None else pytest.approx(c.score, abs=1e-4) for c in expected.candidates]


def test_the_proxy_warms_its_reward_model_up_before_serving(upstream, tiny_rm):
    from codescaler_rerank import RewardModel

    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, attention="sdpa")
    generator = LiteLLMGenerator("openai/ok", api_base=upstream.base_url, api_key=UPSTREAM_KEY, num_retries=0)
    assert rm.warmed_up is None
    with running_server(create_app(generator, rm, ServerConfig(n=2))):
        assert rm.warmed_up is not None and rm.warmed_up.path == "packed-sdpa"


def test_selector_runs_the_public_tests_of_the_request(proxy, upstream):
    """rm+tests in the proxy: the request's `tests` run in the sandbox on the RM's best until one passes."""
    api = client(proxy(selector="rm+tests"))
    completion = api.chat.completions.create(
        model="m", messages=[{"role": "user", "content": PROMPT}], extra_body={"tests": "assert add(2, 3) == 5\n"}
    )
    ranking = completion.model_extra["codescaler"]
    assert ranking["selector"] == "rm+tests" and ranking["candidates"][0]["tests_passed"] is True
    assert completion.choices[0].message.content in (ANSWERS[0], ANSWERS[2])
    assert ranking["sandbox_runs"] == 1 and ranking["timings"]["select"] > 0  # both valid answers pass
    with pytest.raises(openai.BadRequestError, match="'tests' must be"):
        api.chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}],
                                    extra_body={"tests": "assert add(2, 3) =="})
    body = upstream.chat_requests()[-1]
    assert "tests" not in body  # the tests stay in the proxy


def test_n_per_request_and_validation(proxy, upstream):
    api = client(proxy(max_n=8))
    completion = api.chat.completions.create(
        model="m", messages=[{"role": "user", "content": PROMPT}], extra_body={"n": 3}
    )
    assert len(completion.model_extra["codescaler"]["candidates"]) == 3
    assert upstream.chat_requests()[-1]["n"] == 3
    with pytest.raises(openai.BadRequestError, match="'n' must be"):
        api.chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}], extra_body={"n": 9})
    with pytest.raises(openai.BadRequestError, match="user message"):
        api.chat.completions.create(model="m", messages=[{"role": "system", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="tools"):
        api.chat.completions.create(
            model="m", messages=[{"role": "user", "content": PROMPT}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        )


def test_streaming_sends_the_selected_answer(proxy):
    api = client(proxy())
    chunks = list(api.chat.completions.create(
        model="m", messages=[{"role": "user", "content": PROMPT}], stream=True,
        stream_options={"include_usage": True},
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (last,) = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    ranking = last.model_extra["codescaler"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text == ranking["candidates"][0]["text"] and len(chunks) > 3
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens > 0


def test_concurrent_requests_share_one_scoring_batch(proxy):
    base = proxy(batch_window=5.0, max_batch=4)

    async def many() -> list:
        api = openai.AsyncOpenAI(base_url=base, api_key="unused", max_retries=0)
        prompts = [f"{PROMPT} Variant {i}." for i in range(4)]
        return await asyncio.gather(*(
            api.chat.completions.create(model="m", messages=[{"role": "user", "content": p}]) for p in prompts
        ))

    started = time.monotonic()
    completions = asyncio.run(many())
    assert time.monotonic() - started < 5  # the batch closed at 4 requests, not at the window's end
    assert all(len(c.model_extra["codescaler"]["candidates"]) == 4 for c in completions)
    metrics = httpx.get(base.removesuffix("/v1") + "/metrics").text
    assert "codescaler_score_batch_requests_count 1.0" in metrics
    assert "codescaler_score_batch_requests_sum 4.0" in metrics
    assert 'codescaler_requests_total{status="200"} 4.0' in metrics
    assert 'codescaler_candidates_total{reason="no_code_block",valid="false"} 4.0' in metrics
    assert 'codescaler_stage_seconds_count{stage="score"} 4.0' in metrics
    assert "codescaler_in_flight 0.0" in metrics


def test_auth(proxy):
    base = proxy(api_key=PROXY_KEY)
    messages = [{"role": "user", "content": PROMPT}]
    with pytest.raises(openai.AuthenticationError):
        client(base, "wrong").chat.completions.create(model="m", messages=messages)
    anonymous = httpx.post(f"{base}/chat/completions", json={"messages": messages})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        client(base, "wrong").models.list()
    assert client(base, PROXY_KEY).chat.completions.create(model="m", messages=messages).choices
    assert [m.id for m in client(base, PROXY_KEY).models.list()] == ["openai/ok"]
    assert httpx.get(base.removesuffix("/v1") + "/health").json()["status"] == "ok"


def test_refuses_to_bind_beyond_loopback_without_key(tiny_rm):
    with pytest.raises(ValueError, match="needs an API key"):
        serve(LiteLLMGenerator("openai/ok"), tiny_rm, host="0.0.0.0")


def test_body_size_limit(proxy):
    with pytest.raises(openai.APIStatusError) as info:
        client(proxy(max_body_bytes=2000)).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x" * 5000}]
        )
    assert info.value.status_code == 413


def test_backpressure_429_when_full(proxy):
    base = proxy("slow", max_pending=1)
    messages = [{"role": "user", "content": PROMPT}]
    first = threading.Thread(target=lambda: client(base).chat.completions.create(model="m", messages=messages))
    first.start()
    health = base.removesuffix("/v1") + "/health"
    while httpx.get(health).json()["in_flight"] == 0:
        time.sleep(0.02)
    with pytest.raises(openai.RateLimitError, match="server busy") as info:
        client(base).chat.completions.create(model="m", messages=messages)
    assert info.value.response.headers["retry-after"] == "1"
    first.join()


@pytest.mark.parametrize(
    ("model", "settings", "status", "message"),
    [
        ("fail", {}, 502, "upstream failed: no completion"),
        ("slow", {"timeout": 0.3}, 504, "upstream timed out"),
        ("slow", {"request_timeout": 0.3}, 504, "longer than 0.3s"),
        ("ok", {"api_base": "http://127.0.0.1:9/v1"}, 502, "upstream failed"),
    ],
    ids=["upstream-500", "upstream-timeout", "request-timeout", "connection-refused"],
)
def test_upstream_failures(proxy, model, settings, status, message):
    with pytest.raises(openai.APIStatusError, match=message) as info:
        client(proxy(model, **settings)).chat.completions.create(
            model="m", messages=[{"role": "user", "content": PROMPT}]
        )
    assert info.value.status_code == status


def test_cli_serve(upstream, tiny_qwen3_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "CODESCALER_GENERATOR_API_KEY": UPSTREAM_KEY, "CODESCALER_API_KEY": PROXY_KEY}
    cmd = [
        sys.executable, "-m", "codescaler_rerank", "serve", "--generator", "litellm:openai/ok",
        "--api-base", upstream.base_url, "--rm", str(tiny_qwen3_path), "--n", "2", "--port", str(port),
        "--selector", "rm+votes",
    ]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the proxy did not come up"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            time.sleep(0.2)
        completion = client(f"{base}/v1", PROXY_KEY).chat.completions.create(
            model="m", messages=[{"role": "user", "content": PROMPT}]
        )
        assert completion.model_extra["codescaler"]["n"] == 2
        assert completion.model_extra["codescaler"]["selector"] == "rm+votes"
    finally:
        process.terminate()
        process.wait(timeout=30)
