"""Ray for bulk work: a Ray Data scorer (an actor pool, one reward model per actor) and a Ray-task `run_many`.

Scoring a dataset of rollouts with two actors (one per GPU: add `num_gpus=1`)::

    import ray
    from codescaler_rerank.integrations.ray import RewardScorer, score_dataset

    ds = ray.data.read_json("rollouts.jsonl")           # rows {"prompt": str, "response": str} or "responses": [...]
    scored = score_dataset(ds, "LARK-Lab/CodeScaler-8B", actors=2, num_gpus=1)
    # the same as: ds.map_batches(RewardScorer, fn_constructor_kwargs={"reward_model": ...}, batch_format="pandas",
    #                             compute=ray.data.ActorPoolStrategy(size=2), batch_size=64, num_gpus=1)

A local path as `reward_model` must exist on every node. Ray Data keeps row order only with
`DataContext.get_current().execution_options.preserve_order = True`; the input columns travel with each row.

Each batch goes through the library's one reward path (`integrations.rewards.score_responses`: extraction, dedup,
the RM formatter, shaping), so scores equal the single-process ones. Sandbox labelling across a cluster:
`run_many(jobs, chunk_size=64)` has the signature and results of `execution.run_many`. `select_jsonl` is the
CLI's `select` with its chunks of lines ranked on a pool of actors (`codescaler-rerank select --ray K`).
"""

from __future__ import annotations

import collections
import math
from itertools import islice
from typing import Any, BinaryIO, Sequence, TextIO

from .._deps import require
from ..execution import ExecutionResult, Job
from ..execution import run_many as run_many_local
from ..reward_model import DEFAULT_REWARD_MODEL
from ..jsonl_select import _dump, _numbered_lines, _rank_chunk
from .rewards import score_responses

OUTPUT_COLUMNS = ("score", "reward", "valid", "reason", "code", "error")


class RewardScorer:
    """A callable class for `Dataset.map_batches(RewardScorer, batch_format="pandas", concurrency=K, ...)`.

    Each actor loads one reward model from `reward_model` (any spec `load_reward_model` takes; `rm_kwargs` go to
    it). A row has a `prompt` and either a `response` (one answer: the output columns hold one value) or
    `responses` (a list: the output columns hold lists, one item per answer). Rows with the same prompt form one
    group for dedup. Added columns: `score` (raw, None when not scored), `reward` (shaped), `valid`, `reason`,
    `code` (what the RM saw) and `error` (None, or why the row could not be scored). Rows are never dropped: a row
    that is malformed, or whose scoring fails when its batch is retried row by row, gets `error` and None values.
    """

    def __init__(self, reward_model: Any = DEFAULT_REWARD_MODEL, *, language: str | None = "python",
                 mode: str = "paper", dedup: str | bool = "exact", **rm_kwargs: Any) -> None:
        from ..specs import load_reward_model

        self.scorer = load_reward_model(reward_model, **rm_kwargs)
        self.language = language
        self.mode = mode
        self.dedup = dedup

    def __call__(self, batch: Any) -> Any:
        """The batch (a pandas DataFrame) with the output columns added, same rows in the same order."""
        rows = [_parse_row(batch, i) for i in range(len(batch))]
        good = [i for i, row in enumerate(rows) if not isinstance(row, str)]
        outputs: list[dict[str, Any]] = [_error_row(row) if isinstance(row, str) else {} for row in rows]
        try:
            scored = self._score([rows[i] for i in good])
        except Exception:  # one bad row must not sink the batch: find it row by row
            scored = [self._score_or_error(rows[i]) for i in good]
        for i, out in zip(good, scored):
            outputs[i] = out
        pd = require("pandas", "ray")
        result = batch.copy()
        for column in OUTPUT_COLUMNS:  # object columns keep None as None (not NaN) and lists as lists
            result[column] = pd.Series([out[column] for out in outputs], index=batch.index, dtype=object)
        return result

    def _score_or_error(self, row: tuple[str, list[str], bool]) -> dict[str, Any]:
        try:
            return self._score([row])[0]
        except Exception as exc:
            return _error_row(f"{type(exc).__name__}: {exc}")

    def _score(self, rows: Sequence[tuple[str, list[str], bool]]) -> list[dict[str, Any]]:
        """Output columns of well-formed rows, all scored in one reward-model call."""
        prompts = [prompt for prompt, responses, _ in rows for _ in responses]
        responses = [r for _, rs, _ in rows for r in rs]
        scored = iter(score_responses(self.scorer, prompts, responses, language=self.language, mode=self.mode,
                                      dedup=self.dedup))
        outputs = []
        for _, rs, many in rows:
            items = [next(scored) for _ in rs]
            columns = {
                "score": [s.score for s in items], "reward": [s.reward for s in items],
                "valid": [s.valid for s in items], "reason": [s.reason for s in items],
                "code": [s.extraction.code for s in items],
            }
            outputs.append({**(columns if many else {k: v[0] for k, v in columns.items()}), "error": None})
        return outputs


