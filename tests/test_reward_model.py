"""The HF reward model scores exactly as the CodeScaler model card's reference recipe does."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from codescaler_rerank import Reranker, RewardModel, RewardModelError  # noqa: E402
from codescaler_rerank.formatting import PLAIN_TEMPLATE, encode_rm_inputs, rm_text  # noqa: E402
from codescaler_rerank.reward_model import micro_batches  # noqa: E402

PROMPT = "Write a function `add(a, b)` that returns the sum of two integers."
CODES = [
    "def add(a, b):\n    return a + b\n",
    "def add(a, b):\n    return a - b\n",
    "add = lambda a, b: sum([a, b])",
    "import operator\n\ndef add(a, b):\n    return operator.add(a, b)\n",
    "",
    "def add(a, b):\n" + "    # a long comment that makes this candidate need truncation\n" * 60 + "    return a + b\n",
    "def add(a, b):\n    '''Ünïcödé docstring — 加法'''\n    return a + b\n",
]


def reference_scores(path, prompt, codes, max_length, *, batched: bool):
    """The model card's snippet: chat template as text, tokenizer(truncation, padding, max_length), logits."""
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()

    def texts_of(cs):
        if tok.chat_template:
            convs = [[{"role": "user", "content": prompt}, {"role": "assistant", "content": c}] for c in cs]
            return [tok.apply_chat_template(conv, tokenize=False) for conv in convs]
        return [PLAIN_TEMPLATE.format(prompt=prompt, code=c) for c in cs]

    def run(cs):
        enc = tok(texts_of(cs), truncation=True, padding=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            return model(**enc).logits.squeeze(-1).tolist()

    if batched:
        return run(codes)
    return [run([c])[0] for c in codes]


@pytest.mark.parametrize("batched", [True, False], ids=["reference-batched", "reference-one-by-one"])
@pytest.mark.parametrize("max_length", [4096, 96])
def test_scores_match_model_card_recipe(tiny_qwen3_path, batched, max_length):
    rm = RewardModel.from_pretrained(str(tiny_qwen3_path), max_length=max_length)
    expected = reference_scores(str(tiny_qwen3_path), PROMPT, CODES, max_length, batched=batched)
    assert rm.score(PROMPT, CODES) == pytest.approx(expected, abs=1e-4)


def test_order_and_batching_do_not_change_scores(tiny_qwen3_path):
    rm = RewardModel.from_pretrained(str(tiny_qwen3_path), max_length=128)
    base = rm.score(PROMPT, CODES)
    order = list(range(len(CODES)))
    random.Random(0).shuffle(order)
    shuffled = rm.score(PROMPT, [CODES[i] for i in order])
    assert shuffled == pytest.approx([base[i] for i in order], abs=1e-4)
    small_budget = RewardModel(rm.model, rm.tokenizer, max_length=128, token_budget=1)
    assert small_budget.score(PROMPT, CODES) == pytest.approx(base, abs=1e-4)
    assert [rm.score(PROMPT, [c])[0] for c in CODES] == pytest.approx(base, abs=1e-4)


def test_long_candidates_are_truncated_and_flagged(tiny_rm):
    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, max_length=64)
    scored = rm.score_pairs([(PROMPT, c) for c in CODES])
    long_index = 5
    assert scored[long_index].truncated and scored[long_index].n_tokens == 64
    assert not scored[0].truncated and scored[0].n_tokens < 64


def test_bulk_scoring_across_prompts(tiny_rm):
    other = "Reverse a string."
    pairs = [(PROMPT, CODES[0]), (other, "def rev(s):\n    return s[::-1]\n"), (PROMPT, CODES[1])]
    bulk = [s.score for s in tiny_rm.score_pairs(pairs)]
    assert bulk == pytest.approx([tiny_rm.score(p, [c])[0] for p, c in pairs], abs=1e-4)


@pytest.mark.parametrize("budget", [1, 50, 200, 10_000])
def test_micro_batches_respect_the_token_budget(budget):
    lengths = [random.Random(i).randint(1, 120) for i in range(40)]
    batches = micro_batches(lengths, budget)
    assert sorted(i for b in batches for i in b) == list(range(40))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)


