"""The `train/` pipelines on CPU: curation over real sandboxed candidates, a tiny RM that learns, two GRPO steps."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs the train extra"),
    pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"),
]

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "train" / "configs"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_pipeline_has_help_and_its_configs_parse():
    from train.config import load_config
    from train.curate import CurateConfig
    from train.grpo import GRPOPipelineConfig
    from train.reward_model import RewardModelConfig

    for name in ("curate", "reward_model", "grpo"):
        out = subprocess.run([sys.executable, "-m", f"train.{name}", "--help"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
        assert "--config" in out and "config keys" in out
    kinds = {"curate": CurateConfig, "rm": RewardModelConfig, "grpo": GRPOPipelineConfig}
    for path in CONFIGS.glob("*.yaml"):
        load_config(kinds[path.stem.split("_")[0]], path)
    paper = load_config(GRPOPipelineConfig, CONFIGS / "grpo.yaml")
    assert (paper.num_generations, paper.learning_rate, paper.beta, paper.epsilon, paper.epsilon_high) == (
        8, 1e-6, 0.0, 0.2, 0.28)
    assert (paper.temperature, paper.top_p, paper.top_k, paper.extraction_mode) == (0.6, 0.95, 20, "paper")


def test_curation_labels_real_candidates_and_splits_by_problem(tmp_path):
    from codescaler_rerank.datasets import load_bundled, load_problems
    from train.curate import main

    summary = main(["--config", str(CONFIGS / "curate_smoke.yaml"), "--set", f"output_dir={tmp_path}"])
    train, held = read_jsonl(tmp_path / "train.jsonl"), read_jsonl(tmp_path / "eval.jsonl")
    assert summary["train"]["problems"] == ["CodePPM/float2bool", "CodePPM/int2bool"]
    assert summary["eval"]["problems"] == ["CodePPM/bool2float"]
    assert {p["problem_id"] for p in train}.isdisjoint(p["problem_id"] for p in held)
    bundled = {p.problem_id: p for p in load_bundled("codeppm")}
    for pair in train + held:
        assert (pair["prompt"], pair["chosen"], pair["rejected"]) == (
            pair["question_content"], pair["code_pos"], pair["code_neg"])
        problem = bundled[pair["problem_id"]]
        truth = dict(zip(map(normalize_code_py, problem.candidates), problem.labels))
        assert truth[normalize_code_py(pair["code_pos"])] is True  # the sandbox agrees with the bundled labels
        if pair["source"] == "same_problem":
            assert truth[normalize_code_py(pair["code_neg"])] is False
        else:  # augmentation: the rejected side was written for another problem
            assert normalize_code_py(pair["code_neg"]) not in truth
    same = [p for p in train if p["source"] == "same_problem"]
    cross = [p for p in train if p["source"] == "cross_problem"]
    assert len(same) == 2 * 16 and len(cross) == round(0.3 * 16) * 2
    assert len({(p["problem_id"], p["code_pos"], p["code_neg"]) for p in train}) == len(train)
    (problem,) = load_problems(tmp_path / "eval_problems.jsonl.gz")
    assert problem.labels is not None and len(problem.candidates) <= 16


def normalize_code_py(code: str) -> str:
    from codescaler_rerank.extraction import normalize_code

    return normalize_code(code, "python")


GOOD = ["return x + {k}", "y = x + {k}\n    return y", "return {k} + x"]
BAD = ["raise NotImplementedError({k})", "pass  # {k}", "print(x, {k})", "return None  # {k}"]


def synthetic_pairs(path: Path, seeds: range) -> None:
    """Pairs a tiny model can learn (the chosen answer adds, the rejected one does not), in varied forms so that an
    untrained model's preferences are mixed."""
    records = [{
        "question_content": f"Write a function f(x) that adds {k} to x.",
        "code_pos": "def f(x):\n    " + GOOD[k % len(GOOD)].format(k=k) + "\n",
        "code_neg": "def f(x):\n    " + BAD[k % len(BAD)].format(k=k) + "\n",
    } for k in seeds]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_rm_training_beats_the_untrained_model_and_saves_a_loadable_rm(tmp_path):
    from codescaler_rerank import RewardModel
    from codescaler_rerank.evaluation import evaluate_pairs, load_pairs
    from train.reward_model import main

    synthetic_pairs(tmp_path / "train.jsonl", range(64))
    synthetic_pairs(tmp_path / "eval.jsonl", range(1000, 1032))
    overrides = {"output_dir": tmp_path / "rm", "train_pairs": tmp_path / "train.jsonl",
                 "eval_pairs": tmp_path / "eval.jsonl", "eval_problems": "null"}
    metrics = main(["--config", str(CONFIGS / "rm_smoke.yaml"), *(
        arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}"))])
    before, after = metrics["before"]["pairwise_accuracy"], metrics["after"]["pairwise_accuracy"]
    assert after > before and after >= 0.9
    reloaded = RewardModel.from_pretrained(str(tmp_path / "rm"), device="cpu")
    assert evaluate_pairs(load_pairs(tmp_path / "eval.jsonl"), reloaded).accuracy.mean == pytest.approx(after)


def test_grpo_two_steps_log_the_codescaler_reward(tmp_path):
    from codescaler_rerank.integrations.trl import CodeScalerReward
    from train.grpo import main

    trainer = main(["--config", str(CONFIGS / "grpo_smoke.yaml"), "--set", f"output_dir={tmp_path}",
                    "--set", "trainer={use_cpu: true, log_completions: true}"])
    steps = [e for e in trainer.state.log_history if "rewards/AsyncCodeScalerReward/mean" in e]
    assert len(steps) == 2 and all("codescaler_valid" in e for e in steps)
    logged = trainer._logs
    (reward,) = trainer.reward_funcs
    again = CodeScalerReward(reward.reward_model, mode="lenient")(list(logged["prompt"]), list(logged["completion"]))
    assert list(logged["rewards"]["AsyncCodeScalerReward"]) == pytest.approx(again, abs=1e-5)
    assert json.loads((tmp_path / "log.json").read_text())["log_history"][0]["codescaler_valid"] == steps[0][
        "codescaler_valid"]


def test_hybrid_reward_executes_problems_with_tests_and_scores_the_others(tiny_rm):
    from codescaler_rerank.datasets import Problem
    from codescaler_rerank.integrations.trl import CodeScalerReward
    from train.grpo import HybridReward

    problems = [Problem(problem_id="add", problem="Write add(a, b).", tests="assert add(1, 2) == 3\n"),
                Problem(problem_id="free", problem="Write neg(x).")]
    completions = ["```python\ndef add(a, b):\n    return a + b\n```",
                   "```python\ndef add(a, b):\n    return a - b\n```",
                   "no code", "```python\ndef neg(x):\n    return -x\n```"]
    prompts = ["Write add(a, b)."] * 3 + ["Write neg(x)."]
    logged = {}
    rewards = HybridReward(tiny_rm, problems)(prompts, completions, problem_id=["add"] * 3 + ["free"],
                                              log_metric=logged.__setitem__)
    assert rewards[:3] == [1.0, 0.0, 0.0]
    assert rewards[3] == pytest.approx(CodeScalerReward(tiny_rm)(prompts[3:], completions[3:])[0])
    assert logged["execution_pass"] == pytest.approx(1 / 3) and logged["codescaler_valid"] == 1.0


def test_hybrid_reward_does_not_trust_in_sandbox_asserts(tiny_rm):
    """Tests that cannot become parent-judged calls give a forgeable verdict: those completions get the RM reward."""
    from codescaler_rerank.datasets import Problem
    from codescaler_rerank.integrations.trl import CodeScalerReward
    from train.grpo import HybridReward

    problems = [Problem(problem_id="add", problem="Write add(a, b).", tests="total = add(1, 2)\nassert total == 3\n")]
    completions = ["```python\ndef add(a, b):\n    return a + b\n```"]
    logged = {}
    rewards = HybridReward(tiny_rm, problems)(["Write add(a, b)."], completions, problem_id=["add"],
                                              log_metric=logged.__setitem__)
    assert rewards == pytest.approx(CodeScalerReward(tiny_rm)(["Write add(a, b)."], completions))
    assert rewards[0] != 1.0
    assert logged["execution_untrusted"] == 1.0 and logged["execution_pass"] == 0.0