def score_dataset(dataset: Any, reward_model: Any = DEFAULT_REWARD_MODEL, *, actors: int = 1, batch_size: int = 64,
                  num_gpus: float = 0, num_cpus: float = 1, **scorer_kwargs: Any) -> Any:
    """`dataset` (a Ray Dataset of {prompt, response(s)} rows) scored by a pool of `actors` `RewardScorer`s, each
    reserving `num_gpus` GPUs and `num_cpus` CPUs; `scorer_kwargs` go to `RewardScorer` (language, mode, ...)."""
    ray = require("ray", "ray")
    return dataset.map_batches(
        RewardScorer, fn_constructor_kwargs={"reward_model": reward_model, **scorer_kwargs}, batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=actors), batch_size=batch_size, num_gpus=num_gpus, num_cpus=num_cpus,
    )


def _parse_row(batch: Any, i: int) -> tuple[str, list[str], bool] | str:
    """(prompt, responses, whether the row had a list) of row `i`, or why the row cannot be scored."""
    prompt = _cell(batch, "prompt", i)
    if not isinstance(prompt, str):
        return f"'prompt' must be a string, got {type(prompt).__name__}"
    if "responses" in batch:
        responses = _cell(batch, "responses", i)
        if hasattr(responses, "tolist"):  # Arrow lists arrive as numpy arrays
            responses = responses.tolist()
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            return "'responses' must be a list of strings"
        return prompt, responses, True
    response = _cell(batch, "response", i)
    if not isinstance(response, str):
        return f"'response' must be a string, got {type(response).__name__}"
    return prompt, [response], False


def _cell(batch: Any, column: str, i: int) -> Any:
    if column not in batch:
        return None
    value = batch[column].iloc[i]
    return None if isinstance(value, float) and math.isnan(value) else value


def _error_row(error: str) -> dict[str, Any]:
    return {**dict.fromkeys(OUTPUT_COLUMNS), "error": error}


def run_many(jobs: Sequence[Job], *, workers: int | None = None, progress: bool = False, chunk_size: int = 64,
             cpus_per_task: int = 1, **limits: Any) -> list[ExecutionResult]:
    """`execution.run_many` across a Ray cluster: chunks of `chunk_size` jobs run as Ray tasks (each reserving
    `cpus_per_task` CPUs and running that many sandboxes at a time); results in input order.

    Connects to the running cluster (`ray.init()` first to choose one; else a local one starts). A chunk whose
    task dies yields `sandbox_error` results for its jobs, so nothing is lost. `workers` is accepted for
    signature compatibility; Ray's scheduler decides how many tasks run at once. `progress` shows a bar of chunks.
    """
    ray = require("ray", "ray")
    from tqdm import tqdm

    if chunk_size < 1 or cpus_per_task < 1:
        raise ValueError("chunk_size and cpus_per_task must be at least 1")
    if any((job.tests is None) == (job.cases is None) for job in jobs):
        raise ValueError("every Job needs exactly one of `tests` and `cases`")
    task = ray.remote(num_cpus=cpus_per_task)(_run_chunk)
    chunks = [list(jobs[i : i + chunk_size]) for i in range(0, len(jobs), chunk_size)]
    refs = [task.remote(chunk, cpus_per_task, limits) for chunk in chunks]
    results: list[ExecutionResult] = []
    for chunk, ref in tqdm(zip(chunks, refs), total=len(refs), disable=not progress, desc="sandbox (ray)"):
        try:
            results.extend(ray.get(ref))
        except ray.exceptions.RayError as exc:
            reason = f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            results.extend(ExecutionResult(passed=False, status="sandbox_error", reason=reason, duration=0.0,
                                           stdout="", stderr="") for _ in chunk)
    return results


