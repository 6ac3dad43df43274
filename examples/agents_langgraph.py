"""Best-of-N as a LangGraph graph: N sampler nodes run in parallel (a `Send` fan-out), then one node picks the best.

    python examples/agents_langgraph.py          # offline: canned answers and a tiny random RM
    python examples/agents_langgraph.py --generator litellm:openai/my-model --api-base http://127.0.0.1:8000/v1 \\
        --rm LARK-Lab/CodeScaler-1.7B --n 8
"""

from __future__ import annotations

import argparse
import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from codescaler_rerank import Reranker, RerankResult
from codescaler_rerank.integrations.langgraph import fan_out, select_best_node
from codescaler_rerank.specs import load_generator
from codescaler_rerank.testing import reward_model_or_tiny

PROMPT = "Write a Python function is_even(n)."
CANNED = [
    "```python\ndef is_even(n):\n    return n % 2 == 0\n```",
    "Check whether n modulo 2 is zero.",
    "```python\ndef is_even(n)\n    return n & 1\n```",
    "```python\ndef is_even(n):\n    return not n & 1\n```",
]


class State(TypedDict, total=False):
    prompt: str
    candidates: Annotated[list[str], operator.add]  # every sampler appends its answer
    best: str
    ranking: RerankResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", help='policy, e.g. "litellm:openai/my-model" (default: canned answers)')
    parser.add_argument("--api-base", help="OpenAI-compatible server of the policy")
    parser.add_argument("--rm", help="reward model name or path (default: a tiny random-weight model built offline)")
    parser.add_argument("--n", type=int, default=len(CANNED))
    args = parser.parse_args()

    generator = None
    if args.generator:
        generator = load_generator(args.generator, **({"api_base": args.api_base} if args.api_base else {}))

    async def sample(state: dict[str, Any]) -> dict[str, Any]:
        """One sampler of the fan-out; `sample_index` tells the parallel copies apart."""
        if generator is None:
            return {"candidates": [CANNED[state["sample_index"] % len(CANNED)]]}
        output = await generator.agenerate(state["prompt"], 1, temperature=0.8)
        return {"candidates": [output.completions[0].text]}

    graph = StateGraph(State)
    graph.add_node("sample", sample)
    graph.add_node("select", select_best_node(Reranker(None, reward_model_or_tiny(args.rm))))
    graph.add_conditional_edges(START, fan_out("sample", args.n), ["sample"])
    graph.add_edge("sample", "select")
    graph.add_edge("select", END)
    state = asyncio.run(graph.compile().ainvoke({"prompt": PROMPT, "candidates": []}))

    print(state["best"])
    for c in state["ranking"].candidates:
        print(f"rank {c.rank}: candidate {c.index} {c.reason} reward={c.reward:.3f}")


if __name__ == "__main__":
    main()
