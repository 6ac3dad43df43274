"""TRL `reward_funcs` callables scoring completions with a CodeScaler reward model.

    from trl import GRPOTrainer
    from codescaler_rerank.integrations.trl import CodeScalerReward

    trainer = GRPOTrainer(model=policy, reward_funcs=[CodeScalerReward("LARK-Lab/CodeScaler-8B")], ...)

Text and conversational datasets both work: for conversations, the reward model sees the last user message of the
prompt and the last assistant message of the completion. The valid-extraction share is logged as
`codescaler_valid` through TRL's `log_metric` (when the trainer passes one).

Built from a spec string, the reward is picklable and loads its model lazily, on its first call in each process:
TRL's `AsyncGRPOTrainer` pickles reward functions into a spawned, GPU-less process. There, serve the RM over HTTP
(`vllm serve <rm> --runner pooling`) and give the URL as the spec: `CodeScalerReward("http://127.0.0.1:8000")`.
"""

from __future__ import annotations

import asyncio
import threading
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

    `reward_model` is a spec (a model name or path, `"vllm:<model>"`, or `"http://host:port"` for a pooling
    server; `model_kwargs` go to its class) or a loaded scorer. Defaults are the recipe's: `mode="paper"`
    extraction, and `dedup="exact"` (only identical code strings share a score).
    """

    def __init__(
        self,
        reward_model: str | RewardScorer = DEFAULT_REWARD_MODEL,
        *,
        language: str | None = "python",
        mode: str = "paper",
        dedup: str | bool = "exact",
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        extract_code("", language=language, mode=mode)  # a bad mode or language fails here, not at the first batch
        self.spec = reward_model if isinstance(reward_model, str) else None
        self.model_kwargs = dict(model_kwargs or {})
        self.language = language
        self.mode = mode
        self.dedup = dedup_mode(dedup)
        self._scorer = None if self.spec is not None else reward_model
        self._lock = threading.Lock()

    @property
    def reward_model(self) -> RewardScorer:
        """The scorer, loaded from the spec on first use in this process."""
        with self._lock:
            if self._scorer is None:
                self._scorer = load_reward_model(self.spec, **self.model_kwargs)
            return self._scorer

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the spec and settings, never the loaded model (a scorer given as an object cannot be pickled)."""
        if self.spec is None:
            raise TypeError(
                f"{type(self).__name__} built from a {type(self._scorer).__name__} object cannot be pickled: pass the "
                "reward model as a spec string (a name, a path or an http:// URL of a pooling server)"
            )
        return {k: v for k, v in self.__dict__.items() if k not in ("_scorer", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _scorer=None, _lock=threading.Lock())

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
