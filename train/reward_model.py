"""RM training: Bradley-Terry on preference pairs with TRL's `RewardTrainer`, then pairwise and best-of-N evaluation.

    python -m train.reward_model --config train/configs/rm_smoke.yaml
    accelerate launch --config_file train/configs/accelerate/zero3.yaml -m train.reward_model \
        --config train/configs/rm_8b_full.yaml

Each pair is formatted and tokenised by the library's single RM-input formatter (`encode_rm_inputs`: the RM's chat
template over [user: prompt, assistant: code], right truncation at `max_length`, no extra tokens), so training
inputs are byte-for-byte what `RewardModel.score` feeds the model at serving time. The pad token is made distinct
from eos exactly as `RewardModel` does. Outputs in `output_dir`:

- `save: merged` (default): the full classifier and tokenizer, loadable by `RewardModel.from_pretrained(output_dir)`;
- `save: adapter`: the LoRA weights and score head only, plus `base.json` naming the base
  (`codescaler_rerank.demo.load_adapter_reward_model` loads it; used for the small bundled demo RM);
- `metrics.json`: held-out pairwise accuracy and best-of-N pass rates, before and after training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from codescaler_rerank.datasets import load_problems
from codescaler_rerank.demo import BASE_FILE, load_adapter_reward_model, load_base_classifier
from codescaler_rerank.evaluation import EvalConfig, PreferencePair, evaluate_best_of_n, evaluate_pairs, load_pairs
from codescaler_rerank.formatting import encode_rm_inputs
from codescaler_rerank.reward_model import RewardModel, ensure_distinct_pad_token

from .config import parse_args
from .models import resolve_model
from .zero3 import gathered, whole_weights

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class RewardModelConfig:
    """Settings of `train.reward_model` (paper: Skywork-Reward-V2-Qwen3 base, Bradley-Terry loss)."""

    model: str = "Skywork/Skywork-Reward-V2-Qwen3-8B"  # a 1-logit sequence classifier, "package:<name>", or "tiny"
    gguf_file: str | None = None  # a GGUF base (found in the package directory for "package:<name>")
    num_hidden_layers: int | None = None  # keep only the first K decoder layers of the base (CPU-sized RMs)
    train_pairs: str = "runs/curate/train.jsonl"  # train.curate output (or any load_pairs format)
    eval_pairs: str | None = "runs/curate/eval.jsonl"
    eval_problems: str | None = "runs/curate/eval_problems.jsonl.gz"  # labelled held-out problems for best-of-N
    output_dir: str = "runs/rm"
    save: str = "merged"  # "merged" (full model) or "adapter" (LoRA + score head, with base.json)
    max_length: int = 4096
    lora_r: int | None = None  # None: full fine-tuning
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))
    margin: float | None = None  # Bradley-Terry with a constant margin: -log sigmoid(r_pos - r_neg - margin)
    center_rewards_coefficient: float | None = None  # reward centring (TRL): + c * mean((r_pos + r_neg)^2)
    learning_rate: float = 2e-6
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 16
    warmup_steps: float = 0.03  # a value below 1 is a share of the total steps
    lr_scheduler_type: str = "cosine"
    bf16: bool = True
    gradient_checkpointing: bool = True
    logging_steps: int = 10
    seed: int = 0
    evaluate_before: bool = True  # also evaluate the untrained model, for comparison
    bon_ns: list[int] = field(default_factory=lambda: [1, 8])
    bon_subsets: int = 200
    trainer: dict[str, Any] = field(default_factory=dict)  # any other trl.RewardConfig argument


def pair_dataset(pairs: Sequence[PreferencePair], tokenizer: Any, config: RewardModelConfig) -> Any:
    """TRL's pre-tokenised format (`chosen_ids`, `rejected_ids`[, `margin`]) built by the library's formatter."""
    from datasets import Dataset

    chosen = encode_rm_inputs(tokenizer, [(p.prompt, p.chosen) for p in pairs], config.max_length)
    rejected = encode_rm_inputs(tokenizer, [(p.prompt, p.rejected) for p in pairs], config.max_length)
    columns: dict[str, list[Any]] = {"chosen_ids": [e.input_ids for e in chosen],
                                     "rejected_ids": [e.input_ids for e in rejected]}
    if config.margin is not None:
        columns["margin"] = [config.margin] * len(pairs)
    return Dataset.from_dict(columns)


def evaluate(rm: RewardModel, config: RewardModelConfig) -> dict[str, Any]:
    """Held-out pairwise accuracy and best-of-N pass rates (reward model, random, oracle) of `rm`."""
    metrics: dict[str, Any] = {}
    if config.eval_pairs:
        report = evaluate_pairs(load_pairs(config.eval_pairs), rm)
        metrics["pairwise_accuracy"] = report.accuracy.mean
        metrics["pairs"] = report.accuracy.n
    if config.eval_problems:
        problems = [p for p in load_problems(config.eval_problems) if p.candidates]
        bon = evaluate_best_of_n(problems, rm, EvalConfig(
            ns=config.bon_ns, subsets=config.bon_subsets, seed=config.seed, public_tests="none", latency_samples=0))
        metrics["best_of_n"] = {n: {m: s.mean for m, s in by.items()} for n, by in bon.results.items()}
    return metrics


def train(config: RewardModelConfig) -> dict[str, Any]:
    """Train, save and evaluate; returns (and writes) the metrics."""
    from trl import RewardConfig, RewardTrainer

    base = resolve_model(config.model, "classifier", config.output_dir)
    model, tokenizer = load_base_classifier(base, config.gguf_file, config.num_hidden_layers)
    ensure_distinct_pad_token(tokenizer, model)
    tokenizer.padding_side = "right"
    metrics: dict[str, Any] = {"config": asdict(config)}
    if config.evaluate_before:
        metrics["before"] = evaluate(RewardModel(model, tokenizer, max_length=config.max_length), config)
    args = RewardConfig(
        output_dir=config.output_dir, max_length=config.max_length, learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, warmup_steps=config.warmup_steps,
        lr_scheduler_type=config.lr_scheduler_type, bf16=config.bf16,
        gradient_checkpointing=config.gradient_checkpointing, logging_steps=config.logging_steps, seed=config.seed,
        center_rewards_coefficient=config.center_rewards_coefficient, save_strategy="no", report_to="none",
        **config.trainer,
    )
    trainer = RewardTrainer(
        model=model, args=args, processing_class=tokenizer, peft_config=lora_config(config),
        train_dataset=pair_dataset(load_pairs(config.train_pairs), tokenizer, config),
    )
    trainer.train()
    save(trainer, tokenizer, config)
    metrics["train_log"] = trainer.state.log_history
    if trainer.is_world_process_zero():
        metrics["after"] = evaluate(load_trained(config), config)  # what users load, from disk
        Path(config.output_dir, "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        print(json.dumps({k: metrics[k] for k in ("before", "after") if k in metrics}))
    return metrics


def lora_config(config: RewardModelConfig) -> Any:
    """A peft LoRA config (peft also trains the classification head), or None for full fine-tuning."""
    if config.lora_r is None:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="SEQ_CLS", r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=config.lora_target_modules)


def save(trainer: Any, tokenizer: Any, config: RewardModelConfig) -> None:
    """Write the model as `config.save` says; called on every process (ZeRO-3 and FSDP gather the weights)."""
    if config.save not in ("merged", "adapter"):
        raise ValueError(f"save must be 'merged' or 'adapter', not {config.save!r}")
    out = Path(config.output_dir)
    if config.save == "adapter" or config.lora_r is None:
        trainer.save_model(str(out))  # the LoRA weights and head, or the full model, with the tokenizer
    else:
        model = trainer.accelerator.unwrap_model(trainer.model)
        with gathered(model):  # ZeRO-3 partitions the weights: every process gathers, process zero merges and saves
            if trainer.is_world_process_zero():
                model.merge_and_unload().save_pretrained(str(out))
                tokenizer.save_pretrained(str(out))
    if config.save == "adapter" and trainer.is_world_process_zero():
        base = {"model": config.model, "gguf_file": config.gguf_file, "num_hidden_layers": config.num_hidden_layers,
                "max_length": config.max_length}
        (out / BASE_FILE).write_text(json.dumps(base, indent=2) + "\n", encoding="utf-8")


def load_trained(config: RewardModelConfig) -> RewardModel:
    """The saved reward model, loaded the way users load it (whole, also after a ZeRO-3 run)."""
    with whole_weights():
        if config.save == "adapter":
            return load_adapter_reward_model(config.output_dir, max_length=config.max_length)
        return RewardModel.from_pretrained(config.output_dir, max_length=config.max_length)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run RM training from the command line."""
    return train(parse_args(RewardModelConfig, __doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()
