"""End to end: sample (static or a real HTTP server), extract, score with a real tiny RM, select."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("torch")

from codescaler_rerank import RerankResult, Reranker, StaticGenerator, rerank  # noqa: E402
from codescaler_rerank.reranker import selection_key  # noqa: E402

PROMPT = "Write a Python function `is_even(n)` that returns True when n is even."
RESPONSES = [
    "Sure! Here is the function:\n\n```python\ndef is_even(n):\n    return n % 2 == 0\n```\n\nIt uses the modulo operator.",
    "```py\ndef is_even(n):\n    return not n & 1\n```",
    "I think the answer is that even numbers are divisible by two.",
    "```python\ndef is_even(n)\n    return n % 2 == 0\n```",
    "<think>Use modulo.</think>\n```python\ndef is_even(n):\n    if n % 2:\n        return False\n    return True\n```",
    "",
]


def test_select_ranks_by_shaped_reward(tiny_rm):
    result = Reranker(reward_model=tiny_rm).select(PROMPT, RESPONSES)
    assert isinstance(result, RerankResult)
    assert len(result.candidates) == len(RESPONSES)
    assert result.candidates == sorted(result.candidates, key=selection_key)
    assert [c.rank for c in result.candidates] == list(range(1, len(RESPONSES) + 1))
    assert result.best is result.candidates[0] and result.best.valid
    valid = {c.index for c in result.candidates if c.valid}
    assert valid == {0, 1, 4}
    # Invalid answers are never scored and rank after every valid one.
    for c in result.candidates:
        if c.index not in valid:
            assert c.score is None and c.reward == 0.0 and c.rank > len(valid)
    # Scores are exactly the RM's scores of the extracted code.
    codes = {c.index: c.code for c in result.candidates if c.valid}
    raw = tiny_rm.score(PROMPT, [codes[i] for i in sorted(codes)])
    assert [c.score for c in sorted(result.candidates, key=lambda c: c.index) if c.valid] == pytest.approx(raw, abs=1e-5)
    assert result.reward_model == tiny_rm.name
    assert result.usage.scored_programs == 3 and result.usage.scored_tokens > 0
    assert result.timings.score > 0 and result.timings.total >= result.timings.score


def test_strict_mode_invalidates_answers_without_exactly_one_block(tiny_rm):
    two_blocks = "```python\nx = 1\n```\nand\n```python\ny = 2\n```"
    result = Reranker(reward_model=tiny_rm, mode="strict").select(PROMPT, [RESPONSES[0], two_blocks])
    by_index = {c.index: c for c in result.candidates}
    assert by_index[0].valid and by_index[1].reason == "multiple_code_blocks" and by_index[1].code == ""


def test_rerank_with_a_static_generator_and_the_convenience_function(tiny_qwen3_path, tiny_rm):
    reranker = Reranker(StaticGenerator(RESPONSES), tiny_rm)
    result = reranker.rerank(PROMPT, n=3)
    assert len(result.candidates) == 3
    once = rerank(PROMPT, n=3, generator=StaticGenerator(RESPONSES), reward_model=str(tiny_qwen3_path))
    assert [c.score for c in once.candidates] == pytest.approx([c.score for c in result.candidates], abs=1e-5)


def test_async_twins_give_the_same_ranking(tiny_rm):
    reranker = Reranker(StaticGenerator(RESPONSES), tiny_rm)

    async def both():
        return await asyncio.gather(reranker.arerank(PROMPT, n=6), reranker.aselect(PROMPT, RESPONSES))

    a, b = asyncio.run(both())
    sync = reranker.select(PROMPT, RESPONSES)
    assert [c.index for c in a.candidates] == [c.index for c in b.candidates] == [c.index for c in sync.candidates]


def test_language_detection_and_other_languages(tiny_rm):
    cpp = "```cpp\n#include <vector>\nint sum(const std::vector<int>& v) { int s = 0; for (int x : v) s += x; return s; }\n```"
    result = Reranker(reward_model=tiny_rm, language=None).select("Sum a vector in C++.", [cpp, "no code"])
    assert result.best.language == "cpp" and result.best.valid


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"mode": "fuzzy"}, ValueError),
        ({"language": "cobol-2099"}, ValueError),
    ],
)
def test_bad_configuration_is_a_clear_error(tiny_rm, kwargs, error):
    with pytest.raises(error):
        Reranker(reward_model=tiny_rm, **kwargs)


def test_bad_calls_are_clear_errors(tiny_rm):
    reranker = Reranker(reward_model=tiny_rm)
    with pytest.raises(ValueError, match="no candidates"):
        reranker.select(PROMPT, [])
    with pytest.raises(TypeError, match="list of strings"):
        reranker.select(PROMPT, "def f(): pass")
    with pytest.raises(ValueError, match="no generator"):
        reranker.rerank(PROMPT)
    with pytest.raises(ValueError, match="not supported"):
        Reranker(reward_model="grpc://somewhere:1234")
    with pytest.raises(ValueError, match="unknown generator spec"):
        Reranker("telepathy:model", tiny_rm)


def test_huge_and_hostile_candidates_do_not_sink_the_batch(tiny_rm):
    long = "```python\n" + "x = 1\n" * 5_000 + "```"  # 30 kB: parses, but is longer than the RM's max_length
    too_long = "```python\n" + "x = 1\n" * 50_000 + "```"  # past the extraction's counted size limit
    hostile = ["\x00\x01\x02", long, "\ud800 lone surrogate", RESPONSES[0], too_long]
    result = Reranker(reward_model=tiny_rm).select(PROMPT, hostile)
    by_index = {c.index: c for c in result.candidates}
    assert by_index[1].valid and by_index[1].truncated  # scored on its first max_length tokens, and flagged
    assert by_index[3].valid
    assert not by_index[0].valid and not by_index[2].valid
    assert not by_index[4].valid and by_index[4].reason == "too_long" and by_index[4].score is None


def test_zero_completions_is_a_typed_error_naming_the_failures(tiny_rm):
    import pickle

    from codescaler_rerank import GenerationError, GenerationFailure, GenerationOutput
    from codescaler_rerank.results import NoCandidatesError

    failures = [GenerationFailure(index=i, error=f"Timeout: sample {i} too slow") for i in range(5)]
    with pytest.raises(NoCandidatesError) as info:
        Reranker(reward_model=tiny_rm).rank_output(PROMPT, GenerationOutput(completions=[], failures=failures))
    exc = info.value
    assert isinstance(exc, GenerationError) and exc.failures == failures
    assert str(exc).startswith("no completion to rank: 5 failed (sample 0: Timeout: sample 0 too slow;")
    assert str(exc).endswith("; and 2 more)")
    assert pickle.loads(pickle.dumps(exc)).failures == failures
    with pytest.raises(NoCandidatesError, match="^no completion to rank$"):
        Reranker(reward_model=tiny_rm).rank_output(PROMPT, GenerationOutput(completions=[]))


def test_select_many_matches_select_in_one_call(tiny_rm):
    class Counting:
        def __init__(self, model):
            self.model, self.name, self.calls = model, model.name, 0

        def score_pairs(self, pairs):
            self.calls += 1
            return self.model.score_pairs(pairs)

    scorer = Counting(tiny_rm)
    requests = [(PROMPT, RESPONSES), ("Write is_odd(n).", RESPONSES[:3])]
    many = Reranker(reward_model=scorer).select_many(requests)
    assert scorer.calls == 1
    for (prompt, candidates), got in zip(requests, many):
        alone = Reranker(reward_model=tiny_rm).select(prompt, candidates)
        assert [c.index for c in got.candidates] == [c.index for c in alone.candidates]
        assert [c.score for c in got.candidates] == pytest.approx([c.score for c in alone.candidates], abs=1e-5)
    assert Reranker(reward_model=scorer).select_many([]) == [] and scorer.calls == 1