def _run_chunk(jobs: list[Job], workers: int, limits: dict[str, Any]) -> list[ExecutionResult]:
    return run_many_local(jobs, workers=workers, **limits)


class _ChunkRanker:
    """A Ray actor with one `Reranker`: ranks chunks of JSONL lines exactly as `jsonl_select.select_jsonl` does."""

    def __init__(self, reward_model: Any, language: str | None, mode: str, rm_kwargs: dict[str, Any],
                 rerank_options: dict[str, Any]) -> None:
        from ..reranker import Reranker
        from ..specs import load_reward_model

        self.reranker = Reranker(None, load_reward_model(reward_model, **rm_kwargs), language=language, mode=mode,
                                 **rerank_options)

    def rank(self, chunk: list[tuple[int, bytes]]) -> list[tuple[str, bool]]:
        """Each line's output row as JSON, and whether it is an error row."""
        return [(_dump(row), row["error"] is not None) for row in _rank_chunk(self.reranker, chunk)]


def select_jsonl(source: BinaryIO, sink: TextIO, reward_model: Any = DEFAULT_REWARD_MODEL, *, actors: int = 1,
                 batch_lines: int = 32, language: str | None = "python", mode: str = "lenient", num_gpus: float = 0,
                 progress: Any = None, rerank_options: dict[str, Any] | None = None,
                 **rm_kwargs: Any) -> tuple[int, int]:
    """`jsonl_select.select_jsonl` on `actors` Ray actors (each loads the reward model once, reserving `num_gpus`):
    chunks of `batch_lines` lines go to the actors in turn, at most two per actor in flight, and the rows come back
    in input order. A chunk whose actor dies becomes error rows. `rerank_options` go to each actor's `Reranker`
    (`selector`, `calibration`, `min_confidence`). Returns (rows, error rows)."""
    ray = require("ray", "ray")
    if actors < 1 or batch_lines < 1:
        raise ValueError("actors and batch_lines must be at least 1")
    ranker = ray.remote(num_gpus=num_gpus)(_ChunkRanker)
    pool = [ranker.remote(reward_model, language, mode, rm_kwargs, dict(rerank_options or {})) for _ in range(actors)]
    pending: collections.deque[tuple[list[tuple[int, bytes]], Any]] = collections.deque()
    counts = [0, 0]

    def write_oldest() -> None:
        chunk, ref = pending.popleft()
        try:
            lines = ray.get(ref)
        except ray.exceptions.RayError as exc:
            error = f"ray actor failed: {type(exc).__name__}"
            lines = [(_dump({"line": number, "input": None, "result": None, "error": error}), True)
                     for number, _ in chunk]
        for line, failed in lines:
            sink.write(line + "\n")
            counts[0] += 1
            counts[1] += failed

    lines = _numbered_lines(source, progress)
    for k, chunk in enumerate(iter(lambda: list(islice(lines, batch_lines)), [])):
        pending.append((chunk, pool[k % actors].rank.remote(chunk)))
        if len(pending) >= 2 * actors:
            write_oldest()
    while pending:
        write_oldest()
    return counts[0], counts[1]
