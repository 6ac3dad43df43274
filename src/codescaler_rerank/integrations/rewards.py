"""The reward path of the RL adapters: the same extraction, dedup, scoring and shaping as `rerank()`, in bulk."""

from __future__ import annotations

import functools
import os
import threading
from typing import Sequence

from ..pipeline import RewardScorer, ScoredExtraction, extract_all, score_extractions
from ..reward_model import DEFAULT_REWARD_MODEL
from ..specs import load_reward_model

RM_ENV = "CODESCALER_RM"


def score_responses(
    scorer: RewardScorer,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    language: str | None = "python",
    mode: str = "paper",
    dedup: str | bool = "exact",
) -> list[ScoredExtraction]:
    """Extract and score each (prompt, response) pair in one reward-model call; responses to one prompt form a group.

    `mode="paper"` (the released recipe's rule, Python) by default: an answer without exactly one fenced block whose
    stripped content parses gets reward 0, and the RM sees the recipe's code string byte for byte.
    `dedup="exact"` by default: only identical code (the same RM input) shares a score, as in the recipe, so code
    that differs in comments or layout is scored on its own; see `pipeline.score_extractions` for the other modes.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    members: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        members.setdefault(prompt, []).append(i)
    groups = [(prompt, extract_all([responses[i] for i in idx], language, mode, prompt)) for prompt, idx in members.items()]
    scored: list[ScoredExtraction | None] = [None] * len(prompts)
    for idx, group in zip(members.values(), score_extractions(scorer, groups, dedup=dedup)):
        for i, s in zip(idx, group):
            scored[i] = s
    return scored  # type: ignore[return-value]  # every slot is filled


_loading = threading.Lock()


@functools.lru_cache(maxsize=2)
def _cached_reward_model(spec: str) -> RewardScorer:
    return load_reward_model(spec)


def shared_reward_model(spec: str | None = None) -> RewardScorer:
    """A reward model loaded once per process: `spec`, else $CODESCALER_RM, else the default CodeScaler model.

    Thread-safe: verl and OpenRLHF call the reward from many threads at once, and each must not load its own copy.
    """
    with _loading:
        return _cached_reward_model(spec or os.environ.get(RM_ENV) or DEFAULT_REWARD_MODEL)


shared_reward_model.cache_clear = _cached_reward_model.cache_clear  # type: ignore[attr-defined]  # forget the loaded models
