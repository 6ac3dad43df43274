"""The RL adapters called exactly as verl 0.9+, OpenRLHF 0.11 and TRL's AsyncGRPOTrainer call them, with the tiny RM.

verl and OpenRLHF need GPUs and Ray, so they are not installed; each harness below re-enacts the framework code it
names (file and commit), with the framework's own argument names, call forms and return handling:
- verl: verl-project/verl @ 1dda039b9c6311889a9c9a26040677e1254814f9 (0.10.0.dev, after 0.9),
  verl/trainer/ppo/reward.py `get_custom_reward_fn`, verl/utils/import_utils.py `load_module`,
  verl/experimental/reward_loop/reward_loop.py `RewardLoopWorker.compute_score_batch`,
  verl/experimental/reward_loop/reward_manager/naive.py `NaiveRewardManager.run_single`.
- OpenRLHF: OpenRLHF/OpenRLHF @ 3c3be6234e0cb353e76bb8019947db9dfe99fca7 (0.11.0), openrlhf/utils/agent.py
  `SingleTurnAgentExecutor` (`__init__`, `execute`, `_fetch_rewards_via_func`, `_fetch_rewards_via_http`),
  openrlhf/trainer/ppo_utils/samples_generator.py (`torch.tensor([reward_val])`, extra_logs handling).
- TRL (installed, 1.16.0): trl/experimental/async_grpo/async_rollout_worker.py `AsyncRolloutWorker.start`
  (`pickle.dumps`, spawn context, `CUDA_VISIBLE_DEVICES=""` in the child) and `_AsyncRolloutLoop._score_group`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib.util
import inspect
import json
import os
import pickle
import subprocess
import sys

import pytest

from codescaler_rerank.integrations import openrlhf_reward, verl_reward
from codescaler_rerank.integrations.rewards import shared_reward_model
from rl_cases import reference_rewards
from rm_server import RewardModelServer

PROMPTS = ["Write a Python function add(a, b).", "Write a Python function neg(x)."]
ANSWERS = {
    PROMPTS[0]: [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "No code here.",
        "```python\ndef add(a, b):\n    return a + b\n```",
        "```python\ndef add(a, b):\n    # sum\n    return b + a\n```",
    ],
    PROMPTS[1]: ["```python\ndef neg(x):\n    return -x\n```", "```python\ndef neg(x)\n    return x\n```"],
}
FLAT = [(p, a) for p, answers in ANSWERS.items() for a in answers]
VALID = [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]


@pytest.fixture(scope="module")
def expected(tiny_rm):
    return reference_rewards(tiny_rm, ANSWERS)


@pytest.fixture(scope="module")
def rm_server(tiny_rm, tiny_qwen3_path):
    with RewardModelServer(tiny_rm, str(tiny_qwen3_path)) as server:
        yield server


@pytest.fixture
def rm_env(tiny_qwen3_path, monkeypatch):
    """$CODESCALER_RM set to the tiny RM, with the per-process model cache fresh before and after."""
    monkeypatch.setenv("CODESCALER_RM", str(tiny_qwen3_path))
    shared_reward_model.cache_clear()
    yield str(tiny_qwen3_path)
    shared_reward_model.cache_clear()


# --- verl ---------------------------------------------------------------------------------------------------------


def verl_custom_reward_fn(path: str, name: str, reward_kwargs: dict):
    """`get_custom_reward_fn`: load `name` from the file at `path` (no sys.modules entry, as `load_module` does
    without a module name) and wrap it so the config's `reward_kwargs` are merged into each call."""
    spec = importlib.util.spec_from_file_location("custom_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw_fn = getattr(module, name)

    def call(raw_fn, extra_kwargs, *args, **kwargs):
        return raw_fn(*args, **{**kwargs, **extra_kwargs})

    async def call_async(raw_fn, extra_kwargs, *args, **kwargs):
        return await raw_fn(*args, **{**kwargs, **extra_kwargs})

    return functools.partial(call_async if inspect.iscoroutinefunction(raw_fn) else call, raw_fn, reward_kwargs)


async def verl_reward_loop(compute_score, rows: list[dict]) -> list[dict]:
    """`RewardLoopWorker.compute_score_batch`: one task per row, gathered; each runs `NaiveRewardManager.run_single`."""
    loop = asyncio.get_running_loop()
    is_async = inspect.iscoroutinefunction(compute_score)

    async def run_single(row: dict) -> dict:
        extra_info = dict(row.get("extra_info", {}))
        extra_info["num_turns"] = None
        extra_info["rollout_reward_scores"] = {}
        kwargs = dict(
            data_source=row["data_source"], solution_str=row["response"],
            ground_truth=row["reward_model"]["ground_truth"], extra_info=extra_info,
        )
        if is_async:
            result = await compute_score(**kwargs)
        else:
            result = await loop.run_in_executor(None, lambda: compute_score(**kwargs))
        if isinstance(result, dict):
            return {"reward_score": result["score"], "reward_extra_info": dict(result)}
        return {"reward_score": result, "reward_extra_info": {"acc": result}}

    return await asyncio.gather(*[asyncio.create_task(run_single(row)) for row in rows])


def verl_rows(key: str = "prompt") -> list[dict]:
    return [
        {"data_source": "codegen", "response": a, "reward_model": {"ground_truth": None}, "extra_info": {key: p}}
        for p, a in FLAT
    ]


@pytest.mark.parametrize("name", ["compute_score", "compute_score_async"])
def test_verl_reward_loop_sync_and_async(name, rm_server, expected, tiny_qwen3_path):
    """Both functions through verl's loader and reward loop: the same rewards as rerank(), with extra info; the async
    one merges the chunk's concurrent calls into one RM request to the pooling server, the sync one sends one each."""
    fn = verl_custom_reward_fn(verl_reward.__file__, name, {"reward_model": rm_server.url})
    assert inspect.iscoroutinefunction(fn) == (name == "compute_score_async")
    shared_reward_model.cache_clear()
    shared_reward_model(rm_server.url)  # built once per worker (its probe is one request), before counting
    before = rm_server.posts
    outputs = asyncio.run(verl_reward_loop(fn, verl_rows()))
    posts = rm_server.posts - before
    shared_reward_model.cache_clear()
    assert [o["reward_score"] for o in outputs] == pytest.approx(expected, abs=1e-5)
    assert [o["reward_extra_info"]["codescaler_valid"] for o in outputs] == VALID
    assert {o["reward_extra_info"]["codescaler_reason"] for o in outputs} == {"ok", "no_code_block", "syntax_error"}
    assert posts == (1 if name == "compute_score_async" else sum(VALID))


def test_concurrent_first_calls_load_one_model(rm_server):
    """verl's executor threads and OpenRLHF's to_thread calls all start at once: one model per process, not one each
    (each RemoteRewardModel built sends one probe)."""
    shared_reward_model.cache_clear()
    before = rm_server.posts
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        models = list(pool.map(lambda _: shared_reward_model(rm_server.url), range(8)))
    shared_reward_model.cache_clear()
    assert len({id(m) for m in models}) == 1 and rm_server.posts - before == 1


def test_verl_async_errors_stay_with_their_call(rm_env, expected):
    """A row without the problem text fails alone; the other concurrent calls still get their rewards."""
    fn = verl_custom_reward_fn(verl_reward.__file__, "compute_score_async", {})
    rows = verl_rows("question")
    rows[1]["extra_info"] = {}

    async def main():
        return await asyncio.gather(
            *[fn(data_source=r["data_source"], solution_str=r["response"], ground_truth=None,
                 extra_info=r["extra_info"]) for r in rows],
            return_exceptions=True,
        )

    results = asyncio.run(main())
    assert isinstance(results[1], ValueError) and "extra_info['prompt']" in str(results[1])
    assert [r["score"] for i, r in enumerate(results) if i != 1] == pytest.approx(
        [e for i, e in enumerate(expected) if i != 1], abs=1e-5
    )


# --- OpenRLHF -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen3_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_qwen3_path))


def openrlhf_samples(tokenizer, truncate_prompt_to: int | None = None) -> list[tuple[str, str, str]]:
    """(query, prompt, label) as `SingleTurnAgentExecutor.execute` builds them: the prompt is the dataset's
    chat-templated text (`preprocess_data` with `apply_chat_template`), the query decodes prompt + action tokens
    with special tokens kept; the label is the raw problem (`--data.label_key`)."""
    samples = []
    for problem, answer in FLAT:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": problem}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(text=prompt, add_special_tokens=False)["input_ids"]
        if truncate_prompt_to is not None:
            prompt_ids = prompt_ids[-truncate_prompt_to:]
        action_ids = tokenizer(text=answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        samples.append((tokenizer.decode(prompt_ids + action_ids, skip_special_tokens=False), prompt, problem))
    return samples


def load_openrlhf_reward_func(path: str):
    """`SingleTurnAgentExecutor.__init__`: a `.py` remote URL is loaded as module "reward_func"."""
    spec = importlib.util.spec_from_file_location("reward_func", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


@pytest.mark.parametrize("truncate_prompt_to", [None, 6])
def test_openrlhf_reward_func_file(truncate_prompt_to, rm_env, tokenizer, expected):
    """`_fetch_rewards_via_func`: `asyncio.to_thread(reward_func, [query], [prompt], [label])` per sample, then
    `torch.tensor([reward_val])` and `value.flatten()[0].item()` for extra logs (samples_generator.py)."""
    import torch

    reward_func = load_openrlhf_reward_func(openrlhf_reward.__file__)
    samples = openrlhf_samples(tokenizer, truncate_prompt_to)
    if truncate_prompt_to is not None:  # a left-truncated prompt no longer starts the query
        assert not any(q.startswith(p) for q, p, _ in samples)

    async def main():
        return await asyncio.gather(*[asyncio.to_thread(reward_func, [q], [p], [label]) for q, p, label in samples])

    infos = asyncio.run(main())
    rewards = [torch.tensor([info["rewards"]]).flatten()[0].item() for info in infos]
    scores = [torch.tensor([info["scores"]]).flatten()[0].item() for info in infos]
    valid = [info["extra_logs"]["codescaler_valid"].flatten()[0].item() for info in infos]
    assert rewards == pytest.approx(expected, abs=1e-5) and valid == VALID
    assert all(0 < s < 1 for s, v in zip(scores, valid) if v) and all(s == 0 for s, v in zip(scores, valid) if not v)


def test_openrlhf_response_text():
    assert openrlhf_reward.response_text("PROMPTcode", "PROMPT") == "code"
    assert openrlhf_reward.response_text("MPTcode", "PROMPT") == "code"  # the prompt lost its start
    assert openrlhf_reward.response_text("code", "PROMPT") == "code"
    with pytest.raises(ValueError, match="must match"):
        openrlhf_reward.openrlhf_rewards(None, ["a"], [], None)


# --- the OpenRLHF HTTP endpoint of `codescaler-rerank serve` --------------------------------------------------------

API_KEY = "sk-rl"


@pytest.fixture
def proxy_url(tiny_rm):
    """The real proxy app, served by uvicorn on 127.0.0.1 with an API key; its generator is never called here."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from codescaler_rerank.generators.litellm_generator import LiteLLMGenerator
    from codescaler_rerank.server import ServerConfig, create_app, running_server

    generator = LiteLLMGenerator("openai/unused", api_base="http://127.0.0.1:9/v1", api_key="unused")
    app = create_app(generator, tiny_rm, ServerConfig(api_key=API_KEY, max_body_bytes=64 * 1024))
    with running_server(app) as base:
        yield base.removesuffix("/v1")


async def openrlhf_fetch_via_http(endpoints: list[str], queries, prompts, labels) -> list[dict]:
    """`_fetch_rewards_via_http`: shard the samples across the endpoints, aiohttp POST json=payload each,
    raise_for_status, `.json()` (no retries here, so failures show)."""
    import aiohttp

    batch_size = (len(queries) + len(endpoints) - 1) // len(endpoints)
    timeout = aiohttp.ClientTimeout(total=180)

    async def post(url: str, payload: dict) -> dict:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url, json=payload) as response:
                response.raise_for_status()
                return await response.json()

    tasks = []
    for i, url in enumerate(endpoints):
        start, end = i * batch_size, min((i + 1) * batch_size, len(queries))
        payload = {"query": queries[start:end], "prompts": prompts[start:end], "labels": labels[start:end]}
        tasks.append(asyncio.create_task(post(url, payload)))
    return await asyncio.gather(*tasks)


def test_openrlhf_http_endpoint_on_the_proxy(proxy_url, tokenizer, expected):
    """One sample per request as `execute` sends it, to two comma-separated URLs (the second gets an empty shard),
    with the key as URL credentials (aiohttp sends them as Basic auth): the same rewards as the reward_func file."""
    pytest.importorskip("aiohttp")
    host = proxy_url.removeprefix("http://")
    endpoints = [f"http://rl:{API_KEY}@{host}/get_reward", f"http://rl:{API_KEY}@{host}/get_reward"]

    async def main():
        return await asyncio.gather(
            *[openrlhf_fetch_via_http(endpoints, [q], [p], [label]) for q, p, label in openrlhf_samples(tokenizer)]
        )

    answers = asyncio.run(main())
    assert all(second == {"rewards": [], "scores": [], "extra_logs": {"codescaler_valid": []}} for _, second in answers)
    infos = [first for first, _ in answers]
    assert [info["rewards"][0] for info in infos] == pytest.approx(expected, abs=1e-5)
    assert [info["extra_logs"]["codescaler_valid"][0] for info in infos] == VALID
    assert all(set(info) == {"rewards", "scores", "extra_logs"} for info in infos)


def test_openrlhf_http_endpoint_auth_and_errors(proxy_url):
    import httpx

    url = f"{proxy_url}/get_reward"
    body = {"query": ["x"], "prompts": ["x"], "labels": [None]}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, auth=("rl", "wrong")).status_code == 401
    ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status_code == 200 and ok.json()["rewards"] == [0.0]
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    for bad, param in [({"query": "x", "prompts": ["x"]}, "query"), ({"query": ["x"], "prompts": []}, "prompts"),
                       ({"query": ["x"], "prompts": ["x"], "labels": []}, "labels")]:
        response = httpx.post(url, json=bad, headers=bearer)
        assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert httpx.post(url, content=b"{", headers=bearer).status_code == 400
    big = {"query": ["x" * 70_000], "prompts": [""], "labels": [None]}
    assert httpx.post(url, json=big, headers=bearer).status_code == 413


# --- TRL AsyncGRPOTrainer -----------------------------------------------------------------------------------------

CHILD = """
import json, pickle, sys
reward = pickle.loads(sys.stdin.buffer.read())
assert reward._scorer is None  # nothing loaded came along
kwargs = json.loads(sys.argv[1])
print(json.dumps(reward(**kwargs)))
"""


def trl_score_group_kwargs() -> dict:
    """`_score_group`'s keyword arguments for one group: conversational prompts and completions, completion ids,
    and the dataset's other columns (`problem_id` here), each repeated per generation."""
    return dict(
        completions=[[{"role": "assistant", "content": a}] for _, a in FLAT],
        prompts=[[{"role": "user", "content": p}] for p, _ in FLAT],
        completion_ids=[[1, 2, 3] for _ in FLAT],
        problem_id=[f"p{PROMPTS.index(p)}" for p, _ in FLAT],
    )


def test_trl_reward_pickles_and_scores_in_a_gpu_less_child(rm_server, tiny_rm, expected):
    """`AsyncRolloutWorker.start` pickles the reward funcs and spawns a child with CUDA_VISIBLE_DEVICES=""; the reward
    (RM over HTTP) scores there as the in-process model does."""
    from codescaler_rerank.integrations.trl import CodeScalerReward

    kwargs = trl_score_group_kwargs()
    in_process = CodeScalerReward(tiny_rm)(**kwargs)
    assert in_process == pytest.approx(expected, abs=1e-5)
    remote = CodeScalerReward(rm_server.url)
    assert remote(**kwargs) == pytest.approx(in_process, abs=1e-5)  # loaded lazily, here, on first call
    data = pickle.dumps(remote)
    assert len(data) < 1000 and b"RemoteRewardModel" not in data  # the spec, not the loaded model
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(kwargs)], input=data, capture_output=True, env=env, timeout=300,
    )
    assert child.returncode == 0, child.stderr.decode()[-2000:]
    assert json.loads(child.stdout) == pytest.approx(in_process, abs=1e-5)


def test_trl_reward_loads_lazily_and_refuses_to_pickle_an_object(tiny_rm, tiny_qwen3_path, expected):
    from codescaler_rerank.integrations.trl import AsyncCodeScalerReward, CodeScalerReward

    lazy = pickle.loads(pickle.dumps(AsyncCodeScalerReward(str(tiny_qwen3_path))))
    assert lazy._scorer is None
    if importlib.util.find_spec("trl") is not None:
        from trl.trainer.utils import is_async_callable  # what _score_group checks before awaiting

        assert is_async_callable(lazy) and not is_async_callable(CodeScalerReward(tiny_rm))
    assert asyncio.run(lazy(**trl_score_group_kwargs())) == pytest.approx(expected, abs=1e-4)
    assert lazy._scorer is not None
    with pytest.raises(TypeError, match="spec string"):
        pickle.dumps(CodeScalerReward(tiny_rm))
