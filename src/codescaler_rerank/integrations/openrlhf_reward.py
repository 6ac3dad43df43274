"""An OpenRLHF remote reward-function file: `--remote_rm_url <this file>`.

Pass the raw problem text as the label (`--label_key <problem column>`): OpenRLHF's `prompts` are chat-templated,
and the reward model applies its own template to (problem, code). Without a label the prompt string is used.
Find the path with `python -c "import codescaler_rerank.integrations.openrlhf_reward as m; print(m.__file__)"`.
The reward model is $CODESCALER_RM, else LARK-Lab/CodeScaler-8B, loaded once per worker.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from codescaler_rerank.integrations.rewards import score_responses, shared_reward_model


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """`rewards`: shaped CodeScaler rewards; `scores`: sigmoid of the raw score in [0, 1] (0 for invalid code)."""
    responses = [q[len(p):] if q.startswith(p) else q for q, p in zip(queries, prompts)]
    labels = labels or [None] * len(prompts)
    problems = [label if isinstance(label, str) and label else p for label, p in zip(labels, prompts)]
    scored = score_responses(shared_reward_model(), problems, responses)
    rewards = torch.tensor([s.reward for s in scored], dtype=torch.float32)
    valid = torch.tensor([float(s.valid) for s in scored])
    scores = torch.tensor([s.score or 0.0 for s in scored]).sigmoid() * valid
    return {"rewards": rewards, "scores": scores, "extra_logs": {"codescaler_valid": valid}}
