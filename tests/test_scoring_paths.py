"""Scoring paths: the probe and the fallback flex -> sdpa -> padded, bucketed flex rows, warm-up, thread safety."""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from codescaler_rerank import RewardModel  # noqa: E402
from codescaler_rerank import scoring_paths  # noqa: E402
from codescaler_rerank.packing import ROW_BUCKET, bucket_floor, bucket_length  # noqa: E402
from codescaler_rerank.scoring_paths import DISPATCH_ATTENTION, candidate_paths, compiled_graphs  # noqa: E402

EXACT = 1e-5
CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object only: nothing runs on CUDA here
SEQUENCES = [[7, 8, 9, 10] + [11 + i] * (3 * i + 1) for i in range(6)] + [[20, 21] + [22] * 40, [20, 21, 23]]
GROUPS = [0] * 6 + [1, 1]


@pytest.fixture(scope="module")
def padded_scores(tiny_rm):
    return RewardModel(tiny_rm.model, tiny_rm.tokenizer, packing=False).score_token_ids(SEQUENCES, GROUPS)


@pytest.mark.parametrize(
    ("packing", "attention", "device", "paths"),
    [
        (None, "auto", CUDA, ["packed-flex", "packed-sdpa", "padded"]),
        (None, "auto", CPU, ["padded"]),
        (True, "auto", CPU, ["packed-sdpa", "padded"]),
        (None, "flex", CPU, ["packed-flex", "padded"]),
        (None, "flex", CUDA, ["packed-flex", "packed-sdpa", "padded"]),
        (None, "sdpa", CUDA, ["packed-sdpa", "padded"]),
        (False, "flex", CUDA, ["padded"]),
    ],
)
def test_paths_to_try(packing, attention, device, paths):
    assert candidate_paths(packing, attention, device, packable=True) == paths
    assert candidate_paths(packing, attention, device, packable=False) == ["padded"]


def test_transformers_below_the_floor_scores_padded(tiny_rm, monkeypatch):
    monkeypatch.setattr(scoring_paths, "transformers_version", lambda: (4, 55))
    assert candidate_paths(None, "flex", CUDA, packable=True) == ["padded"]
    with pytest.warns(RuntimeWarning, match=r"packed scoring needs transformers>=4\.56 \(installed: "):
        rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, packing=True)
    assert rm.scoring_path == "padded"


def break_flex(monkeypatch):
    """Failure injection: building a FlexAttention block mask raises, as a missing Triton or a failed compile does."""
    flex = pytest.importorskip("torch.nn.attention.flex_attention")

    def fail(*args, **kwargs):
        raise RuntimeError("injected: flex attention cannot compile here")

    monkeypatch.setattr(flex, "create_block_mask", fail)


def test_a_flex_failure_at_the_probe_falls_back_with_one_warning(tiny_rm, padded_scores, monkeypatch):
    break_flex(monkeypatch)
    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, attention="flex")
    assert rm.scoring_path == "packed-flex"  # not probed yet
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = rm.score_token_ids(SEQUENCES, GROUPS)
        rm.score_token_ids(SEQUENCES, GROUPS)
    [warning] = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert "packed-flex scoring failed on cpu (RuntimeError: injected: flex attention cannot compile here)" in str(
        warning.message
    )
    assert "scoring with padded" in str(warning.message)
    assert rm.scoring_path == "padded" and rm.last_batching.path == "padded" and not rm.packing
    assert scores == pytest.approx(padded_scores, abs=EXACT)


def test_a_flex_failure_after_the_probe_rescores_the_call(tiny_rm, padded_scores, monkeypatch):
    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, attention="flex")
    assert rm.score_token_ids(SEQUENCES[:3], GROUPS[:3]) == pytest.approx(padded_scores[:3], abs=EXACT)
    assert rm.last_batching.path == "packed-flex"
    break_flex(monkeypatch)
    with pytest.warns(RuntimeWarning, match=r"packed-flex scoring failed .*injected.*; scoring with padded"):
        scores = rm.score_token_ids(SEQUENCES, GROUPS)
    assert rm.last_batching.path == "padded"
    assert scores == pytest.approx(padded_scores, abs=EXACT)


