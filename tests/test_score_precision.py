"""The score head runs in fp32 on every path: bf16 logits 3.01 and 3.02 no longer tie (issue 11 item 5).

The vLLM path is tested in test_vllm.py (`head_dtype`), with the same model.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rm_server import RewardModelServer  # noqa: E402
from tie_model import BF16_TIE, CODES, PROMPT, SCORES, build_tie_classifier  # noqa: E402

from codescaler_rerank import Reranker, RewardModel  # noqa: E402
from codescaler_rerank.remote_reward_model import RemoteRewardModel  # noqa: E402

EXACT = 1e-6


@pytest.fixture(scope="module")
def tie(tmp_path_factory):
    path = tmp_path_factory.mktemp("tie-rm")
    return str(path), build_tie_classifier(path)


def test_the_models_own_bf16_head_ties(tie):
    """What the model card's snippet gets in bf16: both answers score 3.015625, selection falls to a tie-break."""
    path, max_length = tie
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.bfloat16).eval()
    texts = [tok.apply_chat_template([{"role": "user", "content": PROMPT}, {"role": "assistant", "content": c}],
                                     tokenize=False) for c in CODES]
    enc = tok(texts, truncation=True, padding=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        assert model(**enc).logits[:, 0].float().tolist() == [BF16_TIE, BF16_TIE]


@pytest.mark.parametrize("attention", [None, "sdpa"], ids=["padded", "packed-sdpa"])
def test_fp32_head_separates_them(tie, attention):
    path, max_length = tie
    options = {"attention": attention} if attention else {"packing": False}
    rm = RewardModel.from_pretrained(path, dtype="bfloat16", max_length=max_length, **options)
    assert next(rm.model.parameters()).dtype == torch.bfloat16
    scores = rm.score(PROMPT, list(CODES))
    assert rm.last_batching.path == (f"packed-{attention}" if attention else "padded")
    assert scores == pytest.approx(SCORES, abs=EXACT) and scores[0] < scores[1]
    texts = [f"```python\n{code}```" for code in CODES]
    assert Reranker(None, rm).select(PROMPT, texts).best.index == 1  # not the tie-break's pick


def test_remote_scores_keep_fp32(tie):
    """A pooling server whose head runs in fp32 (vLLM's default for pooling models; here a real `RewardModel`):
    the scores cross JSON and the client intact."""
    path, max_length = tie
    rm = RewardModel.from_pretrained(path, dtype="bfloat16", max_length=max_length)
    with RewardModelServer(rm, path) as server:
        remote = RemoteRewardModel(server.url, tokenizer=path, max_length=max_length)
        assert remote.score(PROMPT, list(CODES)) == pytest.approx(SCORES, abs=EXACT)
