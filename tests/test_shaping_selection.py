"""Validity-preserving shaping, deterministic selection, and dedup of identical programs."""

from __future__ import annotations

import math

import pytest

from codescaler_rerank import Candidate, Reranker, shape_reward
from codescaler_rerank.reranker import selection_key
from codescaler_rerank.reward_model import ScoredInput
from codescaler_rerank.shaping import softplus


@pytest.mark.parametrize("score", [-50.0, -2.0, 0.0, 0.5, 3.0, 40.0])
def test_valid_reward_is_softplus_of_score(score):
    assert shape_reward(score, True) == pytest.approx(math.log1p(math.exp(score)), rel=1e-12)
    assert shape_reward(score, True) > 0.0


@pytest.mark.parametrize("score", [None, -3.0, 0.0, 7.5, float("nan")])
def test_invalid_code_gets_zero(score):
    assert shape_reward(score, False) == 0.0


def test_softplus_does_not_overflow():
    assert softplus(1000.0) == 1000.0
    assert softplus(-1000.0) == 0.0 or softplus(-1000.0) < 1e-300


@pytest.mark.parametrize("score", [None, float("nan"), float("inf")])
def test_valid_candidate_needs_a_finite_score(score):
    with pytest.raises(ValueError, match="finite score"):
        shape_reward(score, True)


def _candidate(index, reward, score, code):
    return Candidate(index=index, text=code, code=code, language="python", valid=reward > 0, reason="ok",
                     score=score, reward=reward, rank=0)


def test_ties_break_on_score_then_length_then_index():
    pool = [
        _candidate(0, 1.0, 0.5, "x = 1  # longer"),
        _candidate(1, 1.0, 0.5, "x = 1"),
        _candidate(2, 1.0, 0.7, "y = 2 and much longer code"),
        _candidate(3, 2.0, 1.5, "z = 3 the best reward"),
        _candidate(4, 1.0, 0.5, "x = 2"),
        _candidate(5, 0.0, None, ""),
    ]
    assert [c.index for c in sorted(pool, key=selection_key)] == [3, 2, 1, 4, 0, 5]


class RecordingScorer:
    """A reward model stand-in that scores by code length and records what it was asked to score."""

    name = "length-scorer"

    def __init__(self, nan_for: str | None = None):
        self.calls: list[list[tuple[str, str]]] = []
        self.nan_for = nan_for

    def score_pairs(self, pairs):
        self.calls.append(list(pairs))
        return [ScoredInput(float("nan") if code == self.nan_for else len(code) / 10, len(code), False)
                for _, code in pairs]


ANSWERS = [
    "```python\ndef f(x):\n    return x + 1\n```",
    "Here you go:\n```python\ndef f(x):   # add one\n\n    return x+1\n```",  # same program, other spacing/comments
    "```python\ndef f(x):\n    return x + 2\n```",
    "Sorry, I can't do that.",
    "```python\ndef f(x) return x\n```",
]


def test_duplicates_are_scored_once_and_share_the_score():
    scorer = RecordingScorer()
    result = Reranker(reward_model=scorer).select("Add one to x.", ANSWERS)
    assert len(scorer.calls) == 1 and len(scorer.calls[0]) == 2  # two distinct valid programs
    by_index = {c.index: c for c in result.candidates}
    assert by_index[1].duplicate_of == 0 and by_index[1].score == by_index[0].score
    assert by_index[3].score is None and not by_index[3].valid and by_index[3].reward == 0.0
    assert by_index[4].reason == "syntax_error" and by_index[4].reward == 0.0
    assert result.usage.scored_programs == 2
    assert [c.rank for c in result.candidates] == [1, 2, 3, 4, 5]


def test_dedup_can_be_turned_off():
    scorer = RecordingScorer()
    Reranker(reward_model=scorer, dedup=False).select("Add one to x.", ANSWERS)
    assert len(scorer.calls[0]) == 3


def test_non_finite_score_marks_only_that_candidate():
    scorer = RecordingScorer(nan_for="def f(x):\n    return x + 2")
    result = Reranker(reward_model=scorer).select("Add one to x.", ANSWERS)
    bad = next(c for c in result.candidates if c.index == 2)
    assert not bad.valid and bad.reason == "score_not_finite" and bad.reward == 0.0 and bad.score is None
    assert result.best.valid and result.best.index == 0


def test_dedup_modes():
    """"exact" merges only identical code, "normalized" also layout/comment variants, "none" nothing."""
    same = [ANSWERS[0], ANSWERS[0], ANSWERS[1], ANSWERS[2]]  # 0 and 1 identical, 2 a comment/layout variant
    sent = {}
    for dedup in ("exact", "normalized", "none", True, False):
        scorer = RecordingScorer()
        result = Reranker(reward_model=scorer, dedup=dedup).select("Add one to x.", same)
        sent[dedup] = len(scorer.calls[0])
        dups = {c.index: c.duplicate_of for c in result.candidates}
        if dedup == "exact":
            assert dups == {0: None, 1: 0, 2: None, 3: None}
    assert sent == {"exact": 3, "normalized": 2, "none": 4, True: 2, False: 4}
    with pytest.raises(ValueError, match="dedup must be one of"):
        Reranker(reward_model=RecordingScorer(), dedup="fuzzy")
