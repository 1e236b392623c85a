"""Dynamic batching: requests from every client share token-budget forward passes, and short
requests go first.

Each request arrives as ready token ids, marked *priority* (a query, or a request under
``e5 serve --priority-tokens``) or *bulk*. The worker thread packs queued requests with the
encoder's own planner (:func:`e5_integrations._batching.plan_batches`) and hands every request
its own rows, in its order, as soon as its last row is done.

Scheduling, decided between forward passes (never inside one):

- priority requests are taken first, a few batch budgets at a time, so a query waits for at
  most the forward pass already running, not for a bulk request's whole plan;
- bulk requests are taken a round at a time (FIFO, a few batch budgets) and run one forward
  pass at a time, so priority work can slip in between two of their passes; while priority
  traffic is active (a priority request in the last ``priority_window_s``), bulk passes are cut
  to ``1/bulk_slice`` of the batch budget, so a query waits for a small pass, not a full one;
- no starvation: while bulk work waits, at most ``priority_streak`` priority rounds run in a
  row before one bulk pass runs, however many queries keep arriving;
- express lane: while the worker is inside a bulk pass (which cannot be interrupted, and one
  4096-token document alone takes a while), a second thread runs queued priority work
  concurrently, so a query does not wait for that pass at all (``express=False``: one thread).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from e5_integrations._batching import plan_batches
from e5_integrations._errors import InputError
from e5_integrations.server._metrics import ServerMetrics

__all__ = ["DynamicBatcher", "Overloaded"]

logger = logging.getLogger("e5_integrations.server")

#: The worker takes queued requests up to this many batch budgets at once, so one planning
#: round packs many clients together without making late arrivals wait behind a huge round.
ROUND_BUDGETS = 4
#: When requests are being tokenized as a round starts, wait up to this long for them, so
#: clients that arrive together share a forward pass; a lone request never waits.
GATHER_WAIT_S = 0.004
#: Priority rounds that may run in a row while bulk work waits; then one bulk pass runs.
PRIORITY_STREAK = 4
#: While priority traffic is active, bulk passes use this fraction of the batch budget.
BULK_SLICE = 4
#: Priority traffic counts as active this long after the last priority request arrived.
PRIORITY_WINDOW_S = 2.0

#: One row of one request: ``(job, index of the row in the job)``.
_Row = tuple["_Job", int]


class Overloaded(Exception):
    """The queue holds too many tokens to accept this request now (HTTP 429)."""

    def __init__(self, queued: int, requested: int, limit: int, retry_after: int) -> None:
        super().__init__(
            f"the server queue holds {queued} tokens and this request adds {requested}, over the limit of "
            f"{limit} (e5 serve --max-queue-tokens); retry after {retry_after} s"
        )
        self.retry_after = retry_after


@dataclass
class _Job:
    ids: Sequence[Sequence[int]]
    tokens: int
    future: asyncio.Future[np.ndarray]
    loop: asyncio.AbstractEventLoop
    enqueued: float
    priority: bool = False
    out: np.ndarray | None = None
    remaining: int = 0
    failed: bool = False


class DynamicBatcher:
    """One GPU worker loop fed by a token-bounded, two-class queue.

    Args:
        encoder: a loaded :class:`~e5_integrations.E5Encoder`; its ``batch_tokens`` is the
            budget of one forward pass and its ``encode_token_ids`` runs it.
        max_queue_tokens: tokens accepted and not yet embedded, beyond which :meth:`submit`
            raises :class:`Overloaded`.
        metrics: where queue size, batch sizes and durations are recorded.
        priority_streak: priority rounds that may run in a row while bulk work waits.
        bulk_slice: while priority traffic is active, bulk passes take ``1/bulk_slice`` of the
            batch budget (1: full passes always).
        priority_window_s: how long after a priority request priority traffic counts as active.
        express: run priority work on a second thread while a bulk pass is running.
    """

    def __init__(
        self,
        encoder: Any,
        max_queue_tokens: int,
        metrics: ServerMetrics,
        *,
        priority_streak: int = PRIORITY_STREAK,
        bulk_slice: int = BULK_SLICE,
        priority_window_s: float = PRIORITY_WINDOW_S,
        express: bool = True,
    ) -> None:
        if priority_streak < 1 or bulk_slice < 1:
            raise ValueError(
                f"priority_streak and bulk_slice must be >= 1, got {priority_streak} and {bulk_slice}"
            )
        self.encoder = encoder
        self.max_queue_tokens = max_queue_tokens
        self.metrics = metrics
        self.priority_streak = priority_streak
        self.bulk_slice = bulk_slice
        self.priority_window_s = priority_window_s
        self._last_priority = -float("inf")  # when the last priority request arrived
        self._priority: deque[_Job] = deque()
        self._bulk: deque[_Job] = deque()
        self._round: list[_Row] = []  # rows of the bulk round not embedded yet
        self._streak = 0  # priority rounds run in a row while bulk work waited
        self._cond = threading.Condition()
        self._queued_tokens = 0
        self._incoming = 0  # requests received and being tokenized
        self._closing = False
        self._tokens_per_s = 0.0  # measured, for Retry-After
        self._in_bulk = False  # the worker is running a bulk pass (the express lane may run)
        self._threads = [threading.Thread(target=self._run, name="e5-gpu-worker", daemon=True)]
        if express:
            self._threads.append(threading.Thread(target=self._run_express, name="e5-express", daemon=True))
        for thread in self._threads:
            thread.start()

    @property
    def queued_tokens(self) -> int:
        """Tokens accepted and not embedded yet."""
        return self._queued_tokens

    def _retry_after(self) -> int:
        if self._tokens_per_s <= 0:
            return 1
        return max(1, min(60, int(self._queued_tokens / self._tokens_per_s) + 1))

    def expect(self) -> None:
        """A request is being tokenized and will be submitted soon (or :meth:`unexpect` -ed)."""
        with self._cond:
            self._incoming += 1

    def unexpect(self) -> None:
        """The request announced by :meth:`expect` was submitted or failed."""
        with self._cond:
            self._incoming -= 1
            self._cond.notify_all()

    async def submit(self, ids: Sequence[Sequence[int]], *, priority: bool = False) -> np.ndarray:
        """Embed ``ids`` (sequences built by the recipe) in shared batches; rows in input order.

        Raises:
            Overloaded: the queue is full; the caller should answer 429 with ``retry_after``.
            RuntimeError: the batcher is shutting down.
        """
        return await self.enqueue(ids, priority=priority)

    def enqueue(self, ids: Sequence[Sequence[int]], *, priority: bool = False) -> asyncio.Future[np.ndarray]:
        """Queue ``ids`` now (from the event loop); the future resolves to their rows.

        Args:
            ids: the model inputs of one request.
            priority: run ahead of bulk work (queries and short requests).

        Raises:
            Overloaded: the queue is full; the caller should answer 429 with ``retry_after``.
            RuntimeError: the batcher is shutting down.
        """
        loop = asyncio.get_running_loop()
        tokens = sum(len(row) for row in ids)
        future: asyncio.Future[np.ndarray] = loop.create_future()
        job = _Job(
            ids=ids, tokens=tokens, future=future, loop=loop, enqueued=time.perf_counter(), priority=priority
        )
        job.remaining = len(ids)
        with self._cond:
            if self._closing:
                raise RuntimeError("the server is shutting down")
            if self._queued_tokens > 0 and self._queued_tokens + tokens > self.max_queue_tokens:
                raise Overloaded(self._queued_tokens, tokens, self.max_queue_tokens, self._retry_after())
            self._queued_tokens += tokens
            self.metrics.queue_tokens.set(self._queued_tokens)
            self.metrics.queue_requests.inc()
            (self._priority if priority else self._bulk).append(job)
            if priority:
                self._last_priority = job.enqueued
            self._cond.notify_all()  # the worker, and the express lane for priority work
        return future

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, embed everything queued, then stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # -- the worker thread ----------------------------------------------------------------

    def _has_work(self) -> bool:
        return bool(self._priority or self._bulk or self._round)

    def _take(self, queue: deque[_Job]) -> list[_Job]:
        """The oldest jobs of ``queue``, up to a round's token budget (at least one)."""
        budget = ROUND_BUDGETS * self.encoder.batch_tokens
        jobs = [queue.popleft()]
        taken = jobs[0].tokens
        while queue and taken + queue[0].tokens <= budget:
            job = queue.popleft()
            taken += job.tokens
            jobs.append(job)
        return jobs

    def _next_passes(self) -> list[list[list[_Row]]] | None:
        """What to run now, as groups of batches (one group per ``encode_token_ids`` call);
        ``None`` once closing with nothing left."""
        with self._cond:
            self._in_bulk = False
            while not self._has_work() and not self._closing:
                self._cond.wait()
            if not self._has_work():
                return None
            deadline = time.perf_counter() + GATHER_WAIT_S
            budget = ROUND_BUDGETS * self.encoder.batch_tokens
            while self._incoming > 0 and not self._closing and self._queued_tokens < budget:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            bulk_waiting = bool(self._bulk or self._round)
            if self._priority and (not bulk_waiting or self._streak < self.priority_streak):
                self._streak = self._streak + 1 if bulk_waiting else 0
                return self._plan(self._take(self._priority))
            self._streak = 0
            group = self._bulk_pass()
            if group:
                self._in_bulk = True
                self._cond.notify_all()  # priority work queued meanwhile may take the express lane
            return [group] if group else []

    def _steps(self) -> int:
        # With several devices, hand the encoder as many planned batches as it has devices:
        # re-planning their union gives the same batches, spread one per device.
        return max(1, len(getattr(self.encoder, "devices", [None])))

    def _rows(self, jobs: list[_Job]) -> list[_Row]:
        """The rows of ``jobs``, whose first forward pass is being planned now."""
        now = time.perf_counter()
        rows: list[_Row] = []
        for job in jobs:
            self.metrics.queue_duration.observe(now - job.enqueued)
            job.out = np.empty((len(job.ids), self.encoder.dimension), dtype=np.float32)
            if not job.ids:
                self._finish(job)
            rows.extend((job, i) for i in range(len(job.ids)))
        return rows

    def _plan(self, jobs: list[_Job]) -> list[list[list[_Row]]]:
        """All the forward passes of ``jobs``: token-budget batches, grouped one per device."""
        rows = self._rows(jobs)
        batches = plan_batches([len(job.ids[i]) for job, i in rows], self.encoder.batch_tokens)
        planned = [[rows[k] for k in batch] for batch in batches]
        step = self._steps()
        return [planned[start : start + step] for start in range(0, len(planned), step)]

    def _bulk_pass(self) -> list[list[_Row]]:
        """The next bulk forward pass (a group of batches, one per device), taken from the
        current bulk round (a new round once it is done); smaller while priority traffic is
        active. Re-planned at every pass, so the budget follows the traffic."""
        self._round = [row for row in self._round if not row[0].failed]
        if not self._round and self._bulk:
            self._round = self._rows(self._take(self._bulk))
        if not self._round:
            return []
        active = time.perf_counter() - self._last_priority < self.priority_window_s
        budget = max(1, self.encoder.batch_tokens // (self.bulk_slice if active else 1))
        batches = plan_batches([len(job.ids[i]) for job, i in self._round], budget)[: self._steps()]
        chosen = {k for batch in batches for k in batch}
        group = [[self._round[k] for k in batch] for batch in batches]
        self._round = [row for k, row in enumerate(self._round) if k not in chosen]
        return group

    def _run(self) -> None:
        while True:
            passes = self._next_passes()
            if passes is None:
                return
            self._run_passes(passes)

    def _run_express(self) -> None:
        """The express lane: priority work, only while the worker is inside a bulk pass."""
        while True:
            with self._cond:
                while not (self._priority and self._in_bulk) and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return  # the worker embeds whatever is left
                passes = self._plan(self._take(self._priority))
            self._run_passes(passes)

    def _run_passes(self, passes: list[list[list[_Row]]]) -> None:
        for group in passes:
            try:
                self._run_group(group)
            except BaseException as exc:  # never let a worker die silently
                logger.exception("embedding pass failed")
                for batch in group:
                    for job, _ in batch:
                        self._fail(job, exc)

    def _run_group(self, group: list[list[_Row]]) -> None:
        members = [(job, i) for batch in group for job, i in batch if not job.failed]
        if not members:
            return
        started = time.perf_counter()
        try:
            # Vectors are checked per request below: one client's NaN (a half-precision
            # overflow) must not fail the other requests of its batch.
            vectors = self.encoder.encode_token_ids([job.ids[i] for job, i in members], check_vectors=False)
        except Exception as exc:
            for job in {id(job): job for job, _ in members}.values():
                self._fail(job, exc)
            return
        elapsed = time.perf_counter() - started
        widths = [max(len(job.ids[i]) for job, i in batch) * len(batch) for batch in group]
        for batch, width in zip(group, widths, strict=True):
            self.metrics.forward_passes.inc()
            self.metrics.batch_size.observe(len(batch))
            self.metrics.batch_tokens.observe(width)
            self.metrics.inference_duration.observe(elapsed / len(group))
        self.metrics.embedded_inputs.inc(len(members))
        if elapsed > 0:
            rate = sum(widths) / elapsed
            self._tokens_per_s = rate if self._tokens_per_s == 0 else 0.8 * self._tokens_per_s + 0.2 * rate
        norms = np.linalg.norm(vectors, axis=1)
        unusable = ~np.isfinite(norms) | (norms == 0)
        for (job, i), vector, bad in zip(members, vectors, unusable, strict=False):
            if job.failed:
                continue
            if bad:
                self._fail(job, self._bad_vector(vector, i))
                continue
            assert job.out is not None
            job.out[i] = vector
            job.remaining -= 1
            if job.remaining == 0:
                self._finish(job)

    def _bad_vector(self, vector: np.ndarray, index: int) -> Exception:
        """A 422 for a zero or non-finite vector, naming ``input[index]`` (and not the model's
        path, which the encoder's own message gives a local user)."""
        kind = "a non-finite" if not np.isfinite(vector).all() else "a zero"
        return InputError(
            f"input[{index}] gives {kind} vector under this model (a zero vector has no direction to "
            "compare; a non-finite one comes from a half-precision overflow); check the input",
            index,
        )

    def _release(self, job: _Job) -> None:
        with self._cond:
            self._queued_tokens -= job.tokens
            self.metrics.queue_tokens.set(self._queued_tokens)
            self.metrics.queue_requests.dec()

    def _finish(self, job: _Job) -> None:
        self._release(job)
        out = job.out
        job.loop.call_soon_threadsafe(_resolve, job.future, out, None)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        # A cancelled request (its future done) is released all the same: its tokens must
        # leave the queue count (_resolve ignores the done future).
        if job.failed or (job.remaining == 0 and job.ids):
            return
        job.failed = True
        self._release(job)
        job.loop.call_soon_threadsafe(_resolve, job.future, None, exc)


def _resolve(future: asyncio.Future[np.ndarray], value: np.ndarray | None, exc: BaseException | None) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert value is not None
        future.set_result(value)
