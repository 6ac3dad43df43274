"""RL reward adapters: same values as rerank(); TRL in a real GRPO run; verl and OpenRLHF called as those frameworks do.

verl and OpenRLHF need GPUs and Ray, so they are not installed: their reward files are called directly here;
test_rl_stacks.py calls them exactly as verl's reward loop and OpenRLHF's reward-function loader do.
"""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from codescaler_rerank import Reranker
from rl_cases import reference_rewards

PROMPTS = ["Write a Python function add(a, b).", "Write a Python function neg(x)."]
ANSWERS = {
    PROMPTS[0]: [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "Just add them.",
        "```python\ndef add(a, b):\n    return a + b\n```",  # a duplicate
        "```python\ndef add(a, b):\n    return b + a\n```\n```python\nprint(1)\n```",  # two blocks: the recipe says no
    ],
    PROMPTS[1]: ["```python\ndef neg(x):\n    return -x\n```", "```python\ndef neg(x)\n    return x\n```"],
}
FLAT = [(p, a) for p, answers in ANSWERS.items() for a in answers]


@pytest.fixture(scope="module")
def expected(tiny_rm):
    return reference_rewards(tiny_rm, ANSWERS)


def test_trl_reward_text_conversational_and_async(tiny_rm, expected):
    from codescaler_rerank.integrations.trl import AsyncCodeScalerReward, CodeScalerReward

    prompts, completions = [p for p, _ in FLAT], [a for _, a in FLAT]
    logged = {}
    text = CodeScalerReward(tiny_rm)(prompts, completions, log_metric=logged.__setitem__, trainer_state=None)
    assert text == pytest.approx(expected, abs=1e-5)
    assert text[1] == text[3] == text[5] == 0.0 and text[0] == text[2] > 0
    assert logged == {"codescaler_valid": pytest.approx(3 / 6)}
    conversational = CodeScalerReward(tiny_rm)(
        [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}] for p in prompts],
        [[{"role": "assistant", "content": a}] for a in completions],
    )
    assert conversational == pytest.approx(expected, abs=1e-5)
    assert asyncio.run(AsyncCodeScalerReward(tiny_rm)(prompts, completions)) == pytest.approx(expected, abs=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs the train extra")
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_trl_grpo_steps_log_the_reward(tiny_rm, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from codescaler_rerank.integrations.trl import AsyncCodeScalerReward
    from codescaler_rerank.testing import build_tiny_qwen3_causal_lm

    class Recording(AsyncCodeScalerReward):
        """Keeps what it returned, to compare with what the trainer logged."""

        returned: list[list[float]] = []

        async def __call__(self, prompts, completions, **kwargs):
            rewards = await super().__call__(prompts, completions, **kwargs)
            self.returned.append(rewards)
            return rewards

    policy, tokenizer = build_tiny_qwen3_causal_lm(tmp_path / "policy")
    reward = Recording(tiny_rm, mode="lenient")
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
        max_steps=2, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, bf16=False,
    )
    trainer = GRPOTrainer(
        model=policy, processing_class=tokenizer, reward_funcs=[reward], args=args,
        train_dataset=Dataset.from_dict({"prompt": PROMPTS * 2}),
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "rewards/Recording/mean" in entry]
    assert len(reward.returned) == 2 and len(logs) == 2
    for returned, entry in zip(reward.returned, logs):
        assert entry["rewards/Recording/mean"] == pytest.approx(sum(returned) / len(returned), abs=1e-5)
        assert "codescaler_valid" in entry


def test_verl_compute_score(tiny_qwen3_path, expected):
    from codescaler_rerank.integrations.verl_reward import compute_score, compute_score_batch

    rm = str(tiny_qwen3_path)
    single = [compute_score("codegen", a, None, extra_info={"prompt": p}, reward_model=rm)["score"] for p, a in FLAT]
    batch = [r["score"] for r in compute_score_batch(
        data_sources=["codegen"] * len(FLAT), solution_strs=[a for _, a in FLAT], ground_truths=[None] * len(FLAT),
        extra_infos=[{"question": p} for p, _ in FLAT], reward_model=rm,
    )]
    assert single == pytest.approx(expected, abs=1e-4) and batch == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError, match="extra_info"):
        compute_score("codegen", FLAT[0][1], None, extra_info={}, reward_model=rm)