def test_a_packed_path_that_disagrees_with_padded_is_dropped(tiny_rm, padded_scores):
    """Fault injection: the base model's output is shifted whenever it gets a packed (4-D) mask."""

    def corrupt(module, args, kwargs, output):
        if kwargs["attention_mask"].dim() == 4:
            output.last_hidden_state.add_(1.0)
        return output

    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, attention="sdpa")
    handle = getattr(rm.model, rm.model.base_model_prefix).register_forward_hook(corrupt, with_kwargs=True)
    try:
        with pytest.warns(RuntimeWarning, match=r"packed-sdpa scoring failed on cpu \(its scores differ from padded"):
            scores = rm.score_token_ids(SEQUENCES, GROUPS)
    finally:
        handle.remove()
    assert rm.scoring_path == "padded"
    assert scores == pytest.approx(padded_scores, abs=EXACT)


def test_the_attention_implementation_is_set_once(tiny_rm):
    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, attention="flex")
    assert rm.model.config._attn_implementation == DISPATCH_ATTENTION
    rm.score_token_ids(SEQUENCES, GROUPS)
    assert rm.model.config._attn_implementation == DISPATCH_ATTENTION


def test_bucket_lengths():
    lengths = sorted({bucket_length(n) for n in range(1, 40_000)})
    assert lengths[:3] == [ROW_BUCKET, 2 * ROW_BUCKET, 3 * ROW_BUCKET]
    assert len([n for n in lengths if n <= 32768]) <= 48  # few shapes to compile up to the largest CUDA budget
    for n in range(1, 40_000):
        assert n <= bucket_length(n) < n + max(ROW_BUCKET, n / 8)  # under one bucket or 12.5 % of padding
    for budget in range(ROW_BUCKET, 40_000, 7):
        floor = bucket_floor(budget)
        assert floor <= budget and bucket_length(floor) == floor and bucket_length(floor + 1) > budget


def test_flex_rows_are_padded_to_buckets_and_warm_up_compiles_them_all(tiny_rm, padded_scores):
    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, max_length=256, attention="flex", token_budget=700)
    warm = rm.warmup()
    assert warm.path == "packed-flex" and warm.seconds > 0 and warm.compiled_graphs >= 0
    widths = []
    handle = getattr(rm.model, rm.model.base_model_prefix).register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        graphs = compiled_graphs()
        scores = rm.score_token_ids(SEQUENCES, GROUPS)
        for k in range(1, 12):  # rows of many lengths, some splitting the budget
            rm.score_token_ids([s + [30 + k] * (40 * k) for s in SEQUENCES], GROUPS)
        assert compiled_graphs() == graphs  # after warm-up, no new lengths to compile
    finally:
        handle.remove()
    assert scores == pytest.approx(padded_scores, abs=EXACT)
    assert set(widths) <= {bucket_length(w) for w in widths} and all(w % ROW_BUCKET == 0 for w in widths)
    assert max(widths) <= bucket_floor(700) < 700


JOBS = [
    [(f"Prompt {i}: " + "write it " * i, f"def f{i}(x):\n" + "    x += 1\n" * (5 * j + i) + "    return x\n")
     for j in range(4)]
    for i in range(8)
]  # 8 callers; long candidates are truncated at max_length 96, short ones not


@pytest.mark.parametrize("attention", ["flex", "sdpa"])
def test_eight_threads_scoring_at_once_get_the_serial_scores(tiny_rm, attention):
    rm = RewardModel(tiny_rm.model, tiny_rm.tokenizer, max_length=96, attention=attention)
    padded = RewardModel(tiny_rm.model, tiny_rm.tokenizer, max_length=96, packing=False)  # the same model
    serial = [[(s.score, s.n_tokens, s.truncated) for s in padded.score_pairs(pairs)] for pairs in JOBS]
    assert any(t for job in serial for _, _, t in job) and not all(t for job in serial for _, _, t in job)
    start = threading.Barrier(len(JOBS))

    def caller(i: int) -> list[list[tuple[float, int, bool]]]:
        scorer = padded if i % 4 == 3 else rm  # two of the eight share the model through a padded scorer
        start.wait()
        return [[(s.score, s.n_tokens, s.truncated) for s in scorer.score_pairs(JOBS[i])] for _ in range(3)]

    with ThreadPoolExecutor(len(JOBS)) as pool:
        results = list(pool.map(caller, range(len(JOBS))))
    assert rm.scoring_path == f"packed-{attention}"
    for want, runs in zip(serial, results):
        for got in runs:
            assert [(n, t) for _, n, t in got] == [(n, t) for _, n, t in want]
            assert [s for s, _, _ in got] == pytest.approx([s for s, _, _ in want], abs=EXACT)
