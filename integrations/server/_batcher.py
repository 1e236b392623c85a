"""Dynamic batching: requests from every client share token-budget forward passes.

Each request arrives as ready token ids. The worker thread takes what is queued (FIFO, a few
batch budgets at a time), packs all of it with the encoder's own planner
(:func:`e5_integrations._batching.plan_batches`), runs one forward pass per planned batch and
hands every request its own rows, in its order, as soon as its last row is done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from e5_integrations._batching import plan_batches
from e5_integrations.server._metrics import ServerMetrics

__all__ = ["DynamicBatcher", "Overloaded"]

logger = logging.getLogger("e5_integrations.server")

#: The worker takes queued requests up to this many batch budgets at once, so one planning
#: round packs many clients together without making late arrivals wait behind a huge round.
ROUND_BUDGETS = 4
#: When requests are being tokenized as a round starts, wait up to this long for them, so
#: clients that arrive together share a forward pass; a lone request never waits.
GATHER_WAIT_S = 0.004


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
    out: np.ndarray | None = None
    remaining: int = 0
    failed: bool = False
    started: bool = field(default=False)


class DynamicBatcher:
    """One GPU worker loop fed by a token-bounded queue.

    Args:
        encoder: a loaded :class:`~e5_integrations.E5Encoder`; its ``batch_tokens`` is the
            budget of one forward pass and its ``encode_token_ids`` runs it.
        max_queue_tokens: tokens accepted and not yet embedded, beyond which :meth:`submit`
            raises :class:`Overloaded`.
        metrics: where queue size, batch sizes and durations are recorded.
    """

    def __init__(self, encoder: Any, max_queue_tokens: int, metrics: ServerMetrics) -> None:
        self.encoder = encoder
        self.max_queue_tokens = max_queue_tokens
        self.metrics = metrics
        self._pending: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._queued_tokens = 0
        self._incoming = 0  # requests received and being tokenized
        self._closing = False
        self._tokens_per_s = 0.0  # measured, for Retry-After
        self._thread = threading.Thread(target=self._run, name="e5-gpu-worker", daemon=True)
        self._thread.start()

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

    async def submit(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Embed ``ids`` (sequences built by the recipe) in shared batches; rows in input order.

        Raises:
            Overloaded: the queue is full; the caller should answer 429 with ``retry_after``.
            RuntimeError: the batcher is shutting down.
        """
        return await self.enqueue(ids)

    def enqueue(self, ids: Sequence[Sequence[int]]) -> asyncio.Future[np.ndarray]:
        """Queue ``ids`` now (from the event loop); the future resolves to their rows.

        Raises:
            Overloaded: the queue is full; the caller should answer 429 with ``retry_after``.
            RuntimeError: the batcher is shutting down.
        """
        loop = asyncio.get_running_loop()
        tokens = sum(len(row) for row in ids)
        future: asyncio.Future[np.ndarray] = loop.create_future()
        job = _Job(ids=ids, tokens=tokens, future=future, loop=loop, enqueued=time.perf_counter())
        job.remaining = len(ids)
        with self._cond:
            if self._closing:
                raise RuntimeError("the server is shutting down")
            if self._queued_tokens > 0 and self._queued_tokens + tokens > self.max_queue_tokens:
                raise Overloaded(self._queued_tokens, tokens, self.max_queue_tokens, self._retry_after())
            self._queued_tokens += tokens
            self.metrics.queue_tokens.set(self._queued_tokens)
            self.metrics.queue_requests.inc()
            self._pending.append(job)
            self._cond.notify()
        return future

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, embed everything queued, then stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # -- the worker thread ----------------------------------------------------------------

    def _take_round(self) -> list[_Job] | None:
        budget = ROUND_BUDGETS * self.encoder.batch_tokens
        with self._cond:
            while not self._pending and not self._closing:
                self._cond.wait()
            if not self._pending:
                return None
            deadline = time.perf_counter() + GATHER_WAIT_S
            while self._incoming > 0 and not self._closing and self._queued_tokens < budget:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            jobs = [self._pending.popleft()]
            taken = jobs[0].tokens
            while self._pending and taken + self._pending[0].tokens <= budget:
                job = self._pending.popleft()
                taken += job.tokens
                jobs.append(job)
            return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take_round()
            if jobs is None:
                return
            try:
                self._embed_round(jobs)
            except BaseException as exc:  # never let the worker die silently
                logger.exception("embedding round failed")
                for job in jobs:
                    self._fail(job, exc)

    def _embed_round(self, jobs: list[_Job]) -> None:
        now = time.perf_counter()
        rows: list[tuple[_Job, int]] = []
        for job in jobs:
            self.metrics.queue_duration.observe(now - job.enqueued)
            job.out = np.empty((len(job.ids), self.encoder.dimension), dtype=np.float32)
            if not job.ids:
                self._finish(job)
            rows.extend((job, i) for i in range(len(job.ids)))
        lengths = [len(job.ids[i]) for job, i in rows]
        batches = plan_batches(lengths, self.encoder.batch_tokens)
        # With several devices, hand the encoder as many planned batches as it has devices:
        # re-planning their union gives the same batches, spread one per device.
        step = max(1, len(getattr(self.encoder, "devices", [None])))
        for start in range(0, len(batches), step):
            group = batches[start : start + step]
            members = [rows[k] for batch in group for k in batch]
            members = [(job, i) for job, i in members if not job.failed]
            if not members:
                continue
            started = time.perf_counter()
            try:
                vectors = self.encoder.encode_token_ids([job.ids[i] for job, i in members])
            except Exception as exc:
                for job in {id(job): job for job, _ in members}.values():
                    self._fail(job, exc)
                continue
            elapsed = time.perf_counter() - started
            padded = sum(max(lengths[k] for k in batch) * len(batch) for batch in group)
            for batch in group:
                self.metrics.forward_passes.inc()
                self.metrics.batch_size.observe(len(batch))
                self.metrics.batch_tokens.observe(max(lengths[k] for k in batch) * len(batch))
                self.metrics.inference_duration.observe(elapsed / len(group))
            self.metrics.embedded_inputs.inc(len(members))
            if elapsed > 0:
                rate = padded / elapsed
                self._tokens_per_s = (
                    rate if self._tokens_per_s == 0 else 0.8 * self._tokens_per_s + 0.2 * rate
                )
            for (job, i), vector in zip(members, vectors, strict=False):
                assert job.out is not None
                job.out[i] = vector
                job.remaining -= 1
                if job.remaining == 0:
                    self._finish(job)

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
        if job.failed or job.future.done() or (job.remaining == 0 and job.ids):
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