def test_openrlhf_reward_func(tiny_qwen3_path, expected, monkeypatch):
    from codescaler_rerank.integrations import openrlhf_reward
    from codescaler_rerank.integrations.rewards import shared_reward_model

    monkeypatch.setenv("CODESCALER_RM", str(tiny_qwen3_path))
    shared_reward_model.cache_clear()
    templated = [f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n" for p, _ in FLAT]
    out = openrlhf_reward.reward_func(
        queries=[t + a for t, (_, a) in zip(templated, FLAT)], prompts=templated, labels=[p for p, _ in FLAT]
    )
    shared_reward_model.cache_clear()
    assert out["rewards"].tolist() == pytest.approx(expected, abs=1e-4)
    assert all(0 <= s <= 1 for s in out["scores"].tolist()) and out["scores"][1] == 0
    assert out["extra_logs"]["codescaler_valid"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]


COMMENTED = [
    "```python\ndef add(a, b):\n    return a + b\n```",
    "```python\ndef add(a, b):\n    # add the two numbers\n    return a + b\n```",
]


def test_rl_adapters_score_comment_variants_separately(tiny_rm, tiny_qwen3_path, monkeypatch):
    """RL dedup is exact (the recipe scores every RM input); inference's normalized dedup shares the score."""
    from codescaler_rerank.integrations import openrlhf_reward
    from codescaler_rerank.integrations.rewards import score_responses, shared_reward_model
    from codescaler_rerank.integrations.trl import CodeScalerReward
    from codescaler_rerank.integrations.verl_reward import compute_score_batch

    prompt = PROMPTS[0]
    direct = tiny_rm.score(prompt, [a.split("\n", 1)[1].rsplit("\n", 1)[0] for a in COMMENTED])
    assert direct[0] != pytest.approx(direct[1], abs=1e-6)  # the tiny RM tells them apart
    rl = score_responses(tiny_rm, [prompt] * 2, COMMENTED)
    assert [s.score for s in rl] == pytest.approx(direct, abs=1e-5) and rl[1].duplicate_of is None
    trl = CodeScalerReward(tiny_rm)([prompt] * 2, COMMENTED)
    verl = [r["score"] for r in compute_score_batch(["codegen"] * 2, COMMENTED, [None] * 2, [{"prompt": prompt}] * 2,
                                                    reward_model=str(tiny_qwen3_path))]
    monkeypatch.setenv("CODESCALER_RM", str(tiny_qwen3_path))
    shared_reward_model.cache_clear()
    openrlhf = openrlhf_reward.reward_func(queries=COMMENTED, prompts=[""] * 2, labels=[prompt] * 2)["rewards"]
    shared_reward_model.cache_clear()
    assert trl == pytest.approx([s.reward for s in rl], abs=1e-5) and trl[0] != pytest.approx(trl[1], abs=1e-6)
    assert verl == pytest.approx(trl, abs=1e-4) and openrlhf.tolist() == pytest.approx(trl, abs=1e-4)
    inference = {c.index: c for c in Reranker(None, tiny_rm).select(prompt, COMMENTED).candidates}
    assert inference[1].duplicate_of == 0 and inference[1].score == inference[0].score


RECIPE_CASES = [
    "```python\ndef add(a, b):\n    return a + b\n```\n```python\nprint(a",  # a fence cut at max_tokens: one match
    "~~~python\ndef add(a, b):\n    return a + b\n~~~",  # no ``` block for the recipe's regex
    "Text ````python\ndef add(a, b):\n    return a + b\n```",  # the regex finds the inner block
]


def test_rl_adapters_default_to_the_recipes_extraction(tiny_rm, tiny_qwen3_path, monkeypatch):
    """TRL, verl, OpenRLHF, score_responses and GRPO extract as the recipe does (`mode="paper"`), not as strict."""
    from codescaler_rerank.extraction import extract_code
    from codescaler_rerank.integrations import openrlhf_reward
    from codescaler_rerank.integrations.rewards import score_responses, shared_reward_model
    from codescaler_rerank.integrations.trl import CodeScalerReward
    from codescaler_rerank.integrations.verl_reward import compute_score_batch
    from train.grpo import GRPOPipelineConfig

    prompt, n = PROMPTS[0], len(RECIPE_CASES)
    paper = [extract_code(t, mode="paper") for t in RECIPE_CASES]
    strict = [extract_code(t, mode="strict") for t in RECIPE_CASES]
    assert [e.valid for e in paper] == [True, False, True] and [e.valid for e in strict] == [False, True, False]
    scored = score_responses(tiny_rm, [prompt] * n, RECIPE_CASES)
    assert [s.extraction for s in scored] == paper
    rewards = [s.reward for s in scored]
    assert rewards[0] > 0 and rewards[1] == 0 and rewards[2] > 0
    assert CodeScalerReward(tiny_rm)([prompt] * n, RECIPE_CASES) == pytest.approx(rewards, abs=1e-5)
    verl = [r["score"] for r in compute_score_batch(["codegen"] * n, RECIPE_CASES, [None] * n, [{"prompt": prompt}] * n,
                                                    reward_model=str(tiny_qwen3_path))]
    monkeypatch.setenv("CODESCALER_RM", str(tiny_qwen3_path))
    shared_reward_model.cache_clear()
    openrlhf = openrlhf_reward.reward_func(queries=RECIPE_CASES, prompts=[""] * n, labels=[prompt] * n)["rewards"]
    shared_reward_model.cache_clear()
    assert verl == pytest.approx(rewards, abs=1e-4) and openrlhf.tolist() == pytest.approx(rewards, abs=1e-4)
    config = GRPOPipelineConfig()
    assert (config.extraction_mode, config.dedup) == ("paper", "exact")
    with pytest.raises(ValueError, match="paper"):
        CodeScalerReward(tiny_rm, language="cpp")  # the recipe's rule is Python only: refused at construction
