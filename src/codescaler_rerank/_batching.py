"""Scoring jobs of concurrent requests merged into bulk reward-model calls, each job with a deadline and a cancel flag.

A request holds a `Ticket` (deadline, cancel flag) while it is served; its ranking thread calls
`BatchingScorer.score_pairs(pairs, ticket)`, which queues a job on the event loop and waits. One worker task takes
the pending jobs (up to `max_batch`, gathering for `window` seconds), drops those whose ticket was cancelled or ran
out, and scores the rest in one call in a thread. When that call raises, the jobs are retried one by one, so one bad
request does not fail the others. The worker is supervised: if it dies anyway, the jobs it held fail and a new
worker starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Sequence

from .pipeline import RewardScorer
from .reward_model import ScoredInput

log = logging.getLogger("codescaler_rerank.server")


class JobCancelled(Exception):
    """The request behind a scoring job gave up: it was cancelled (timed out, client gone) or its deadline passed."""


class ScoringFailed(RuntimeError):
    """The reward model raised while scoring this job; the original error is the `__cause__` (and is logged)."""


class Ticket:
    """One request's claim on the server: a deadline (`time.monotonic()` seconds) and a cancel flag.

    `check()` raises `JobCancelled` once the ticket is cancelled or past its deadline; ranking calls it between steps.
    """

    def __init__(self, timeout: float | None = None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], Any]] = []

    def cancel(self) -> None:
        """Flag the ticket; its waiting scoring jobs are cancelled now, its ranking stops at the next check."""
        with self._lock:
            self._cancelled.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def remaining(self) -> float | None:
        """Seconds to the deadline (None: no deadline); 0 once cancelled."""
        if self.cancelled:
            return 0.0
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    @property
    def done(self) -> bool:
        """Cancelled or past the deadline: no more work should be spent on this request."""
        return self.remaining() == 0.0

    def check(self) -> None:
        """Raise `JobCancelled` if the ticket is done."""
        if self.done:
            raise JobCancelled("the request was cancelled or ran past its deadline")

    def on_cancel(self, callback: Callable[[], Any]) -> None:
        """Call `callback` when the ticket is cancelled (at once if it already is)."""
        with self._lock:
            if not self.cancelled:
                self._callbacks.append(callback)
                return
        callback()


@dataclass
class _Job:
    """Pairs to score for one request. Its future is cancelled while it waits in the queue (the request gave up),
    or set running when the worker takes it: from then on the request waits for it, even past its deadline."""

    pairs: Sequence[tuple[str, str]]
    future: concurrent.futures.Future
    ticket: Ticket | None

    @property
    def skipped(self) -> bool:
        """The request gave up on this job."""
        return self.future.cancelled() or (self.ticket is not None and self.ticket.done)

    def settle(self, result: list[ScoredInput] | None = None, error: BaseException | None = None) -> None:
        """Resolve the future unless the waiter already gave up on it."""
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)


def _failed(exc: BaseException) -> ScoringFailed:
    error = ScoringFailed(f"the reward model failed: {type(exc).__name__}")
    error.__cause__ = exc
    return error


class BatchingScorer:
    """A RewardScorer that merges concurrent `score_pairs` calls into bulk calls of the wrapped scorer.

    `score_pairs` is called from worker threads (Reranker's scoring step); see the module docstring for the worker.
    `bound(ticket)` is the RewardScorer of one request: its calls carry the ticket.
    """

    def __init__(
        self, scorer: RewardScorer, *, max_batch: int = 32, window: float = 0.01, on_batch: Any = None
    ) -> None:
        self.scorer = scorer
        self.name = getattr(scorer, "name", type(scorer).__name__)
        self.max_batch = max_batch
        self.window = window
        self.on_batch = on_batch  # called with (requests, pairs) per bulk call
        self.restarts = 0  # times the worker died and was replaced
        self._queue: asyncio.Queue[_Job] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task | None = None
        self._held: list[_Job] = []  # jobs the worker took off the queue and has not settled yet

    def score_pairs(self, pairs: Sequence[tuple[str, str]], ticket: Ticket | None = None) -> list[ScoredInput]:
        """Queue `pairs` for the next bulk call and wait for their scores (call from a thread, not the loop).

        Raises `JobCancelled` when `ticket` is cancelled or runs out first, `ScoringFailed` when the RM raised.
        """
        loop = self._loop
        if loop is None or self._queue is None:
            raise RuntimeError("BatchingScorer is not running: use it inside `async with scorer.running():`")
        if ticket is not None:
            ticket.check()
        job = _Job(pairs, concurrent.futures.Future(), ticket)
        if ticket is not None:
            ticket.on_cancel(job.future.cancel)
        loop.call_soon_threadsafe(self._queue.put_nowait, job)
        try:
            return job.future.result(timeout=None if ticket is None else ticket.remaining())
        except concurrent.futures.TimeoutError as exc:
            if not job.future.cancel():  # being scored: the RM call cannot be stopped, and it is this request's work
                with contextlib.suppress(Exception):
                    job.future.result()
            raise JobCancelled("the request ran past its deadline") from exc
        except concurrent.futures.CancelledError as exc:
            raise JobCancelled("the request was cancelled") from exc

    def bound(self, ticket: Ticket) -> _TicketScorer:
        """The RewardScorer of one request: `score_pairs` with `ticket`."""
        return _TicketScorer(self, ticket)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BatchingScorer]:
        """Run the (supervised) worker task on the current event loop while the context is open."""
        self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
        self._start_worker()
        try:
            yield self
        finally:
            worker, self._worker = self._worker, None  # None first: the supervisor must not restart it
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            self._loop = self._queue = None

    def _start_worker(self) -> None:
        assert self._loop is not None
        self._worker = self._loop.create_task(self._work())
        self._worker.add_done_callback(self._supervise)

    def _supervise(self, task: asyncio.Task) -> None:
        """Done callback of the worker: unless the scorer is closing, fail the jobs it held and start a new one."""
        if task is not self._worker:
            return
        exc = None if task.cancelled() else task.exception()
        log.error("the scoring worker died (%s); restarting it", "cancelled" if exc is None else repr(exc), exc_info=exc)
        held, self._held = self._held, []
        for job in held:
            job.settle(error=_failed(exc or asyncio.CancelledError()))
        self.restarts += 1
        self._start_worker()

    async def _work(self) -> None:
        while True:
            self._held = await self._next_batch()
            if self._held:
                await self._score(self._held)
            self._held = []

    async def _next_batch(self) -> list[_Job]:
        """The first pending job and whatever else arrives within `window` seconds, less the skipped ones."""
        assert self._loop is not None and self._queue is not None
        jobs = [await self._queue.get()]
        deadline = self._loop.time() + self.window
        while len(jobs) < self.max_batch:
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), max(0.0, deadline - self._loop.time())))
            except asyncio.TimeoutError:
                break
        for job in jobs:
            if job.skipped:
                job.future.cancel()
        return [job for job in jobs if job.future.set_running_or_notify_cancel()]

    async def _score(self, jobs: list[_Job]) -> None:
        """One bulk call for `jobs`; if it raises, each job alone (skipping the ones given up meanwhile)."""
        pairs = [pair for job in jobs for pair in job.pairs]
        if self.on_batch is not None:
            self.on_batch(len(jobs), len(pairs))
        try:
            scored = await asyncio.to_thread(self._call, pairs)
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].settle(error=_failed(exc))
                return
            log.warning("a bulk scoring call of %d requests raised %r; scoring them one by one", len(jobs), exc)
            for job in jobs:
                if job.skipped:
                    job.settle(error=JobCancelled("skipped: the request was cancelled or ran past its deadline"))
                    continue
                try:
                    job.settle(await asyncio.to_thread(self._call, job.pairs))
                except Exception as single:
                    job.settle(error=_failed(single))
            return
        start = 0
        for job in jobs:
            job.settle(scored[start : start + len(job.pairs)])
            start += len(job.pairs)

    def _call(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        scored = list(self.scorer.score_pairs(pairs))
        if len(scored) != len(pairs):
            raise RuntimeError(f"the reward model returned {len(scored)} scores for {len(pairs)} inputs")
        return scored


class _TicketScorer:
    """A BatchingScorer seen by one request: every call carries the request's ticket."""

    def __init__(self, batching: BatchingScorer, ticket: Ticket) -> None:
        self.batching, self.ticket, self.name = batching, ticket, batching.name

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        return self.batching.score_pairs(pairs, self.ticket)
