"""Quick start: rank answers you already have (or sample new ones) with a CodeScaler reward model.

    python examples/quickstart.py                       # offline: a tiny random-weight RM (scores mean nothing)
    python examples/quickstart.py --rm LARK-Lab/CodeScaler-1.7B
    python examples/quickstart.py --rm LARK-Lab/CodeScaler-8B --generator litellm:openai/gpt-4o-mini
"""

from __future__ import annotations

import argparse

from codescaler_rerank import Reranker
from codescaler_rerank.cli import format_result
from codescaler_rerank.testing import reward_model_or_tiny

PROMPT = "Write a Python function `second_largest(xs)` that returns the second largest distinct value, or None."
ANSWERS = [
    "Here is a solution:\n```python\ndef second_largest(xs):\n    s = sorted(set(xs))\n    return s[-2] if len(s) > 1 else None\n```",
    "```python\ndef second_largest(xs):\n    xs.sort()\n    return xs[-2]\n```\nThis sorts the list in place.",
    "<think>Track the top two.</think>\n```python\ndef second_largest(xs)\n    return max(xs)\n```",
    "You can sort the list and take the element before the last one.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rm", help="reward model name or path (default: a tiny random model built offline)")
    parser.add_argument("--generator", help='sample fresh answers, e.g. "litellm:openai/gpt-4o-mini"')
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args()

    reward_model = reward_model_or_tiny(args.rm)

    reranker = Reranker(args.generator, reward_model)
    result = reranker.rerank(PROMPT, n=args.n) if args.generator else reranker.select(PROMPT, ANSWERS)
    print(format_result(result))


if __name__ == "__main__":
    main()
