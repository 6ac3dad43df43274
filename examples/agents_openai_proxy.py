"""An OpenAI Agents SDK agent behind the best-of-N proxy: each model call of the agent is answered by the best of N.

    python examples/agents_openai_proxy.py       # offline: canned upstream answers and a tiny random RM
    python examples/agents_openai_proxy.py --generator litellm:openai/my-model \\
        --api-base http://127.0.0.1:8000/v1 --rm LARK-Lab/CodeScaler-1.7B

The agent only changes its base URL. To sample inside the agent process instead (no proxy), wrap its model:
`model=BestOfNModel(OpenAIChatCompletionsModel(...), reranker, n=8)` from `codescaler_rerank.integrations.openai_agents`.
"""

from __future__ import annotations

import argparse

from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI

from codescaler_rerank import StaticGenerator
from codescaler_rerank.server import ServerConfig, create_app, running_server
from codescaler_rerank.specs import load_generator
from codescaler_rerank.testing import reward_model_or_tiny

CANNED = [
    "Check whether n modulo 2 is zero.",
    "```python\ndef is_even(n)\n    return n & 1\n```",
    "```python\ndef is_even(n):\n    return n % 2 == 0\n```",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", help='upstream, e.g. "litellm:openai/my-model" (default: canned answers)')
    parser.add_argument("--api-base", help="OpenAI-compatible upstream server")
    parser.add_argument("--rm", help="reward model name or path (default: a tiny random-weight model built offline)")
    parser.add_argument("--n", type=int, default=len(CANNED))
    args = parser.parse_args()

    if args.generator:
        generator = load_generator(args.generator, **({"api_base": args.api_base} if args.api_base else {}))
    else:
        generator = StaticGenerator(CANNED)
    app = create_app(generator, reward_model_or_tiny(args.rm), ServerConfig(n=args.n, model_name="best-of-n"))

    set_tracing_disabled(True)  # the SDK would otherwise export traces to OpenAI
    with running_server(app) as base_url:
        model = OpenAIChatCompletionsModel(model="best-of-n", openai_client=AsyncOpenAI(base_url=base_url, api_key="-"))
        agent = Agent(name="coder", instructions="Answer with one Python code block.", model=model)
        result = Runner.run_sync(agent, "Write a Python function is_even(n).")
    print(result.final_output)


if __name__ == "__main__":
    main()
