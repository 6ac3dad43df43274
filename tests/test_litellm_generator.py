"""LiteLLMGenerator against a real OpenAI-compatible server on 127.0.0.1, through litellm."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import codescaler_rerank
from codescaler_rerank._async import run_sync
from codescaler_rerank.generators.base import GenerationError, Generator
from codescaler_rerank.generators.litellm_generator import LiteLLMGenerator
from openai_server import OpenAIServer

KEY = "sk-test-secret"
ANSWERS = ["alpha one", "beta two", "gamma three", "delta four"]

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="needs the litellm extra"),
    pytest.mark.filterwarnings("ignore::UserWarning"),  # litellm's import makes pydantic warn about its TypedDicts
]


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(ANSWERS, api_key=KEY, slow_seconds=5) as srv:
        yield srv


@pytest.fixture
def make(server):
    """Build a generator for a scripted model; the server starts each test afresh."""
    server.reset()

    def build(name: str, **kwargs) -> LiteLLMGenerator:
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("num_retries", 0)
        kwargs.setdefault("timeout", 10)
        return LiteLLMGenerator(f"openai/{name}", api_base=server.base_url, **kwargs)

    return build


def test_n_choices_in_one_request(make, server):
    gen = make("ok", system="You write code.")
    assert isinstance(gen, Generator)
    out = gen.generate("write hello world", 4)
    assert [c.text for c in out.completions] == ANSWERS
    assert out.failures == []
    (body,) = server.chat_requests()
    assert body["n"] == 4
    assert body["messages"] == [
        {"role": "system", "content": "You write code."},
        {"role": "user", "content": "write hello world"},
    ]
    for c in out.completions:
        assert c.finish_reason == "stop"
        assert c.prompt_tokens == 6  # words of system + user message
        assert c.completion_tokens is None  # only the total of 8 is known for 4 choices
        assert c.latency is not None and c.latency > 0
    assert out.completion_tokens == 8


def test_conversation_is_sent_as_it_is(make, server):
    conversation = [
        {"role": "user", "content": "write hello world"},
        {"role": "assistant", "content": "In which language?"},
        {"role": "user", "content": "Python"},
    ]
    out = run_sync(make("ok").achat(conversation, 2))
    assert len(out.completions) == 2
    (body,) = server.chat_requests()
    assert body["messages"] == conversation


def test_single_choice_keeps_completion_tokens(make):
    out = make("ok").generate("hi", 1)
    (c,) = out.completions
    assert c.prompt_tokens == 1
    assert c.completion_tokens == 2


def test_sampling_params_pass_through_and_override_defaults(make, server):
    gen = make("ok", temperature=0.2, top_p=0.5, seed=7)
    out = gen.generate("hi", 2, temperature=0.9, max_tokens=1, stop=["\n"], top_k=20)
    (body,) = server.chat_requests()
    assert body["temperature"] == 0.9
    assert body["top_p"] == 0.5
    assert body["seed"] == 7
    assert body["max_tokens"] == 1
    assert body["stop"] == ["\n"]
    assert body["top_k"] == 20
    assert [c.finish_reason for c in out.completions] == ["length", "length"]
    assert all(len(c.text.split()) == 1 for c in out.completions)


def test_rejected_n_falls_back_to_single_requests_and_is_remembered(make, server):
    gen = make("no-n")
    out = gen.generate("hi", 3)
    assert sorted(c.text for c in out.completions) == sorted(ANSWERS[:3])
    assert out.failures == []
    assert [b.get("n") for b in server.chat_requests()] == [3, 1, 1, 1]
    assert all(c.completion_tokens == 2 for c in out.completions)

    server.reset()
    assert len(gen.generate("hi", 2).completions) == 2
    assert [b.get("n") for b in server.chat_requests()] == [1, 1]


def test_n_unsupported_by_provider_falls_back(server):
    """litellm itself refuses `n` for some providers (UnsupportedParamsError); mistral speaks OpenAI's format."""
    server.reset()
    gen = LiteLLMGenerator("mistral/ok", api_base=server.base_url, api_key=KEY, num_retries=0)
    out = gen.generate("hi", 3)
    assert sorted(c.text for c in out.completions) == sorted(ANSWERS[:3])
    assert [b.get("n") for b in server.chat_requests()] == [None] * 3  # the n-request never left litellm


