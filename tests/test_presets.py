"""RM presets in the one formatter: chosen from the model's name, a system prompt for Themis-RM, tiny real models."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from codescaler_rerank import Reranker, RewardModel  # noqa: E402
from codescaler_rerank.formatting import (  # noqa: E402
    CODESCALER,
    THEMIS,
    THEMIS_FUNCTIONAL_CORRECTNESS,
    RMPreset,
    encode_rm_inputs,
    preset_for,
    resolve_preset,
    rm_conversation,
    rm_text,
)

PROMPT = "Write a function that returns the square of x."
CODES = ["def square(x):\n    return x * x", "def square(x):\n    return x ** 2", "def square(x):\n    return x + x"]


@pytest.fixture(scope="module")
def themis_path(tiny_qwen3_path, tmp_path_factory):
    """The tiny Qwen3 RM saved under a Themis-RM-style name."""
    return shutil.copytree(tiny_qwen3_path, tmp_path_factory.mktemp("models") / "Themis-RM-tiny")


def test_the_preset_follows_the_name():
    assert preset_for("project-themis/Themis-RM-8B") is THEMIS and preset_for("/models/themis-rm-1.7b") is THEMIS
    assert preset_for("LARK-Lab/CodeScaler-8B") is CODESCALER and preset_for("/themis/CodeScaler-1.7B") is CODESCALER
    assert preset_for(None) is CODESCALER
    assert resolve_preset("themis") is THEMIS and resolve_preset(None, "Themis-RM-4B") is THEMIS
    custom = RMPreset("mine", system_prompt="Score security.")
    assert resolve_preset(custom, "Themis-RM-4B") is custom
    with pytest.raises(ValueError, match="unknown RM preset 'skywork'"):
        resolve_preset("skywork")


def test_themis_puts_the_criterion_in_a_system_message():
    assert rm_conversation("p", "c") == [{"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}]
    system, user, assistant = rm_conversation("p", "c", THEMIS)
    assert system == {"role": "system", "content": THEMIS_FUNCTIONAL_CORRECTNESS}
    assert "Functional Correctness" in system["content"] and (user["content"], assistant["content"]) == ("p", "c")


def test_from_pretrained_chooses_the_preset_and_scores_like_the_model_card(themis_path):
    rm = RewardModel.from_pretrained(str(themis_path))
    assert rm.preset is THEMIS and "preset='themis'" in repr(rm)
    tokenizer, model = rm.tokenizer, rm.model
    # the model card's recipe, with the system message before the user turn
    texts = [tokenizer.apply_chat_template(
        [{"role": "system", "content": THEMIS_FUNCTIONAL_CORRECTNESS}, {"role": "user", "content": PROMPT},
         {"role": "assistant", "content": code}], tokenize=False) for code in CODES]
    assert texts[0].startswith("<|im_start|>system\nYou are an experienced judge")
    batch = tokenizer(texts, truncation=True, padding=True, max_length=4096, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**batch).logits.squeeze(-1).tolist()
    assert rm.score(PROMPT, CODES) == pytest.approx(expected, abs=1e-4)
    packed = RewardModel.from_pretrained(str(themis_path), packing=True, attention="sdpa")
    assert packed.score(PROMPT, CODES) == pytest.approx(expected, abs=1e-4)  # the system prompt is shared prefix
    plain = RewardModel.from_pretrained(str(themis_path), preset="codescaler")
    assert plain.preset is CODESCALER
    assert plain.score(PROMPT, CODES) != pytest.approx(expected, abs=1e-4)  # the system prompt changes the input
    # and the whole pipeline scores with it
    result = Reranker(reward_model=rm).select(PROMPT, [f"```python\n{c}\n```" for c in CODES])
    assert sorted(c.score for c in result.candidates) == pytest.approx(sorted(expected), abs=1e-4)


def test_template_kwargs_and_the_plain_layout(tiny_qwen3_path, tiny_bert_path):
    rm = RewardModel.from_pretrained(str(tiny_qwen3_path), preset=RMPreset("x", template_kwargs={"criterion": "speed"}))
    rm.tokenizer.chat_template = "[{{ criterion }}]{% for m in messages %}{{ m['content'] }}|{% endfor %}"
    assert rm_text(rm.tokenizer, "p", "c", rm.preset) == "[speed]p|c|"
    [encoded] = rm.encode([("p", "c")])
    assert encoded.input_ids == rm.tokenizer("[speed]p|c|")["input_ids"]
    bert = RewardModel.from_pretrained(str(tiny_bert_path), preset="themis")  # no chat template: plain text
    plain = f"System:\n{THEMIS_FUNCTIONAL_CORRECTNESS}\n\nUser:\np\n\nAssistant:\nc"
    assert rm_text(bert.tokenizer, "p", "c", bert.preset) == plain
    assert rm_text(bert.tokenizer, "p", "c") == "p\n\nc"
    assert [e.input_ids for e in encode_rm_inputs(bert.tokenizer, [("p", "c")], 512, THEMIS)] == [
        e.input_ids for e in bert.encode([("p", "c")])]


def test_a_remote_rm_takes_the_preset_of_the_served_model(themis_path):
    from codescaler_rerank.remote_reward_model import RemoteRewardModel
    from rm_server import RewardModelServer

    local = RewardModel.from_pretrained(str(themis_path))
    with RewardModelServer(local, str(themis_path)) as server:
        remote = RemoteRewardModel(server.url)
        assert remote.preset is THEMIS
        assert remote.score(PROMPT, CODES) == pytest.approx(local.score(PROMPT, CODES), abs=1e-5)
