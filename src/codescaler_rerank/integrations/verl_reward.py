"""A verl `custom_reward_function` file: the CodeScaler reward of each response (0.0 for invalid code).

verl does not pass the prompt to reward functions, so put the problem text in each row's `extra_info["prompt"]`
(or `"question"`). Point verl at this file (absolute imports, so loading it by path works)::

    custom_reward_function.path=$(python -c "import codescaler_rerank.integrations.verl_reward as m; print(m.__file__)")
    custom_reward_function.name=compute_score          # per sample (naive reward manager)
    custom_reward_function.name=compute_score_batch    # one RM call per batch: reward_model.reward_manager=batch

The reward model comes from `reward_model=` (`custom_reward_function.reward_kwargs.reward_model=...`), else
$CODESCALER_RM, else LARK-Lab/CodeScaler-8B, loaded once per worker. `ground_truth` is not used.
"""

from __future__ import annotations

from typing import Any, Sequence

from codescaler_rerank.integrations.rewards import score_responses, shared_reward_model


def _prompt(extra_info: dict[str, Any] | None) -> str:
    for key in ("prompt", "question"):
        if extra_info and isinstance(extra_info.get(key), str):
            return extra_info[key]
    raise ValueError("the CodeScaler reward needs the problem text in extra_info['prompt'] (or 'question')")


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
) -> list[float]:
    """Rewards of a whole batch in one reward-model call (verl's `batch` reward manager)."""
    scored = score_responses(
        shared_reward_model(reward_model), [_prompt(e) for e in extra_infos], solution_strs, mode=mode, dedup=dedup
    )
    return [s.reward for s in scored]


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> float:
    """The reward of one response (verl's default `naive` reward manager)."""
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], **kwargs)[0]