def test_max_concurrency_bounds_requests_in_flight():
    with OpenAIServer(ANSWERS, slow_seconds=0.3) as slow_server:
        gen = LiteLLMGenerator("openai/slow", api_base=slow_server.base_url, api_key="x", max_concurrency=2)

        async def many() -> list[int]:
            outs = await asyncio.gather(*(gen.agenerate("hi", 1) for _ in range(6)))
            return [len(o.completions) for o in outs]

        assert asyncio.run(many()) == [1] * 6
        assert slow_server.max_in_flight == 2


def test_fewer_choices_are_topped_up(make, server):
    out = make("fewer").generate("hi", 4)
    assert len(out.completions) == 4
    assert out.failures == []
    assert [b.get("n") for b in server.chat_requests()] == [4, 1, 1]
    assert out.completion_tokens == 8  # 2 choices' total from the n-request, plus 2 + 2 from the single ones


def test_partial_failures_are_reported(make, server):
    out = make("flaky").generate("hi", 6)
    assert len(out.completions) == 4
    assert len(out.failures) == 2
    assert sorted({f.index for f in out.failures} | set(range(6))) == list(range(6))
    assert all("InternalServerError" in f.error for f in out.failures)
    assert len(server.chat_requests()) == 7  # the rejected n-request and 6 single ones


def test_all_failing_raises(make, server):
    with pytest.raises(GenerationError, match="3 of 3 requests failed.*InternalServerError"):
        make("fail").generate("hi", 3)
    assert len(server.chat_requests()) == 4  # a 5xx on the n-request falls back to single requests


def test_content_none_becomes_empty_text(make):
    out = make("tool").generate("hi", 2)
    assert [(c.text, c.finish_reason) for c in out.completions] == [("", "tool_calls")] * 2


def test_slow_server_times_out(make, server):
    gen = make("slow", timeout=1)
    started = time.perf_counter()
    with pytest.raises(GenerationError, match="Timeout"):
        gen.generate("hi", 3)
    assert time.perf_counter() - started < 4
    assert len(server.chat_requests()) == 1  # a timeout is not retried as single requests


def test_wrong_key_raises_at_once(make, server):
    gen = make("ok", api_key="sk-wrong", num_retries=2)
    started = time.perf_counter()
    with pytest.raises(GenerationError, match="AuthenticationError"):
        gen.generate("hi", 5)
    assert time.perf_counter() - started < 3
    assert len(server.chat_requests()) == 1


def test_generate_inside_running_event_loop(make):
    gen = make("ok")

    async def caller() -> tuple[int, int]:
        sync_out = gen.generate("hi", 2)
        async_out = await gen.agenerate("hi", 3)
        return len(sync_out.completions), len(async_out.completions)

    assert asyncio.run(caller()) == (2, 3)


def test_concurrent_agenerate_calls(make, server):
    gen = make("ok", max_concurrency=2)

    async def many() -> list[int]:
        outs = await asyncio.gather(*(gen.agenerate(f"prompt {i}", 2) for i in range(5)))
        return [len(o.completions) for o in outs]

    assert asyncio.run(many()) == [2] * 5
    assert len(server.chat_requests()) == 5


def test_repr_hides_api_key(make):
    text = repr(make("ok", temperature=0.3))
    assert KEY not in text
    assert "openai/ok" in text and "temperature" in text


def test_invalid_n(make):
    with pytest.raises(ValueError):
        make("ok").generate("hi", 0)


def test_import_does_not_import_litellm():
    code = "import codescaler_rerank.generators.litellm_generator, sys; assert 'litellm' not in sys.modules"
    src = str(Path(codescaler_rerank.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)
