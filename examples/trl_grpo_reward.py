"""CodeScaler as the reward of TRL's GRPOTrainer.

    python examples/trl_grpo_reward.py       # offline: a tiny random policy and RM, two steps on CPU
    python examples/trl_grpo_reward.py --policy Qwen/Qwen3-0.6B --rm LARK-Lab/CodeScaler-1.7B --steps 100
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from codescaler_rerank.integrations.trl import AsyncCodeScalerReward
from codescaler_rerank.testing import build_tiny_qwen3_causal_lm, build_tiny_qwen3_classifier

PROBLEMS = [
    "Write a Python function add(a, b) that returns the sum.",
    "Write a Python function is_palindrome(s).",
    "Write a Python function fib(n) returning the n-th Fibonacci number.",
    "Write a Python function flatten(xs) for a list of lists.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", help="policy model (default: a tiny random Qwen3 built offline)")
    parser.add_argument("--rm", help="reward model (default: a tiny random Qwen3 classifier built offline)")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="grpo-"))
    if args.policy is None:
        args.policy = str(workdir / "policy")
        build_tiny_qwen3_causal_lm(args.policy)
    if args.rm is None:
        args.rm = str(workdir / "rm")
        build_tiny_qwen3_classifier(args.rm)

    config = GRPOConfig(
        output_dir=str(workdir / "out"), per_device_train_batch_size=4, num_generations=4, max_completion_length=64,
        max_steps=args.steps, logging_steps=1, report_to="none", save_strategy="no",
        use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(),
    )
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROBLEMS]})
    reward = AsyncCodeScalerReward(args.rm)
    trainer = GRPOTrainer(model=args.policy, reward_funcs=[reward], args=config, train_dataset=dataset)
    trainer.train()
    for entry in trainer.state.log_history:
        if "rewards/AsyncCodeScalerReward/mean" in entry:
            print(f"step {entry['step']}: reward {entry['rewards/AsyncCodeScalerReward/mean']:.3f}  "
                  f"valid code {entry.get('codescaler_valid', 0):.2f}")


if __name__ == "__main__":
    main()
