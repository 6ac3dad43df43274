"""The reference rewards the RL adapter tests compare with: Reranker.select with the RL settings."""

from __future__ import annotations

from codescaler_rerank import Reranker


def reference_rewards(reward_model, answers: dict[str, list[str]]) -> list[float]:
    """Shaped rewards with paper extraction and exact dedup, flattened prompt by prompt in `answers` order."""
    rewards = []
    for prompt, texts in answers.items():
        result = Reranker(None, reward_model, mode="paper", dedup="exact").select(prompt, texts)
        by_index = {c.index: c.reward for c in result.candidates}
        rewards += [by_index[i] for i in range(len(texts))]
    return rewards
