"""A verl `custom_reward_function` file: the CodeScaler reward of each response (0.0 for invalid code).

verl (0.9 and later: the reward loop) calls `compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`
once per response and awaits it when it is a coroutine function. It does not pass the prompt, so put the problem
text in each row's `extra_info["prompt"]` (or `"question"`). Point verl at this file (absolute imports, so loading
it by path works)::

    reward.custom_reward_function.path=$(python -c "import codescaler_rerank.integrations.verl_reward as m; print(m.__file__)")
    reward.custom_reward_function.name=compute_score_async   # or compute_score (verl runs it in a thread)
    reward.reward_manager.name=naive                         # the default

`compute_score_async` merges the calls that are waiting while one RM call runs into the next RM call, so a
reward worker scores its chunk of the batch in a few bulk calls instead of one call per response.
Both return `{"score": reward, "codescaler_valid": 0.0 or 1.0, "codescaler_reason": ...}` (the extraction's
reason: "ok", "code_in_reasoning" or why not); verl logs the extra keys. The reward model comes from
`reward_model=` (`+reward.custom_reward_function.reward_kwargs.reward_model=...`: a name, a path or an http://
pooling server), else $CODESCALER_RM, else LARK-Lab/CodeScaler-8B, loaded once per worker. `ground_truth` is
not used. `compute_score_batch` serves verl's legacy `batch` manager.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Sequence

from codescaler_rerank.integrations.rewards import score_responses, shared_reward_model
from codescaler_rerank.pipeline import ScoredExtraction


def _prompt(extra_info: dict[str, Any] | None) -> str:
    for key in ("prompt", "question"):
        if extra_info and isinstance(extra_info.get(key), str):
            return extra_info[key]
    raise ValueError("the CodeScaler reward needs the problem text in extra_info['prompt'] (or 'question')")


def _result(scored: ScoredExtraction) -> dict[str, Any]:
    return {"score": scored.reward, "codescaler_valid": float(scored.valid), "codescaler_reason": scored.reason}


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[dict[str, Any] | None],
    *,
    reward_model: str | None = None,
    mode: str = "paper",
    dedup: str | bool = "exact",
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Rewards of a whole batch in one reward-model call (also verl's legacy `batch` reward manager)."""
    scored = score_responses(
        shared_reward_model(reward_model), [_prompt(e) for e in extra_infos], solution_strs, mode=mode, dedup=dedup
    )
    return [_result(s) for s in scored]


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """The reward of one response, in its own RM call."""
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], **kwargs)[0]


class _Merger:
    """Queues (prompt, response) items and scores everything queued in one call, one call at a time, in a thread."""

    def __init__(self, reward_model: str | None, mode: str, dedup: str | bool) -> None:
        self.settings = (reward_model, mode, dedup)
        self.pending: list[tuple[str, str, asyncio.Future[ScoredExtraction]]] = []
        self.worker: asyncio.Task[None] | None = None

    async def score(self, prompt: str, response: str) -> ScoredExtraction:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((prompt, response, future))
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        reward_model, mode, dedup = self.settings
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    scored = await asyncio.to_thread(
                        score_responses, shared_reward_model(reward_model), [p for p, _, _ in batch],
                        [r for _, r, _ in batch], mode=mode, dedup=dedup,
                    )
                except Exception as exc:  # the RM failed: every waiting call gets the error
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), s in zip(batch, scored):
                    if not future.done():
                        future.set_result(s)
        finally:
            self.worker = None


_mergers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, _Merger]] = weakref.WeakKeyDictionary()


async def compute_score_async(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    *,
    reward_model: str | None = None,
    mode: str = "paper",
    dedup: str | bool = "exact",
    **kwargs: Any,
) -> dict[str, Any]:
    """The reward of one response; concurrent calls on one event loop share bulk RM calls (same values)."""
    prompt = _prompt(extra_info)
    key = (reward_model, mode, dedup)
    mergers = _mergers.setdefault(asyncio.get_running_loop(), {})
    merger = mergers.setdefault(key, _Merger(*key))
    return _result(await merger.score(prompt, solution_str))
