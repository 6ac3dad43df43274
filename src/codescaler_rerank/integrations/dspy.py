"""DSPy adapters: a CodeScaler reward for `dspy.BestOfN` / `dspy.Refine`, and a best-of-N module sampling in parallel.

    import dspy
    from codescaler_rerank.integrations.dspy import ParallelBestOfN, codescaler_reward

    solve = dspy.Predict("question -> answer")
    reward = codescaler_reward(reranker, prompt_field="question", answer_field="answer")
    best = dspy.BestOfN(solve, N=8, reward_fn=reward, threshold=5.0)     # sequential, stops at the threshold
    best = ParallelBestOfN(solve, reranker, n=8)                          # all N at once, ranked together

The reward model sees the input field `prompt_field` as the problem and the output field `answer_field` as the
answer; the code is extracted from the answer as in `Reranker.select` (the reranker's language and mode).
"""

from __future__ import annotations

from typing import Any, Callable

from .._deps import require
from ..reranker import Reranker

dspy = require("dspy", "dspy")


def codescaler_reward(
    reranker: Reranker, *, prompt_field: str = "question", answer_field: str = "answer"
) -> Callable[[dict[str, Any], Any], float]:
    """A `reward_fn(args, pred)` returning the shaped CodeScaler reward: 0.0 for invalid code, else softplus(score)."""

    def codescaler_reward_fn(args: dict[str, Any], pred: Any) -> float:
        return reranker.select(str(args[prompt_field]), [str(pred[answer_field])]).best.reward

    return codescaler_reward_fn


class ParallelBestOfN(dspy.Module):
    """Runs `module` `n` times in parallel (distinct `rollout_id`s at `temperature`) and returns the best prediction.

    Like `dspy.BestOfN`, but the N calls run concurrently (threads of `dspy.Parallel`) and the answers are ranked
    together, so duplicates are scored once. Failed calls are dropped; if all fail, RuntimeError.
    """

    def __init__(
        self,
        module: Any,
        reranker: Reranker,
        n: int = 8,
        *,
        prompt_field: str = "question",
        answer_field: str = "answer",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if n < 1:
            raise ValueError("n must be at least 1")
        self.module = module
        # a closure, not the Reranker itself: dspy deep-copies module attributes, and the reward model must be shared
        self.select = lambda prompt, answers: reranker.select(prompt, answers)
        self.n = n
        self.prompt_field = prompt_field
        self.answer_field = answer_field
        self.temperature = temperature

    def forward(self, **kwargs: Any) -> Any:
        lm = self.module.get_lm() or dspy.settings.lm
        start = lm.kwargs.get("rollout_id") or 0
        runs = []
        for i in range(self.n):
            copy = self.module.deepcopy()
            copy.set_lm(lm.copy(rollout_id=start + i, temperature=self.temperature))
            runs.append((copy, kwargs))
        predictions = dspy.Parallel(num_threads=self.n, disable_progress_bar=True)(runs)
        predictions = [p for p in predictions if p is not None]
        if not predictions:
            raise RuntimeError(f"all {self.n} calls of the module failed")
        result = self.select(str(kwargs[self.prompt_field]), [str(p[self.answer_field]) for p in predictions])
        return predictions[result.best.index]
