"""Tree-packed scoring equals the padded path exactly (fp32, CPU), whatever the shapes."""

from __future__ import annotations

import contextlib

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from codescaler_rerank import RewardModel, RewardModelError  # noqa: E402
from codescaler_rerank.packing import (  # noqa: E402
    CPU_TOKEN_BUDGET,
    dense_mask,
    pack_row,
    plan_packed_rows,
    sdpa_row_tokens,
    supports_packing,
)

EXACT = 1e-5
MAX_LENGTH = 32  # lets the token budget go down to 32 tokens
VOCAB, PAD = 1024, 0  # the tiny tokenizer's size and pad id


@st.composite
def workloads(draw, max_groups: int = 3, max_candidates: int = 32, max_len: int = 40):
    """Token-id sequences of several prompts: shared prompt ids, random suffixes, some exact duplicates."""
    token = st.one_of(st.just(PAD), st.integers(0, VOCAB - 1))  # pads inside and at the end: pooling edge cases
    sequences, groups = [], []
    for group in range(draw(st.integers(1, max_groups))):
        prompt = draw(st.lists(token, max_size=max_len))
        own: list[list[int]] = []
        for _ in range(draw(st.integers(1, max_candidates))):
            if own and draw(st.integers(0, 4)) == 0:
                own.append(draw(st.sampled_from(own)))
            else:
                own.append(prompt + draw(st.lists(token, min_size=1, max_size=max_len)))
        sequences += own
        groups += [group] * len(own)
    return sequences, groups


def assert_packed_equals_padded(rm: RewardModel, attention: str, workload, budget: int) -> None:
    """Packed and padded scorers over the same model, both with `budget` tokens per forward pass, agree."""
    sequences, groups = workload
    packed = RewardModel(rm.model, rm.tokenizer, max_length=MAX_LENGTH, token_budget=budget, attention=attention)
    padded = RewardModel(rm.model, rm.tokenizer, max_length=MAX_LENGTH, token_budget=budget, packing=False)
    got = packed.score_token_ids(sequences, groups)
    assert packed.last_batching.path == f"packed-{attention}"
    assert got == pytest.approx(padded.score_token_ids(sequences), abs=EXACT)


@settings(max_examples=25, deadline=None)
@given(workload=workloads(max_len=24), budget=st.integers(MAX_LENGTH, 1000))
def test_packed_sdpa_equals_padded(tiny_rm, workload, budget):
    assert_packed_equals_padded(tiny_rm, "sdpa", workload, budget)


@settings(max_examples=5, deadline=None)
@given(workload=workloads(max_candidates=8, max_len=24), budget=st.integers(MAX_LENGTH, 1000))
def test_packed_flex_equals_padded(tiny_rm, workload, budget):
    assert_packed_equals_padded(tiny_rm, "flex", workload, budget)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("attention", ["sdpa", "flex"])
@settings(max_examples=150, deadline=None)
@given(workload=workloads(max_groups=6, max_len=120), budget=st.integers(MAX_LENGTH, 3000))
def test_packed_equals_padded_thoroughly(tiny_rm, attention, workload, budget):
    assert_packed_equals_padded(tiny_rm, attention, workload, budget)


@settings(max_examples=10, deadline=None)
@given(
    prompts=st.lists(st.text(max_size=80), min_size=1, max_size=3),
    codes=st.lists(st.text(max_size=160), min_size=1, max_size=10),
    max_length=st.integers(8, 96),
)
def test_text_pairs_with_truncation_and_duplicates(tiny_rm, prompts, codes, max_length):
    pairs = [(p, c) for p in prompts for c in codes + codes[:2]]
    packed = RewardModel(tiny_rm.model, tiny_rm.tokenizer, max_length=max_length, attention="sdpa")
    padded = RewardModel(tiny_rm.model, tiny_rm.tokenizer, max_length=max_length, packing=False)
    got, want = packed.score_pairs(pairs), padded.score_pairs(pairs)
    assert packed.last_batching.path == "packed-sdpa"
    assert [(s.n_tokens, s.truncated) for s in got] == [(s.n_tokens, s.truncated) for s in want]
    assert [s.score for s in got] == pytest.approx([s.score for s in want], abs=EXACT)


def test_layout_shares_each_prefix_and_isolates_groups():
    sequences = [[1, 2, 3, 4], [1, 2, 3, 5, 6], [7, 8], [7, 9]]
    [row] = plan_packed_rows(sequences, [0, 0, 1, 1], range(4), budget=100)
    inputs = pack_row(sequences, row, pad_id=None)
    assert inputs.input_ids == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert inputs.position_ids == [0, 1, 2, 3, 3, 4, 0, 1, 1]
    assert inputs.readout == [3, 5, 7, 8]
    assert row.tokens == len(inputs.input_ids)
    mask = dense_mask(torch.tensor(inputs.segment), torch.tensor(inputs.parent))[0, 0]
    assert mask[5].tolist() == [True, True, True, False, True, True, False, False, False]
    assert not mask[6:, :6].any() and not mask[:6, 6:].any()


@settings(max_examples=100, deadline=None)
@given(workload=workloads(max_groups=5, max_len=30), budget=st.integers(1, 200))
def test_rows_respect_the_budget_and_split_groups_repeating_the_prefix(workload, budget):
    sequences, groups = workload
    rows = plan_packed_rows(sequences, groups, range(len(sequences)), budget)
    assert sorted(i for row in rows for i in row.members) == list(range(len(sequences)))
    for row in rows:
        inputs = pack_row(sequences, row, pad_id=None)
        assert row.tokens == len(inputs.input_ids)
        assert row.tokens <= budget or len(row.members) == 1
        for part in row.parts:  # a split part still carries its prompt: each member restarts after it
            assert len({groups[i] for i in part}) == 1


