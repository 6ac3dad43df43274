"""An OpenAI Agents SDK `Model` that samples N responses from another model and returns the best by CodeScaler.

    from agents import Agent, OpenAIChatCompletionsModel, Runner
    from codescaler_rerank.integrations.openai_agents import BestOfNModel

    inner = OpenAIChatCompletionsModel(model="my-model", openai_client=AsyncOpenAI(base_url=..., api_key=...))
    agent = Agent(name="coder", instructions="Answer with one Python code block.", model=BestOfNModel(inner, reranker))
    result = await Runner.run(agent, "Write a function is_even(n).")

Each turn sends N concurrent requests to the wrapped model (same settings; set `ModelSettings(temperature=...)`
for diversity). If every sample is a text answer, they are ranked against the last user message and the best one
is returned. If any sample calls a tool or hands off, the first such sample is returned unranked: tool calls are
not code answers, and the agent loop needs them. The returned usage is the sum over all N samples. Streaming
(`Runner.run_streamed`) works, but the best response arrives as one `response.completed` event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, AsyncIterator

from .._deps import require
from ..reranker import Reranker

agents = require("agents", "openai-agents")
responses = require("openai.types.responses", "openai-agents")

TEXT_ITEMS = {"message", "reasoning"}  # output items of a plain answer; any other item is a tool call or handoff


def _last_user_text(input: str | list[Any]) -> str:
    """The text of the last user message of a Responses-format input."""
    if isinstance(input, str):
        return input
    for item in reversed(input):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            if isinstance(content, str) and content.strip():
                return content
    return ""


class BestOfNModel(agents.Model):
    """Wraps a `Model` (e.g. `OpenAIChatCompletionsModel`): N samples per turn, the best text answer returned."""

    def __init__(self, inner: Any, reranker: Reranker, n: int = 8) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        self.inner = inner
        self.reranker = reranker
        self.n = n

    async def get_response(
        self, system_instructions: str | None, input: str | list[Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Sample `n` responses concurrently; failed samples are dropped (all failed: the first error is raised)."""
        results = await asyncio.gather(
            *(self.inner.get_response(system_instructions, input, *args, **kwargs) for _ in range(self.n)),
            return_exceptions=True,
        )
        sampled = [r for r in results if not isinstance(r, BaseException)]
        if not sampled:
            raise results[0]
        usage = agents.Usage()
        for response in sampled:
            usage.add(response.usage)
        tool_calls = [r for r in sampled if any(item.type not in TEXT_ITEMS for item in r.output)]
        if tool_calls:
            return dataclasses.replace(tool_calls[0], usage=usage)
        texts = ["".join(filter(None, map(agents.ItemHelpers.extract_text, r.output))) for r in sampled]
        result = await self.reranker.aselect(_last_user_text(input), texts)
        return dataclasses.replace(sampled[result.best.index], usage=usage)

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """`get_response`, then its best response as a single `response.completed` event."""
        best = await self.get_response(*args, **kwargs)
        usage = responses.ResponseUsage(
            input_tokens=best.usage.input_tokens, input_tokens_details=best.usage.input_tokens_details,
            output_tokens=best.usage.output_tokens, output_tokens_details=best.usage.output_tokens_details,
            total_tokens=best.usage.total_tokens,
        )
        response = responses.Response.model_construct(
            id=best.response_id or "best-of-n", object="response", created_at=time.time(), model="best-of-n",
            output=best.output, usage=usage, status="completed",
        )
        yield responses.ResponseCompletedEvent(type="response.completed", response=response, sequence_number=0)

    async def close(self) -> None:
        await self.inner.close()
