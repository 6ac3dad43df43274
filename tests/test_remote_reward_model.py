"""RemoteRewardModel's HTTP behaviour against a real HTTP server on 127.0.0.1 that answers like vLLM's pooling server.

Parity with real vLLM is tested in test_vllm.py; here: retries, backoff, timeouts, concurrency, endpoints, errors.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from json_http import JSONRequestHandler

pytest.importorskip("transformers", reason="RemoteRewardModel loads the RM tokenizer with transformers (hf extra)")

from codescaler_rerank.formatting import encode_rm_inputs  # noqa: E402
from codescaler_rerank.remote_reward_model import RemoteRewardModel, RemoteRewardModelError  # noqa: E402
from codescaler_rerank.reward_model import RewardModelError  # noqa: E402
from codescaler_rerank.specs import load_reward_model  # noqa: E402


def fake_logit(ids: list[int]) -> float:
    """The score the test server gives a token-id input."""
    return len(ids) / 10 + ids[-1] / 1000


class PoolingServer:
    """vLLM-style `/v1/models`, `/classify` and `/pooling` on 127.0.0.1, with scripted failures.

    `fail_first`: that many POSTs answer `fail_status` before the server works; `delay`: seconds per POST;
    `classes`: values per input; `endpoints`: which POST paths exist (others 404, as on a generator server);
    `die_after`: after that many POSTs the server goes down as a crashed one would (see `stop`);
    `max_input_tokens`: longer inputs get HTTP 400 (by default `max_model_len`, what `/v1/models` advertises).
    """

    def __init__(self, root: str, *, models: tuple[str, ...] = ("rm",), max_model_len: int = 4096) -> None:
        self.root = root
        self.models = models
        self.max_model_len = max_model_len
        self.fail_first = 0
        self.fail_status = 503
        self.delay = 0.0
        self.classes = 1
        self.endpoints = {"/classify", "/pooling"}
        self.die_after: int | None = None
        self.max_input_tokens = max_model_len
        self.dead = False
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> PoolingServer:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def stop(self) -> None:
        """Go down mid-run: refuse new connections and drop open ones without answering."""
        self.dead = True
        threading.Thread(target=self.__exit__, daemon=True).start()

    def posts(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for p, body in self.bodies if p == path]

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self.dead:
                raise ConnectionAbortedError("the server is down")
            self.bodies.append((path, body))
            if len(self.bodies) == self.die_after:
                self.stop()
                raise ConnectionAbortedError("the server went down")
            failing = len(self.bodies) <= self.fail_first
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            time.sleep(self.delay)
            if path not in self.endpoints:
                return 404, {"detail": "Not Found"}
            if failing:
                return self.fail_status, {"error": {"message": "engine overloaded", "type": "x", "code": 503}}
            if any(len(ids) > self.max_input_tokens for ids in body["input"]):
                return 400, {"error": {"message": "input too long", "type": "BadRequestError", "code": 400}}
            data = []
            for i, ids in enumerate(body["input"]):
                values = [fake_logit(ids) + k for k in range(self.classes)]
                key = "probs" if path == "/classify" else "data"
                data.append({"index": i, key: values})
            return 200, {"object": "list", "model": body["model"], "data": data[::-1]}  # order by index, not position
        finally:
            with self._lock:
                self._in_flight -= 1


def _handler(server: PoolingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONRequestHandler):

        def do_GET(self) -> None:
            if self.path != "/v1/models":
                self._send(404, {"detail": "Not Found"})
                return
            cards = [{"id": m, "root": server.root, "max_model_len": server.max_model_len} for m in server.models]
            self._send(200, {"object": "list", "data": cards})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            try:
                self._send(*server.answer(self.path, body))
            except ConnectionAbortedError:  # crashed: close the connection without a response
                self.close_connection = True

    return Handler


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    from codescaler_rerank.testing import build_tiny_decoder_tokenizer

    path = tmp_path_factory.mktemp("rm-tokenizer")
    build_tiny_decoder_tokenizer(path)
    return str(path)


@pytest.fixture
def server(tokenizer_path):
    with PoolingServer(tokenizer_path) as s:
        yield s


PAIRS = [(f"Write function number {i}.", f"def f{i}(x):\n    return x + {i}\n" * (i % 3 + 1)) for i in range(10)]


def expected(model: RemoteRewardModel, pairs=PAIRS) -> list[float]:
    return [fake_logit(e.input_ids) for e in encode_rm_inputs(model.tokenizer, pairs, model.max_length)]


def test_scores_token_ids_in_order_across_concurrent_batches(server):
    rm = RemoteRewardModel(server.url, batch_size=3)
    scored = rm.score_pairs(PAIRS)
    assert [s.score for s in scored] == pytest.approx(expected(rm))
    assert rm.endpoint == "/classify" and rm.model == "rm" and rm.name == f"{server.url} (rm)"
    bodies = server.posts("/classify")[1:]  # after the construction probe
    assert sorted(len(b["input"]) for b in bodies) == [1, 3, 3, 3]  # concurrent: any arrival order
    encoded = encode_rm_inputs(rm.tokenizer, PAIRS, rm.max_length)
    assert sorted(ids for b in bodies for ids in b["input"]) == sorted(e.input_ids for e in encoded)
    assert all(b["use_activation"] is False and b["model"] == "rm" for b in bodies)
    assert [s.n_tokens for s in scored] == [len(e.input_ids) for e in encoded]
    assert rm.score_pairs([]) == []


def test_max_length_is_capped_by_the_served_max_model_len(tokenizer_path):
    with PoolingServer(tokenizer_path, max_model_len=12) as server:
        rm = RemoteRewardModel(server.url + "/v1/", max_length=4096)
        assert rm.max_length == 12
        scored = rm.score_pairs(PAIRS[:2])
    assert all(s.truncated and s.n_tokens == 12 for s in scored)


def test_retries_5xx_with_exponential_backoff(server):
    rm = RemoteRewardModel(server.url, max_retries=3, backoff=0.1)
    server.bodies.clear()
    server.fail_first = 2
    started = time.perf_counter()
    scored = rm.score_pairs(PAIRS[:2])
    elapsed = time.perf_counter() - started
    assert [s.score for s in scored] == pytest.approx(expected(rm, PAIRS[:2]))
    assert len(server.posts("/classify")) == 3
    assert elapsed >= 0.1 + 0.2


def test_gives_up_after_max_retries_with_the_server_message(server):
    rm = RemoteRewardModel(server.url, max_retries=2, backoff=0.01)
    server.bodies.clear()
    server.fail_first = 100
    with pytest.raises(RemoteRewardModelError, match=r"after 3 attempts.*HTTP 503: engine overloaded"):
        rm.score_pairs(PAIRS[:1])
    assert len(server.posts("/classify")) == 3


def test_client_errors_are_not_retried(tokenizer_path):
    with PoolingServer(tokenizer_path, max_model_len=12) as server:
        rm = RemoteRewardModel(server.url, max_length=4096)
        rm.max_length = 4096  # longer than the server accepts
        server.bodies.clear()
        with pytest.raises(RemoteRewardModelError, match="HTTP 400: input too long"):
            rm.score_pairs(PAIRS[:1])
        assert len(server.posts("/classify")) == 1


def test_timeout_is_retried_then_raised(server):
    rm = RemoteRewardModel(server.url, timeout=0.2, max_retries=1, backoff=0.01)
    server.delay = 1.0
    started = time.perf_counter()
    with pytest.raises(RemoteRewardModelError, match="after 2 attempts.*ReadTimeout"):
        rm.score_pairs(PAIRS[:1])
    assert time.perf_counter() - started < 1.5


def test_connection_errors_are_retried_then_raised(tokenizer_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(RemoteRewardModelError, match="after 2 attempts.*ConnectError"):
        RemoteRewardModel(f"http://127.0.0.1:{port}", tokenizer=tokenizer_path, max_retries=1, backoff=0.01)


def test_concurrency_is_bounded(server):
    rm = RemoteRewardModel(server.url, batch_size=1, max_concurrency=2)
    server.delay = 0.1
    server.max_in_flight = 0
    rm.score_pairs(PAIRS[:8])
    assert server.max_in_flight == 2


def test_several_score_calls_in_one_event_loop_share_the_limit(server):
    rm = RemoteRewardModel(server.url, batch_size=1, max_concurrency=3)
    server.delay = 0.1
    server.max_in_flight = 0

    async def main():
        return await asyncio.gather(rm.ascore_pairs(PAIRS[:5]), rm.ascore_pairs(PAIRS[5:]))

    first, second = asyncio.run(main())
    assert [s.score for s in first + second] == pytest.approx(expected(rm))
    assert server.max_in_flight == 3


def test_sync_scoring_works_inside_a_running_event_loop(server):
    rm = RemoteRewardModel(server.url)

    async def main():
        return rm.score(PAIRS[0][0], [PAIRS[0][1]])

    assert asyncio.run(main()) == pytest.approx(expected(rm, PAIRS[:1]))


def test_falls_back_to_the_pooling_endpoint(server):
    server.endpoints = {"/pooling"}
    rm = RemoteRewardModel(server.url)
    assert rm.endpoint == "/pooling"
    assert [s.score for s in rm.score_pairs(PAIRS)] == pytest.approx(expected(rm))
    assert all(b["task"] == "classify" and b["use_activation"] is False for b in server.posts("/pooling"))


def test_a_generator_server_gets_a_clear_error(server):
    server.endpoints = set()
    with pytest.raises(RewardModelError, match=r"not a pooling model.*--runner pooling"):
        RemoteRewardModel(server.url)


def test_a_multi_label_classifier_is_refused(server):
    server.classes = 2
    with pytest.raises(RewardModelError, match="returns 2 values per input.*exactly one logit"):
        RemoteRewardModel(server.url)


def test_model_choice_when_several_are_served(tokenizer_path):
    with PoolingServer(tokenizer_path, models=("rm-a", "rm-b")) as server:
        with pytest.raises(RewardModelError, match="several models are served"):
            RemoteRewardModel(server.url)
        with pytest.raises(RewardModelError, match="'rm-c' is not served"):
            RemoteRewardModel(server.url, model="rm-c")
        rm = RemoteRewardModel(server.url, model="rm-b")
        rm.score_pairs(PAIRS[:1])
        assert server.posts("/classify")[-1]["model"] == "rm-b"


def test_unloadable_tokenizer_names_the_tokenizer_argument(server, tmp_path):
    with pytest.raises(RewardModelError, match="pass tokenizer="):
        RemoteRewardModel(server.url, tokenizer=str(tmp_path / "missing"))


def test_spec_strings(server, tokenizer_path):
    rm = load_reward_model(server.url, tokenizer=tokenizer_path, max_length=64)
    assert isinstance(rm, RemoteRewardModel) and rm.max_length == 64
    with pytest.raises(ValueError, match="not supported"):
        load_reward_model("ftp://example/rm")


# --- several replicas of one model ---


@pytest.fixture
def replicas(tokenizer_path):
    with PoolingServer(tokenizer_path) as a, PoolingServer(tokenizer_path) as b:
        yield a, b


def test_replicas_share_the_requests_and_score_identically(replicas):
    a, b = replicas
    rm = RemoteRewardModel([a.url, b.url], batch_size=1, max_concurrency=4)
    for server in replicas:
        server.bodies.clear()
        server.delay = 0.02
    scored = rm.score_pairs(PAIRS)
    assert [s.score for s in scored] == pytest.approx(expected(rm))
    assert len(a.posts("/classify")) + len(b.posts("/classify")) == len(PAIRS)
    assert len(a.posts("/classify")) >= 3 and len(b.posts("/classify")) >= 3
    assert rm.urls == [a.url, b.url] and rm.name == f"{a.url}, {b.url} (rm)"


def test_a_replica_stopped_mid_run_is_routed_around(replicas):
    a, b = replicas
    rm = RemoteRewardModel([a.url, b.url], batch_size=1, max_concurrency=2, max_retries=0)
    pairs = PAIRS * 3
    for server in replicas:
        server.bodies.clear()
        server.delay = 0.02
    a.die_after = 4
    scored = rm.score_pairs(pairs)
    assert a.dead and len(a.posts("/classify")) == 4  # the fourth was never answered
    assert [s.score for s in scored] == pytest.approx(expected(rm, pairs))
    assert len(b.posts("/classify")) == len(pairs) - 3
    again = rm.score_pairs(PAIRS[:4])  # the failed replica is avoided at once, not retried first
    assert [s.score for s in again] == pytest.approx(expected(rm, PAIRS[:4]))
    assert len(b.posts("/classify")) == len(pairs) - 3 + 4


def test_all_replicas_down_raises_after_the_retries(replicas):
    a, b = replicas
    rm = RemoteRewardModel([a.url, b.url], max_retries=1, backoff=0.01)
    for server in replicas:
        server.bodies.clear()
        server.fail_first = 100
    with pytest.raises(RemoteRewardModelError, match=r"after 2 attempts.*HTTP 503"):
        rm.score_pairs(PAIRS[:1])
    assert len(a.posts("/classify")) == len(b.posts("/classify")) == 2  # each replica once per round


def test_replicas_must_serve_the_same_model_and_length(tokenizer_path):
    with PoolingServer(tokenizer_path) as a, PoolingServer(tokenizer_path, models=("other",)) as b:
        with pytest.raises(RewardModelError, match=r"replicas differ:.*id='rm'.*id='other'"):
            RemoteRewardModel([a.url, b.url])
    with PoolingServer(tokenizer_path) as a, PoolingServer(tokenizer_path, max_model_len=512) as b:
        with pytest.raises(RewardModelError, match=r"replicas differ:.*max_model_len=4096.*max_model_len=512"):
            RemoteRewardModel([a.url, b.url])
    with pytest.raises(ValueError, match="twice"):
        RemoteRewardModel([a.url, a.url + "/v1"])


def test_comma_separated_spec_names_replicas(replicas, tokenizer_path):
    a, b = replicas
    rm = load_reward_model(f"{a.url}, {b.url}/v1", tokenizer=tokenizer_path)
    assert isinstance(rm, RemoteRewardModel) and rm.urls == [a.url, b.url]
