"""Adaptive N: `rerank(prompt, n, target=...)` samples in waves from a real OpenAI-compatible server (litellm)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

pytest.importorskip("torch")

from codescaler_rerank import Reranker  # noqa: E402
from codescaler_rerank.adaptive import wave_sizes  # noqa: E402
from codescaler_rerank.calibration import Calibrator  # noqa: E402
from openai_server import OpenAIServer  # noqa: E402

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="needs the litellm extra"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

PROMPT = "Write f()."
PROSE = "I would rather not."
CODES = ["def f():\n    return 1", "def f():\n    return 22"]


class CountingScorer:
    """The tiny RM, recording how many programs each scoring call got."""

    def __init__(self, rm) -> None:
        self.rm, self.name, self.calls = rm, rm.name, []

    def score_pairs(self, pairs):
        self.calls.append(len(pairs))
        return self.rm.score_pairs(pairs)


@pytest.fixture
def setup(tiny_rm):
    """Answers cycling on a real server: prose, except a weaker program at sample 1 and a stronger one at sample 5
    (by the tiny RM's scores); a calibrator giving the weaker 0.1 and the stronger 0.95."""
    low, high = sorted(zip(tiny_rm.score(PROMPT, CODES), CODES))
    answers = [PROSE] * 16
    answers[1], answers[5] = f"```python\n{low[1]}\n```", f"```python\n{high[1]}\n```"
    calibrator = Calibrator(method="isotonic", xs=[low[0], high[0]], ys=[0.1, 0.95])
    from codescaler_rerank.generators.litellm_generator import LiteLLMGenerator

    with OpenAIServer(answers) as server:
        generator = LiteLLMGenerator("openai/ok", api_base=server.base_url, api_key="unused", num_retries=0)
        scorer = CountingScorer(tiny_rm)
        yield server, Reranker(generator, scorer, calibration=calibrator), scorer


def test_wave_sizes():
    assert wave_sizes(16) == [2, 4, 8, 16] and wave_sizes(12) == [2, 4, 8, 12]
    assert wave_sizes(1) == [1] and wave_sizes(2) == [2] and wave_sizes(3) == [2, 3]
    with pytest.raises(ValueError):
        wave_sizes(0)


def test_stops_at_the_first_wave_whose_pick_reaches_the_target(setup):
    server, reranker, scorer = setup
    result = reranker.rerank(PROMPT, n=16, target=0.9)
    assert result.samples == 8 and len(result.candidates) == 8  # waves of 2, 2 and 4 samples
    assert [body["n"] for body in server.chat_requests()] == [2, 2, 4]
    assert result.best.index == 5 and result.confidence == pytest.approx(0.95)
    assert scorer.calls == [1, 1]  # each wave scores only its new programs
    assert result.usage.completion_tokens == sum(len(c.text.split()) for c in result.candidates)
    t = result.timings
    assert t.total == pytest.approx(t.generate + t.extract + t.score + t.select) and t.generate > 0


def test_runs_to_n_when_the_target_is_never_reached(setup):
    server, reranker, _ = setup
    result = reranker.rerank(PROMPT, n=16, target=0.99)
    assert result.samples == 16 and len(result.candidates) == 16
    assert [body["n"] for body in server.chat_requests()] == [2, 2, 4, 8]
    assert result.best.index == 5 and [c.rank for c in result.candidates] == list(range(1, 17))
    fixed = reranker.rerank(PROMPT, n=4)
    assert fixed.samples == 4 and fixed.confidence is not None


def test_async_waves_and_abstention(setup, tiny_rm):
    server, reranker, _ = setup
    result = asyncio.run(reranker.arerank(PROMPT, n=16, target=0.9, seed=7))
    assert result.samples == 8 and [body["n"] for body in server.chat_requests()] == [2, 2, 4]
    assert [body["seed"] for body in server.chat_requests()] == [7, 8, 9]  # a seeded backend gets new samples
    server.reset()
    strict = Reranker(reranker.generator, tiny_rm, calibration=reranker.selection.calibrator, min_confidence=0.99)
    result = strict.rerank(PROMPT, n=16, target=0.9)
    assert result.samples == 8 and result.abstained  # stopped at the target, but below min_confidence


def test_target_needs_a_calibration(tiny_rm):
    from codescaler_rerank import StaticGenerator

    with pytest.raises(ValueError, match="needs a calibration"):
        Reranker(StaticGenerator([PROSE]), tiny_rm, calibration=None).rerank(PROMPT, n=4, target=0.5)
    with pytest.raises(ValueError, match="target must be"):
        Reranker(StaticGenerator([PROSE]), tiny_rm, calibration=Calibrator(method="platt")).rerank(
            PROMPT, n=4, target=1.5)
