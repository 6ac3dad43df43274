"""Scoring jobs of the proxy under timeouts and faults (issues 10 item 7, 15 item 2), on a real server on 127.0.0.1.

The reward model here is the tiny real one behind `ScriptedRM`, which stands for a slow or broken RM by prompt:
"SLOW" makes its call take `slow_seconds`, "POISON" makes it raise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import httpx
import pytest

from codescaler_rerank import Reranker
from codescaler_rerank.generators.base import Completion, GenerationOutput
from test_server import PROMPT, pytestmark, proxy, upstream  # noqa: F401  (fixtures and skip marks)

MESSAGES = [{"role": "user", "content": PROMPT}]


class ScriptedRM:
    """The tiny RM with faults by prompt: "SLOW" sleeps `slow_seconds` first, "POISON" raises `poison`."""

    def __init__(self, rm, *, poison: type[BaseException] = ValueError, slow_seconds: float = 3.0) -> None:
        self.rm, self.poison, self.slow_seconds = rm, poison, slow_seconds
        self.name = "scripted-rm"
        self.calls: list[list[str]] = []  # the prompts of each call
        self.started = threading.Event()

    def score_pairs(self, pairs):
        prompts = [prompt for prompt, _ in pairs]
        self.calls.append(prompts)
        self.started.set()
        if any("POISON" in p for p in prompts):
            raise self.poison("poisoned input at /secret/path")
        if any("SLOW" in p for p in prompts):
            time.sleep(self.slow_seconds)
        return self.rm.score_pairs(pairs)


def chat(base: str, prompt: str = PROMPT, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{base}/chat/completions", json={"messages": [{"role": "user", "content": prompt}]},
                      timeout=timeout)


def in_background(fn, *args) -> concurrent.futures.Future:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return future


def wait_idle(base: str, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while httpx.get(base.removesuffix("/v1") + "/health").json()["in_flight"]:
        assert time.monotonic() < deadline, "requests stayed in flight"
        time.sleep(0.05)


def test_timed_out_request_stays_in_flight_until_its_scoring_stops(proxy, tiny_rm):
    """Backpressure counts scoring work, not coroutines: after a 504 the RM call it started still holds a slot."""
    rm = ScriptedRM(tiny_rm)
    base = proxy(reward_model=rm, max_pending=1, request_timeout=1.0)
    slow = in_background(chat, base, f"{PROMPT} SLOW")
    assert rm.started.wait(10)
    assert slow.result().status_code == 504
    busy = chat(base)  # the slow RM call (3 s) is still running for the timed-out request
    assert busy.status_code == 429 and "server busy" in busy.json()["error"]["message"]
    wait_idle(base)
    assert chat(base).status_code == 200


def test_jobs_of_timed_out_requests_are_skipped(proxy, tiny_rm):
    rm = ScriptedRM(tiny_rm)
    base = proxy(reward_model=rm, request_timeout=1.0)
    slow = in_background(chat, base, f"{PROMPT} SLOW")
    assert rm.started.wait(10)
    queued = in_background(chat, base, f"{PROMPT} QUEUED")  # waits behind the slow call, then times out
    assert slow.result().status_code == 504 and queued.result().status_code == 504
    wait_idle(base)
    time.sleep(rm.slow_seconds)  # the worker is past the slow call and has taken the queued job (or not)
    assert rm.calls == [[f"{PROMPT} SLOW"] * len(rm.calls[0])]  # the queued job never reached the RM


def test_one_failing_request_does_not_fail_its_batch(proxy, tiny_rm):
    rm = ScriptedRM(tiny_rm)
    base = proxy(reward_model=rm, batch_window=3.0, max_batch=3)
    prompts = [f"{PROMPT} A", f"{PROMPT} POISON", f"{PROMPT} B"]
    answers = [in_background(chat, base, p) for p in prompts]
    good, bad, other = (a.result() for a in answers)
    assert good.status_code == 200 and other.status_code == 200
    assert bad.status_code == 502 and bad.json()["error"]["type"] == "reward_model_error"
    message = bad.json()["error"]["message"]
    assert bad.headers["x-request-id"] in message and "secret" not in message and "ValueError" not in message
    assert len(rm.calls[0]) > len(rm.calls[1])  # one bulk call for all three, then one by one


def test_scoring_worker_is_restarted_when_it_dies(proxy, tiny_rm):
    """An RM client that leaks asyncio.CancelledError (a BaseException) kills the worker task; it comes back."""
    rm = ScriptedRM(tiny_rm, poison=asyncio.CancelledError)
    base = proxy(reward_model=rm, request_timeout=5.0)
    failed = chat(base, f"{PROMPT} POISON")
    assert failed.status_code == 502 and failed.json()["error"]["type"] == "reward_model_error"
    assert chat(base).status_code == 200
    assert httpx.get(base.removesuffix("/v1") + "/health").json()["scorer_restarts"] == 1


def test_ranking_checks_the_deadline_between_steps(tiny_rm):
    rm = ScriptedRM(tiny_rm)
    output = GenerationOutput(completions=[Completion(text=f"```python\nx = {i}\n```") for i in range(5)])
    checks = []

    def checkpoint() -> None:
        checks.append(len(checks))
        if len(checks) == 3:
            raise TimeoutError("deadline")

    with pytest.raises(TimeoutError):
        Reranker(None, rm).rank_output(PROMPT, output, checkpoint=checkpoint)
    assert len(checks) == 3 and rm.calls == []  # two extractions, then stopped: no scoring
    Reranker(None, rm).rank_output(PROMPT, output, checkpoint=lambda: None)
    assert len(rm.calls) == 1
