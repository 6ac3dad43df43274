"""TRL `reward_funcs` callables scoring completions with a CodeScaler reward model.

    from trl import GRPOTrainer
    from codescaler_rerank.integrations.trl import CodeScalerReward

    trainer = GRPOTrainer(model=policy, reward_funcs=[CodeScalerReward("LARK-Lab/CodeScaler-8B")], ...)

Text and conversational datasets both work: for conversations, the reward model sees the last user message of the
prompt and the last assistant message of the completion. The valid-extraction share is logged as
`codescaler_valid` through TRL's `log_metric`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Sequence

from ..extraction import extract_code
from ..messages import last_text
from ..pipeline import RewardScorer, dedup_mode
from ..reward_model import DEFAULT_REWARD_MODEL
from ..specs import load_reward_model
from .rewards import score_responses


def _text(value: str | Sequence[dict[str, Any]], role: str) -> str:
    return value if isinstance(value, str) else last_text(value, role) or ""


class CodeScalerReward:
    """Batched reward: the shaped CodeScaler reward of each completion (0.0 for invalid code), in one RM call.

    Defaults are the recipe's: `mode="paper"` extraction, and `dedup="exact"` (only identical code strings share
    a score).
    """

    def __init__(
        self,
        reward_model: str | RewardScorer = DEFAULT_REWARD_MODEL,
        *,
        language: str | None = "python",
        mode: str = "paper",
        dedup: str | bool = "exact",
    ) -> None:
        extract_code("", language=language, mode=mode)  # a bad mode or language fails here, not at the first batch
        self.reward_model = load_reward_model(reward_model)
        self.language = language
        self.mode = mode
        self.dedup = dedup_mode(dedup)

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        log_metric: Callable[[str, float], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """One reward per completion; other TRL arguments (completion_ids, trainer_state, columns) are ignored."""
        scored = score_responses(
            self.reward_model,
            [_text(p, "user") for p in prompts],
            [_text(c, "assistant") for c in completions],
            language=self.language, mode=self.mode, dedup=self.dedup,
        )
        if log_metric is not None and scored:
            log_metric("codescaler_valid", sum(s.valid for s in scored) / len(scored))
        return [s.reward for s in scored]


class AsyncCodeScalerReward(CodeScalerReward):
    """`CodeScalerReward` as a coroutine: TRL awaits it alongside other async rewards; scoring runs in a thread."""

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:  # type: ignore[override]
        return await asyncio.to_thread(CodeScalerReward.__call__, self, prompts, completions, **kwargs)
