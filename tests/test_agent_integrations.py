"""Agent-framework adapters run by the real frameworks, their LLM calls going to a local OpenAI-compatible server.

Each framework's tests skip when it is not installed (extras: langgraph, dspy, openai-agents, smolagents).
The "slow" model answers after `SLOW` seconds, so `max_in_flight == N` shows that the N samples ran concurrently.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest
from openai_server import OpenAIServer

from codescaler_rerank import Reranker, RerankResult

PROMPT = "Write a Python function add(a, b)."
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
ANSWERS = ["Just add them.", GOOD, "```python\ndef add(a, b)\n    return a\n```"]  # only GOOD has valid code
N = len(ANSWERS)
SLOW = 0.3


@pytest.fixture(scope="module")
def reranker(tiny_rm):
    return Reranker(None, tiny_rm)


@pytest.fixture
def server():
    with OpenAIServer(ANSWERS, slow_seconds=SLOW) as srv:
        yield srv


def test_langgraph_fan_out_then_select(reranker, server):
    pytest.importorskip("langgraph", reason="needs the langgraph extra")
    from langgraph.graph import END, START, StateGraph

    from codescaler_rerank import LiteLLMGenerator
    from codescaler_rerank.integrations.langgraph import fan_out, select_best_node

    class State(TypedDict, total=False):
        prompt: str
        candidates: Annotated[list[str], operator.add]
        best: str
        ranking: RerankResult

    generator = LiteLLMGenerator("openai/slow", api_base=server.base_url, api_key="unused")

    async def sample(state: dict[str, Any]) -> dict[str, Any]:
        output = await generator.agenerate(state["prompt"], 1, seed=state["sample_index"])
        return {"candidates": [output.completions[0].text]}

    graph = StateGraph(State)
    graph.add_node("sample", sample)
    graph.add_node("select", select_best_node(reranker))
    graph.add_conditional_edges(START, fan_out("sample", N), ["sample"])
    graph.add_edge("sample", "select")
    graph.add_edge("select", END)
    state = asyncio.run(graph.compile().ainvoke({"prompt": PROMPT, "candidates": []}))

    assert sorted(state["candidates"]) == sorted(ANSWERS)
    assert state["best"] == GOOD
    assert state["ranking"].best.text == GOOD and len(state["ranking"].candidates) == N
    assert sorted(b["seed"] for b in server.chat_requests()) == list(range(N))
    assert server.max_in_flight == N


def test_dspy_parallel_best_of_n_best_of_n_and_refine(reranker, server):
    dspy = pytest.importorskip("dspy", reason="needs the dspy extra")
    from codescaler_rerank.integrations.dspy import ParallelBestOfN, codescaler_reward

    def chat_adapter_reply(answer: str) -> str:
        return f"[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"

    server.answers = [chat_adapter_reply(a) for a in ANSWERS]
    server.reset()
    lm = dspy.LM("openai/slow", api_base=server.base_url, api_key="unused", cache=False)
    solve = dspy.Predict("question -> answer")
    reward = codescaler_reward(reranker)
    good_reward = reranker.select(PROMPT, [GOOD]).best.reward
    assert reward({"question": PROMPT}, dspy.Prediction(answer=GOOD)) == pytest.approx(good_reward)
    assert reward({"question": PROMPT}, dspy.Prediction(answer=ANSWERS[0])) == 0.0

    with dspy.context(lm=lm):
        best = ParallelBestOfN(solve, reranker, n=N)(question=PROMPT)
        assert best.answer == GOOD
        assert server.max_in_flight == N
        assert sorted(b["temperature"] for b in server.chat_requests()) == [1.0] * N
        server.reset()
        assert dspy.BestOfN(solve, N=N, reward_fn=reward, threshold=good_reward)(question=PROMPT).answer == GOOD
        assert len(server.chat_requests()) == 2  # stopped at the threshold, after the answers "Just add them.", GOOD
        server.reset()
        refined = dspy.Refine(solve, N=1, reward_fn=reward, threshold=good_reward)(question=PROMPT)
        assert refined.answer == ANSWERS[0]


def test_openai_agents_best_of_n_model(reranker, server):
    agents = pytest.importorskip("agents", reason="needs the openai-agents extra")
    from openai import AsyncOpenAI

    from codescaler_rerank.integrations.openai_agents import BestOfNModel

    agents.set_tracing_disabled(True)

    @agents.function_tool
    def lookup() -> str:
        """Look the answer up."""
        return "looked up"

    async def run() -> tuple[Any, Any, Any]:
        client = AsyncOpenAI(base_url=server.base_url, api_key="unused")
        coder = agents.Agent(
            name="coder", instructions="Answer with one Python code block.",
            model=BestOfNModel(agents.OpenAIChatCompletionsModel(model="slow", openai_client=client), reranker, n=N),
        )
        result = await agents.Runner.run(coder, PROMPT)
        streamed = agents.Runner.run_streamed(coder, PROMPT)
        async for _ in streamed.stream_events():
            pass
        caller = agents.Agent(
            name="caller", tools=[lookup], tool_use_behavior="stop_on_first_tool",
            model=BestOfNModel(agents.OpenAIChatCompletionsModel(model="tool", openai_client=client), reranker, n=N),
        )
        return result, streamed, await agents.Runner.run(caller, PROMPT)

    result, streamed, tool_result = asyncio.run(run())
    assert result.final_output == streamed.final_output == GOOD
    assert server.max_in_flight == N
    usage = result.context_wrapper.usage
    assert usage.requests == N and usage.output_tokens == sum(len(a.split()) for a in ANSWERS)
    assert tool_result.final_output == "looked up"  # a tool-call sample is passed through
    assert len(server.chat_requests("tool")) == N


def test_smolagents_code_agent_with_best_of_n_and_final_answer_check(reranker, server):
    smolagents = pytest.importorskip("smolagents", reason="needs the smolagents extra")
    from codescaler_rerank.integrations.smolagents import BestOfNModel, codescaler_final_answer_check

    good = "Thought: define it.\n```python\ncode = 'def add(a, b):\\n    return a + b'\nfinal_answer(code)\n```"
    server.answers = ["I do not know.", good, "Thought: oops.\n```python\nfinal_answer(def add)\n```"]
    server.reset()
    inner = smolagents.OpenAIServerModel("slow", api_base=server.base_url, api_key="unused")
    agent = smolagents.CodeAgent(
        tools=[], model=BestOfNModel(inner, reranker, n=N), code_block_tags="markdown", max_steps=1,
        verbosity_level=0, final_answer_checks=[codescaler_final_answer_check(reranker)],
    )
    assert agent.run(PROMPT) == "def add(a, b):\n    return a + b"
    assert server.max_in_flight == N
    assert agent.monitor.get_total_token_counts().output_tokens == sum(len(a.split()) for a in server.answers)

    server.answers = [good]
    server.reset()
    strict = smolagents.CodeAgent(
        tools=[], model=inner, code_block_tags="markdown", max_steps=1, verbosity_level=0,
        final_answer_checks=[codescaler_final_answer_check(reranker, threshold=100.0)],
    )
    strict.run(PROMPT)
    errors = [str(s.error) for s in strict.memory.steps if isinstance(s, smolagents.memory.ActionStep) and s.error]
    assert "the final answer's code scores" in errors[0] and "below 100.0" in errors[0]


def test_adapters_select_with_the_rerankers_selector(tiny_rm):
    """The adapters rank through `Reranker`, so its selector applies: rm+tests runs the prompt's examples."""
    pytest.importorskip("langgraph", reason="needs the langgraph extra")
    from langgraph.graph import END, START, StateGraph

    from codescaler_rerank.integrations.langgraph import select_best_node

    class State(TypedDict, total=False):
        prompt: str
        candidates: list[str]
        best: str
        ranking: RerankResult

    prompt = 'def add(a, b):\n    """\n    >>> add(2, 3)\n    5\n    """\n'
    wrong = ["```python\ndef add(a, b):\n    return a - b\n```", "```python\ndef add(a, b):\n    return a * b\n```"]
    graph = StateGraph(State)
    graph.add_node("select", select_best_node(Reranker(None, tiny_rm, selector="rm+tests")))
    graph.add_edge(START, "select")
    graph.add_edge("select", END)
    state = graph.compile().invoke({"prompt": prompt, "candidates": [*wrong, GOOD]})
    assert state["best"] == GOOD and state["ranking"].selector == "rm+tests"
    assert state["ranking"].best.tests_passed is True and state["ranking"].sandbox_runs >= 1
