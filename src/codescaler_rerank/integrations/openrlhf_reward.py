"""An OpenRLHF (0.11) remote reward-function file: `--reward.remote_url <this file>`.

OpenRLHF calls `reward_func(queries, prompts, labels)`, one sample per call, in a thread: `queries` are the
decoded prompt + response tokens (chat template and special tokens included), `prompts` the chat-templated
prompts. The response is the query after its prompt. Pass the raw problem text as the label
(`--data.label_key <problem column>`): the reward model applies its own template to (problem, code); without a
label the templated prompt is used. Find the path with
`python -c "import codescaler_rerank.integrations.openrlhf_reward as m; print(m.__file__)"`.
The reward model is $CODESCALER_RM, else LARK-Lab/CodeScaler-8B, loaded once per worker.
`codescaler-rerank serve` answers the same over HTTP (`POST /get_reward`, see `reward_endpoint`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from codescaler_rerank.integrations.rewards import score_responses, shared_reward_model
from codescaler_rerank.pipeline import RewardScorer


def response_text(query: str, prompt: str) -> str:
    """The response part of an OpenRLHF query: what follows the prompt, or the longest end of it (a left-truncated
    prompt); the whole query when no part of the prompt starts it."""
    if query.startswith(prompt):
        return query[len(prompt):]
    for start in range(1, len(prompt)):
        if query.startswith(prompt[start:]):
            return query[len(prompt) - start:]
    return query


def _sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(x / 2))  # no overflow for large |x|


def openrlhf_rewards(
    scorer: RewardScorer, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None
) -> dict[str, Any]:
    """`rewards`: shaped CodeScaler rewards; `scores`: sigmoid of the raw score in [0, 1] (0 for invalid code);
    `extra_logs["codescaler_valid"]`: 1.0 or 0.0. Plain lists, one value per query."""
    if len(queries) != len(prompts) or (labels is not None and len(labels) != len(prompts)):
        raise ValueError(f"{len(queries)} queries, {len(prompts)} prompts and {len(labels or [])} labels: they must match")
    labels = labels if labels is not None else [None] * len(prompts)
    problems = [label if isinstance(label, str) and label else p for label, p in zip(labels, prompts)]
    scored = score_responses(scorer, problems, [response_text(q, p) for q, p in zip(queries, prompts)])
    return {
        "rewards": [s.reward for s in scored],
        "scores": [_sigmoid(s.score) if s.valid and s.score is not None else 0.0 for s in scored],
        "extra_logs": {"codescaler_valid": [float(s.valid) for s in scored]},
    }


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """`openrlhf_rewards` as float32 tensors, what OpenRLHF's reward-function files return."""
    import torch

    out = openrlhf_rewards(shared_reward_model(), queries, prompts, labels)
    logs = {k: torch.tensor(v, dtype=torch.float32) for k, v in out.pop("extra_logs").items()}
    return {**{k: torch.tensor(v, dtype=torch.float32) for k, v in out.items()}, "extra_logs": logs}
