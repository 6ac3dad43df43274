"""Multi-GPU training under DeepSpeed ZeRO-3, on CPU: the GRPO reward model loads whole, before any training config
exists (building one turns on transformers' ZeRO-3 init), and the RM pipeline gathers its partitioned weights
before merging LoRA.

The real-ZeRO-3 tests need deepspeed (an optional install, not a dependency): they run a single-process ZeRO-3 job
on CPU through `accelerate launch`, with every parameter partitioned (`stage3_param_persistence_threshold: 0`).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_train import synthetic_pairs

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs the train extra"),
    pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"),
]

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "train" / "configs"
GRPO_SMOKE = ["--config", str(CONFIGS / "grpo_smoke.yaml"), "--set", "max_steps=1"]
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed")


def live_training_configs() -> set[int]:
    """Ids of the `TrainingArguments` (GRPOConfig, RewardConfig, ...) alive in this process."""
    from transformers import TrainingArguments

    gc.collect()
    return {id(o) for o in gc.get_objects() if isinstance(o, TrainingArguments)}


def test_grpo_loads_the_reward_model_before_any_training_config(tmp_path, monkeypatch):
    import train.grpo
    from transformers.integrations import is_deepspeed_zero3_enabled

    before, seen, load = live_training_configs(), [], train.grpo.load_reward_model

    def load_and_observe(spec, **kwargs):
        seen.append((live_training_configs() - before, is_deepspeed_zero3_enabled()))
        return load(spec, **kwargs)

    monkeypatch.setattr(train.grpo, "load_reward_model", load_and_observe)
    trainer = train.grpo.main([*GRPO_SMOKE, "--set", f"output_dir={tmp_path}"])
    assert seen == [(set(), False)]
    assert id(trainer.args) in live_training_configs() - before  # the observation does see the run's GRPOConfig


DRIVER = """
import json, sys
import train.grpo
from transformers.integrations import is_deepspeed_zero3_enabled

load, seen = train.grpo.load_reward_model, {}

def load_and_observe(spec, **kwargs):
    seen["zero3_at_rm_load"] = is_deepspeed_zero3_enabled()
    rm = load(spec, **kwargs)
    seen["rm_partitioned"] = any(hasattr(p, "ds_id") for p in rm.model.parameters())
    return rm

train.grpo.load_reward_model = load_and_observe
trainer = train.grpo.main(sys.argv[1:])
seen["zero3_after"] = is_deepspeed_zero3_enabled()
seen["policy_partitioned"] = all(hasattr(p, "ds_id") for p in trainer.model.parameters())
print("OBSERVED " + json.dumps(seen))
"""


def launch_zero3(tmp_path: Path, target: list[str], args: list[str]) -> subprocess.CompletedProcess:
    """`accelerate launch` of `target` (a script or `-m module`) as a single-process ZeRO-3 job on CPU."""
    ds = {"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0,
                                "stage3_gather_16bit_weights_on_model_save": True},
          "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    (tmp_path / "accelerate.yaml").write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\n"
        f"deepspeed_config: {{deepspeed_config_file: {tmp_path / 'ds.json'}, zero3_init_flag: true}}\n"
        "num_machines: 1\nnum_processes: 1\nmachine_rank: 0\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(tmp_path / "accelerate.yaml"), "--main_process_port", str(port), *target, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@needs_deepspeed
def test_grpo_under_zero3_scores_with_a_whole_reward_model(tmp_path):
    (tmp_path / "driver.py").write_text(DRIVER)
    run = launch_zero3(tmp_path, [str(tmp_path / "driver.py")], [*GRPO_SMOKE, "--set", f"output_dir={tmp_path}"])
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [x for x in run.stdout.splitlines() if x.startswith("OBSERVED ")]
    assert json.loads(line.removeprefix("OBSERVED ")) == {
        "zero3_at_rm_load": False, "rm_partitioned": False, "zero3_after": True, "policy_partitioned": True}


@pytest.mark.slow
@needs_deepspeed
def test_rm_lora_merge_under_zero3_saves_the_whole_trained_model(tmp_path):
    from safetensors.torch import load_file

    from codescaler_rerank import RewardModel
    from codescaler_rerank.evaluation import evaluate_pairs, load_pairs

    synthetic_pairs(tmp_path / "train.jsonl", range(16))
    synthetic_pairs(tmp_path / "eval.jsonl", range(1000, 1008))
    out = tmp_path / "rm"
    overrides = {"output_dir": out, "train_pairs": tmp_path / "train.jsonl", "eval_pairs": tmp_path / "eval.jsonl",
                 "eval_problems": "null", "lora_r": 8, "save": "merged", "num_train_epochs": 1,
                 "per_device_train_batch_size": 4}
    run = launch_zero3(tmp_path, ["-m", "train.reward_model"], ["--config", str(CONFIGS / "rm_smoke.yaml"), *(
        arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}"))])
    assert run.returncode == 0, run.stderr[-3000:]
    base = load_file(out / "tiny-classifier" / "model.safetensors")
    merged = load_file(out / "model.safetensors")
    assert {k: v.shape for k, v in merged.items()} == {k: v.shape for k, v in base.items()}
    assert not all(merged[k].equal(base[k]) for k in base)  # the trained LoRA deltas and head are in it
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["pairwise_accuracy"] > metrics["before"]["pairwise_accuracy"]
    reloaded = RewardModel.from_pretrained(str(out), device="cpu")
    assert evaluate_pairs(load_pairs(tmp_path / "eval.jsonl"), reloaded).accuracy.mean == pytest.approx(
        metrics["after"]["pairwise_accuracy"])