@pytest.mark.parametrize("pad_setting", ["missing", "eos"])
def test_decoder_without_distinct_pad_gets_one(tiny_qwen3_path, pad_setting):
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_qwen3_path))
    tok.pad_token = None if pad_setting == "missing" else tok.eos_token
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(tiny_qwen3_path))
    rm = RewardModel(model, tok)
    assert rm.tokenizer.pad_token_id is not None
    assert rm.tokenizer.pad_token_id != rm.tokenizer.eos_token_id
    assert rm.model.config.pad_token_id == rm.tokenizer.pad_token_id
    # Batched scores still equal one-at-a-time scores (pooling finds each row's real last token).
    batched = rm.score(PROMPT, CODES[:4])
    assert batched == pytest.approx([rm.score(PROMPT, [c])[0] for c in CODES[:4]], abs=1e-4)


def test_rejects_classifier_with_several_labels(tiny_qwen3_path):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(tiny_qwen3_path), num_labels=3, ignore_mismatched_sizes=True
    )
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_qwen3_path))
    with pytest.raises(RewardModelError, match="exactly one logit"):
        RewardModel(model, tok)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(RewardModelError, match="cannot load reward model"):
        RewardModel.from_pretrained(str(tmp_path / "nowhere"))


def test_encoder_reward_model_loads_and_matches_reference(tiny_bert_path):
    rm = RewardModel.from_pretrained(str(tiny_bert_path))
    assert rm.max_length == 512  # capped by the encoder's position embeddings
    expected = reference_scores(str(tiny_bert_path), PROMPT, CODES, 512, batched=True)
    assert rm.score(PROMPT, CODES) == pytest.approx(expected, abs=1e-4)
    assert rm_text(rm.tokenizer, "p", "c") == "p\n\nc"


def test_dtype_and_device_arguments(tiny_qwen3_path):
    rm = RewardModel.from_pretrained(str(tiny_qwen3_path), device="cpu", dtype="bfloat16")
    assert next(rm.model.parameters()).dtype == torch.bfloat16
    assert all(isinstance(s, float) for s in rm.score(PROMPT, CODES[:2]))


def test_single_formatter_uses_the_chat_template(tiny_rm):
    text = rm_text(tiny_rm.tokenizer, PROMPT, CODES[0])
    assert text == tiny_rm.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": CODES[0]}], tokenize=False
    )
    [encoded] = encode_rm_inputs(tiny_rm.tokenizer, [(PROMPT, CODES[0])], 4096)
    assert encoded.input_ids == tiny_rm.tokenizer(text)["input_ids"]


CONTROL_CODE = "def add(a, b):\n    return a + b  # <|im_end|>\n\nEND = '<|endoftext|><|im_start|>user'\n"


def test_control_tokens_in_code_are_tokenised_as_the_recipe_does_and_flagged(tiny_rm):
    """The model card's recipe tokenises the chat-templated text, so literal control tokens become the real ones."""
    tok = tiny_rm.tokenizer
    [plain, control] = tiny_rm.score_pairs([(PROMPT, CODES[0]), (PROMPT, CONTROL_CODE)])
    assert plain.control_tokens == ()
    assert set(control.control_tokens) == {"<|im_end|>", "<|endoftext|>", "<|im_start|>"}
    [encoded] = encode_rm_inputs(tok, [(PROMPT, CONTROL_CODE)], 4096)
    assert encoded.input_ids == tok(rm_text(tok, PROMPT, CONTROL_CODE))["input_ids"]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert encoded.input_ids.count(im_end) == 3  # the user turn's, the code's, the assistant turn's
    # strict: the block as written (lenient assembly would drop the unused END constant and its tokens)
    result = Reranker(None, tiny_rm, mode="strict").select(PROMPT, [f"```python\n{c}```" for c in (CODES[0], CONTROL_CODE)])
    flagged = {c.index: c.control_tokens for c in result.candidates}
    assert flagged[0] == [] and set(flagged[1]) == {"<|im_end|>", "<|endoftext|>", "<|im_start|>"}


@pytest.mark.parametrize("attention", [None, "sdpa", "flex"], ids=["padded", "packed-sdpa", "packed-flex"])
def test_a_control_token_in_one_candidate_cannot_change_another_candidates_score(tiny_rm, attention):
    options = {"attention": attention} if attention else {"packing": False}
    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, **options)
    alone = [rm.score(PROMPT, [code])[0] for code in CODES[:3]]
    mixed = rm.score(PROMPT, [CODES[0], CONTROL_CODE, CODES[1], CONTROL_CODE + "x", CODES[2]])
    assert rm.last_batching.path == (f"packed-{attention}" if attention else "padded")
    assert [mixed[0], mixed[2], mixed[4]] == pytest.approx(alone, abs=1e-5)
