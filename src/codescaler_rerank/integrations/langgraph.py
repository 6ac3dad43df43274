"""A LangGraph node that ranks the answers a fan-out collected and keeps the best.

    import operator
    from typing import Annotated, TypedDict
    from langgraph.graph import END, START, StateGraph
    from codescaler_rerank.integrations.langgraph import fan_out, select_best_node

    class State(TypedDict):
        prompt: str
        candidates: Annotated[list[str], operator.add]   # each sampler appends its answer
        best: str
        ranking: RerankResult

    graph = StateGraph(State)
    graph.add_node("sample", sample)                      # returns {"candidates": [answer]}
    graph.add_node("select", select_best_node(reranker))
    graph.add_conditional_edges(START, fan_out("sample", 8), ["sample"])   # 8 parallel `sample` tasks
    graph.add_edge("sample", "select")
    graph.add_edge("select", END)

The node runs once, after every sampler of the fan-out has finished (LangGraph's superstep barrier).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .._deps import require
from ..reranker import Reranker


def fan_out(node: str, n: int) -> Callable[[Mapping[str, Any]], list[Any]]:
    """A conditional-edge function sending the state to `n` parallel runs of `node`, each with its `sample_index`."""
    send = require("langgraph.types", "langgraph").Send
    return lambda state: [send(node, {**state, "sample_index": i}) for i in range(n)]


def select_best_node(
    reranker: Reranker,
    *,
    prompt_key: str = "prompt",
    candidates_key: str = "candidates",
    output_key: str = "best",
    ranking_key: str = "ranking",
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A node function: ranks `state[candidates_key]` for `state[prompt_key]` with `reranker`.

    It writes the best answer's text to `output_key` and the whole `RerankResult` to `ranking_key`.
    """

    def select_best(state: Mapping[str, Any]) -> dict[str, Any]:
        result = reranker.select(state[prompt_key], list(state[candidates_key]))
        return {output_key: result.best.text, ranking_key: result}

    return select_best
