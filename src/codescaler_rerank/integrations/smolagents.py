"""smolagents adapters: a `Model` that samples N and returns the best, and a `final_answer_checks` validator.

    from smolagents import CodeAgent, OpenAIServerModel
    from codescaler_rerank.integrations.smolagents import BestOfNModel, codescaler_final_answer_check

    inner = OpenAIServerModel("my-model", api_base="http://127.0.0.1:8000/v1", api_key="...", temperature=0.8)
    agent = CodeAgent(
        tools=[], model=BestOfNModel(inner, reranker, n=8), code_block_tags="markdown",
        final_answer_checks=[codescaler_final_answer_check(reranker, threshold=0.5)],
    )

`code_block_tags="markdown"` makes the agent write fenced ```python blocks, the format the extractor reads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .._deps import require
from ..messages import last_text
from ..reranker import Reranker

smolagents = require("smolagents", "smolagents")


def _as_dict(message: Any) -> dict[str, Any]:
    return message if isinstance(message, dict) else {"role": message.role, "content": message.content}


class BestOfNModel(smolagents.Model):
    """Wraps a smolagents `Model`: each step samples `n` replies in threads and returns the best one.

    The replies are ranked against the last user message (for an agent, its "New task:" message). If any reply
    calls tools (a ToolCallingAgent), the first such reply is returned unranked. Token usage is the sum of all N.
    """

    def __init__(self, inner: Any, reranker: Reranker, n: int = 8) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        super().__init__(model_id=inner.model_id)
        self.inner = inner
        self.reranker = reranker
        self.n = n

    def generate(self, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        """Sample `n` replies to `messages` (same arguments as the wrapped model's `generate`) and keep the best."""
        with ThreadPoolExecutor(self.n) as pool:
            replies = list(pool.map(lambda _: self.inner.generate(messages, *args, **kwargs), range(self.n)))
        usages = [r.token_usage for r in replies if r.token_usage is not None]
        usage = smolagents.TokenUsage(
            input_tokens=sum(u.input_tokens for u in usages), output_tokens=sum(u.output_tokens for u in usages)
        )
        best = next((r for r in replies if r.tool_calls), None)
        if best is None:
            prompt = last_text([_as_dict(m) for m in messages], "user") or ""
            texts = [r.content if isinstance(r.content, str) else "" for r in replies]
            best = replies[self.reranker.select(prompt, texts).best.index]
        best.token_usage = usage if usages else None
        return best


def codescaler_final_answer_check(reranker: Reranker, threshold: float = 0.0) -> Callable[..., bool]:
    """A `final_answer_checks` entry: rejects a final answer whose code is invalid or whose shaped reward is below
    `threshold`, raising an error whose message the agent sees, so it tries again."""

    def codescaler_final_answer_check(final_answer: Any, memory: Any, agent: Any = None) -> bool:
        task = next(s.task for s in reversed(memory.steps) if isinstance(s, smolagents.memory.TaskStep))
        best = reranker.select(task, [str(final_answer)]).best
        if not best.valid:
            raise ValueError(f"the final answer has no valid code ({best.reason})")
        if best.reward < threshold:
            raise ValueError(f"the final answer's code scores {best.reward:.3f}, below {threshold}")
        return True

    return codescaler_final_answer_check