def test_duplicates_are_encoded_once(tiny_rm):
    sequences = [[5, 6, 7], [5, 6, 8, 9], [5, 6, 7], [5, 6, 8, 9], [5, 6, 7]]
    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, attention="sdpa")
    scores = rm.score_token_ids(sequences, [0] * 5)
    assert scores[0] == scores[2] == scores[4] and scores[1] == scores[3]
    assert rm.last_batching.tokens == 2 + 1 + 2  # prefix [5, 6] once, then 7 and 8, 9


@contextlib.contextmanager
def out_of_memory_above(model, limit: int, error: type[Exception] = torch.cuda.OutOfMemoryError):
    """Fault injection: the base model raises an out-of-memory `error` on a forward pass over more than `limit`
    tokens (a RuntimeError as some accelerator stacks raise it)."""

    def hook(module, args, kwargs):
        ids = args[0] if args else kwargs["input_ids"]
        if ids.numel() > limit:
            raise error(f"injected: out of memory, {ids.numel()} tokens > {limit}")

    handle = getattr(model, model.base_model_prefix).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError, RuntimeError], ids=["cuda-oom", "runtime-oom"])
@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
def test_out_of_memory_splits_rows_and_loses_nothing(tiny_rm, packing, error):
    sequences = [[g] * 30 + [g, i] * (i + 1) for g in range(1, 4) for i in range(6)]
    groups = [s[0] for s in sequences]
    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, max_length=MAX_LENGTH, token_budget=4096, packing=packing)
    expected = rm.score_token_ids(sequences, groups)
    assert rm.last_batching.rows == 1 and rm.last_batching.oom_splits == 0
    path = rm.scoring_path
    with out_of_memory_above(rm.model, limit=100, error=error):
        assert rm.score_token_ids(sequences, groups) == pytest.approx(expected, abs=EXACT)
        assert rm.last_batching.oom_splits > 0 and rm.last_batching.rows > 1
        assert rm.scoring_path == path  # running out of memory is no reason to leave the packed path
        with pytest.raises(error, match="out of memory"):
            rm.score_token_ids([[1] * 101])
    # The halved budget is kept: the next call plans its rows within it.
    assert rm.token_budget < 4096
    assert rm.score_token_ids(sequences, groups) == pytest.approx(expected, abs=EXACT)
    assert rm.last_batching.oom_splits == 0 and rm.last_batching.budget == rm.token_budget


def tiny_decoder(model_type: str, tokenizer, **config):
    """A tiny random 1-logit classifier of another decoder architecture, sharing the test tokenizer."""
    config = transformers.AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tokenizer.pad_token_id, **config,
    )
    torch.manual_seed(0)
    return transformers.AutoModelForSequenceClassification.from_config(config).eval()


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_other_decoder_architectures_pack_exactly(tiny_rm, model_type):
    model = tiny_decoder(model_type, tiny_rm.tokenizer)
    packed = RewardModel(model, tiny_rm.tokenizer, max_length=MAX_LENGTH, attention="sdpa")
    padded = RewardModel(model, tiny_rm.tokenizer, max_length=MAX_LENGTH, packing=False)
    sequences = [[3, 4, 5, 6] + [7 + i] * i for i in range(1, 9)]
    assert packed.packing
    assert packed.score_token_ids(sequences, [0] * 8) == pytest.approx(padded.score_token_ids(sequences), abs=EXACT)


def test_sliding_window_decoders_stay_padded(tiny_rm):
    model = tiny_decoder("qwen3", tiny_rm.tokenizer, use_sliding_window=True, sliding_window=16, max_window_layers=1)
    assert not supports_packing(model)
    assert not RewardModel(model, tiny_rm.tokenizer, attention="flex").packing


def test_encoders_stay_padded(tiny_bert_path):
    rm = RewardModel.from_pretrained(str(tiny_bert_path))
    assert not rm.packing
    rm.score("p", ["a", "b"])
    assert rm.last_batching.path == "padded"
    with pytest.raises(RewardModelError, match="cannot be scored packed"):
        RewardModel.from_pretrained(str(tiny_bert_path), packing=True)


def test_cpu_defaults(tiny_rm):
    """On CPU `auto` scores padded (benchmarks/RESULTS.md: flex's compile costs more than it saves in a short
    process, packed SDPA is slower than padded on bulk); packing=True packs with SDPA, whose rows stay short."""
    assert (len(tiny_rm.tokenizer), tiny_rm.tokenizer.pad_token_id) == (VOCAB, PAD)  # what `workloads` draws
    assert tiny_rm.scoring_path == "padded" and not tiny_rm.packing and tiny_rm.attention is None
    assert tiny_rm.token_budget == CPU_TOKEN_BUDGET
    tiny_rm.score("p", ["a", "b"])
    assert tiny_rm.last_batching.path == "padded"
    sdpa = RewardModel(tiny_rm.model, tiny_rm.tokenizer, packing=True)
    assert sdpa.scoring_path == "packed-sdpa" and sdpa.attention == "sdpa"
    assert sdpa_row_tokens(sdpa.model.config) < sdpa.max_length == sdpa.token_budget  # short SDPA rows
    with pytest.raises(ValueError, match="attention must be one of"):
        RewardModel(tiny_rm.model, tiny_rm.tokenizer, attention="eager")
