"""The best-of-N proxy with an unchanged OpenAI client: the client asks once, the proxy samples N and returns the best.

    python examples/proxy_with_openai_client.py         # offline: canned upstream answers and a tiny random RM
    python examples/proxy_with_openai_client.py --generator litellm:openai/my-model \\
        --api-base http://127.0.0.1:8000/v1 --rm LARK-Lab/CodeScaler-1.7B

Any OpenAI-compatible agent framework works the same way: point its base URL at the proxy. To run the proxy as
a service instead: `codescaler-rerank serve --generator litellm:openai/my-model --api-base ... --port 8080`.
"""

from __future__ import annotations

import argparse

import openai

from codescaler_rerank import StaticGenerator
from codescaler_rerank.server import ServerConfig, create_app, running_server
from codescaler_rerank.specs import load_generator
from codescaler_rerank.testing import reward_model_or_tiny

CANNED = [
    "```python\ndef is_even(n):\n    return n % 2 == 0\n```",
    "Check whether n modulo 2 is zero.",
    "```python\ndef is_even(n)\n    return n & 1\n```",
    "```python\ndef is_even(n):\n    return not n & 1\n```",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", help='upstream, e.g. "litellm:openai/my-model" (default: canned answers)')
    parser.add_argument("--api-base", help="OpenAI-compatible upstream server")
    parser.add_argument("--rm", help="reward model name or path (default: a tiny random-weight model built offline)")
    parser.add_argument("--n", type=int, default=4)
    args = parser.parse_args()

    if args.generator:
        generator = load_generator(args.generator, **({"api_base": args.api_base} if args.api_base else {}))
    else:
        generator = StaticGenerator(CANNED)
    app = create_app(generator, reward_model_or_tiny(args.rm), ServerConfig(n=args.n, model_name="best-of-n"))

    with running_server(app) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused")
        completion = client.chat.completions.create(
            model="best-of-n", messages=[{"role": "user", "content": "Write a Python function is_even(n)."}]
        )
        print(completion.choices[0].message.content)
        for c in completion.model_extra["codescaler"]["candidates"]:
            print(f"rank {c['rank']}: candidate {c['index']} {c['reason']} reward={c['reward']:.3f}")


if __name__ == "__main__":
    main()
