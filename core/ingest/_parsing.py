"""Parse whole-file formats (PDF, Office, HTML...) in worker processes, under a time limit.

A parser is third-party code fed untrusted bytes: it may hang on a crafted file, exhaust
memory or crash the interpreter. So each file is parsed in a separate worker process of a
:class:`ParsePool`; a file that takes longer than the time limit has its worker killed
(and replaced), a worker that dies takes only its file with it, and either way that file
is reported as unreadable while the run goes on. The pool's dispatcher thread keeps the
workers busy while the caller embeds, so parsing runs in parallel with the model.

Results come back as :class:`Parsed`: the reader's items, or why the file could not be
read. :func:`parse_in_order` hands out files in their given order with a bounded window
of files parsed ahead, so memory stays bounded and runs stay deterministic.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from e5_integrations._errors import ConfigurationError, _front, option
from e5_integrations.ingest._readers import Fields, Item, Reader, RecordError, SourceFile

__all__ = [
    "DEFAULT_PARSE_TIMEOUT",
    "ParsePool",
    "Parsed",
    "default_parse_workers",
    "parse_file",
    "parse_in_order",
    "serve",
]

logger = logging.getLogger("e5_integrations.ingest")

#: Seconds one file may take to parse before it is reported and its worker killed.
DEFAULT_PARSE_TIMEOUT = 120.0


def default_parse_workers() -> int:
    """``min(CPUs, 4)``: parsing keeps pace with the model without starving the tokenizer."""
    return max(1, min(os.cpu_count() or 1, 4))


@dataclass(frozen=True)
class Parsed:
    """What parsing one file gave: its items, or the reason it could not be read.

    Attributes:
        items: ``(position, item)`` pairs as the reader yielded them (empty on error).
        error: why the file could not be read; ``None`` when it was.
        missing: a missing optional library (the ``ImportError`` text): not a problem of
            the file, so the run fails with it whatever ``--on-error`` says.
    """

    items: list[tuple[int, Item]] = field(default_factory=list)
    error: str | None = None
    missing: str | None = None


def parse_file(reader: Reader, source: SourceFile, fields: Fields) -> Parsed:
    """Run ``reader`` over ``source`` to the end; any failure becomes ``Parsed.error``."""
    try:
        return Parsed(list(reader(source, fields)))
    except RecordError as exc:
        return Parsed(error=str(exc))
    except ImportError as exc:
        return Parsed(missing=str(exc))
    except OSError as exc:
        return Parsed(error=f"cannot read: {exc.strerror or exc}")
    except MemoryError:
        return Parsed(error="the parser ran out of memory")
    except RecursionError:
        return Parsed(error="the file is nested too deeply to parse")
    except Exception as exc:  # a parser bug on this file must not stop the run
        return Parsed(error=f"the {source.suffix or 'file'} parser failed: {type(exc).__name__}: {exc}")


def serve(tasks_fd: int, results_fd: int, front: str) -> None:
    """A worker process's loop: parse the files it is sent until it is sent ``None``."""
    tasks = Connection(tasks_fd, writable=False)
    results = Connection(results_fd, readable=False)
    _front.append(front)  # messages name the flags of the front that started the run
    results.send("ready")  # a file's time limit starts once its worker has started
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        reader, source, fields = task
        results.send(parse_file(reader, source, fields))


#: A worker is a fresh interpreter (not a fork of this one, which may run torch and store
#: threads; not multiprocessing's spawn, which re-imports the caller's ``__main__``).
_WORKER_CODE = (
    "import sys; from e5_integrations.ingest._parsing import serve; "
    "serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])"
)


@dataclass
class _Task:
    reader: Reader
    source: SourceFile
    fields: Fields
    future: Future[Parsed]


class _Worker:
    def __init__(self) -> None:
        task_read, task_write = os.pipe()
        result_read, result_write = os.pipe()
        env = dict(os.environ)
        # the worker imports readers (and their modules) as this process does
        env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE, str(task_read), str(result_write), _front[-1]],
                pass_fds=(task_read, result_write),
                stdin=subprocess.DEVNULL,
                stdout=2,  # a parser's prints must never reach this process's stdout (--json)
                env=env,
            )
        finally:
            os.close(task_read)
            os.close(result_write)
        self.tasks = Connection(task_write, readable=False)
        self.connection = Connection(result_read, writable=False)
        self.task: _Task | None = None
        self.deadline = 0.0
        self.ready = False

    def stop(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.tasks.send(None)
            except (OSError, ValueError):
                kill = True
        if kill:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.tasks.close()
        self.connection.close()


class ParsePool:
    """Worker processes that parse files, each under ``timeout`` seconds (see the module docs).

    Args:
        workers: worker processes; ``0`` parses in the calling thread (no time limit, no
            crash isolation: for debugging).
        timeout: seconds one file may take.

    Raises:
        ConfigurationError: a negative worker count or a non-positive timeout.
    """

    def __init__(self, workers: int | None = None, timeout: float | None = None) -> None:
        workers = default_parse_workers() if workers is None else workers
        timeout = DEFAULT_PARSE_TIMEOUT if timeout is None else timeout
        if workers < 0:
            raise ConfigurationError(
                f"{option('parse_workers', workers)}; expected 0 (parse in this process) or more"
            )
        if not timeout > 0:
            raise ConfigurationError(
                f"{option('parse_timeout', timeout)}; expected a positive number of seconds"
            )
        self.workers = workers
        self.timeout = float(timeout)
        self._queue: collections.deque[_Task] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._pool: list[_Worker] = []
        self._thread: threading.Thread | None = None

    def submit(self, reader: Reader, source: SourceFile, fields: Fields) -> Future[Parsed]:
        """Parse ``source`` with ``reader``; the future's result is its :class:`Parsed`."""
        future: Future[Parsed] = Future()
        if not self.workers:
            future.set_result(parse_file(reader, source, fields))
            return future
        with self._lock:
            if self._closed:
                raise RuntimeError("the parse pool is closed")
            self._queue.append(_Task(reader, source, fields, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._dispatch, name="e5-parse", daemon=True)
                self._thread.start()
        self._wake.set()
        return future

    # -- the dispatcher thread -----------------------------------------------------------------
    def _assign(self) -> None:
        with self._lock:
            starting = sum(not worker.ready for worker in self._pool)
            while len(self._pool) < self.workers and len(self._queue) > starting:
                self._pool.append(_Worker())
                starting += 1
            while self._queue:
                idle = next((worker for worker in self._pool if worker.ready and worker.task is None), None)
                if idle is None:
                    return
                task = self._queue.popleft()
                if not task.future.set_running_or_notify_cancel():
                    continue
                try:
                    idle.tasks.send((task.reader, task.source, task.fields))
                except Exception as exc:  # an unpicklable reader: the caller's bug, say so
                    task.future.set_exception(exc)
                    continue
                idle.task = task
                idle.deadline = time.monotonic() + self.timeout

    def _replace(self, worker: _Worker, kill: bool) -> None:
        worker.stop(kill=kill)
        with self._lock:
            self._pool.remove(worker)

    def _finish(self, worker: _Worker) -> None:
        task = worker.task
        assert task is not None
        try:
            result = worker.connection.recv()
        except (EOFError, OSError):
            try:
                code: int | None = worker.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            worker.task = None
            self._replace(worker, kill=True)
            task.future.set_result(
                Parsed(
                    error=f"the {task.source.suffix or 'file'} parser crashed (its process exited with {code})"
                )
            )
            return
        worker.task = None
        task.future.set_result(result)

    def _started(self, worker: _Worker) -> None:
        """A starting worker's first message: ready, or it died (fail a waiting file, so a
        worker that can never start fails the files instead of restarting forever)."""
        try:
            worker.connection.recv()
            worker.ready = True
            return
        except (EOFError, OSError):
            code = worker.process.poll()
        self._replace(worker, kill=True)
        with self._lock:
            task = self._queue.popleft() if self._queue else None
        if task is not None and task.future.set_running_or_notify_cancel():
            task.future.set_result(
                Parsed(error=f"the parse worker process could not start (exit code {code})")
            )

    def _dispatch(self) -> None:
        while True:
            self._assign()
            with self._lock:
                if self._closed:
                    return
                busy = [worker for worker in self._pool if worker.task is not None]
                starting = [worker for worker in self._pool if not worker.ready]
            if not busy and not starting:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            now = time.monotonic()
            deadlines = [worker.deadline - now for worker in busy]
            wait_for = max(0.0, min([0.2, *deadlines]))
            ready = wait([worker.connection for worker in busy + starting], timeout=wait_for)
            for worker in starting:
                if worker.connection in ready:
                    self._started(worker)
            for worker in busy:
                if worker.connection in ready:
                    self._finish(worker)
                elif time.monotonic() > worker.deadline and worker.task is not None:
                    task = worker.task
                    worker.task = None
                    self._replace(worker, kill=True)
                    task.future.set_result(
                        Parsed(
                            error=f"parsing took longer than {self.timeout:g} s and was stopped; raise "
                            f"{option('parse_timeout')} if the file is merely large"
                        )
                    )

    def close(self) -> None:
        """Stop the workers (tasks not started are cancelled)."""
        with self._lock:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
        for task in pending:
            task.future.cancel()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        for worker in list(self._pool):
            if worker.task is not None:
                worker.task.future.cancel()
            worker.stop(kill=worker.task is not None)
        self._pool.clear()

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_in_order(
    items: Iterable[Any],
    submit: Callable[[Any], Future[Parsed] | None],
    window: int,
) -> Iterator[tuple[Any, Parsed | None]]:
    """``(item, parsed)`` for each of ``items`` in order, ``window`` submissions ahead.

    ``submit(item)`` starts parsing an item and returns its future, or ``None`` for an item
    that is not parsed in the pool (handed out with ``None``).
    """
    pending: collections.deque[tuple[Any, Future[Parsed] | None]] = collections.deque()
    ahead = 0
    try:
        for item in items:
            future = submit(item)
            ahead += future is not None
            pending.append((item, future))
            while pending and (ahead > window or pending[0][1] is None):
                first, first_future = pending.popleft()
                ahead -= first_future is not None
                yield first, first_future.result() if first_future is not None else None
        while pending:
            first, first_future = pending.popleft()
            yield first, first_future.result() if first_future is not None else None
    finally:
        for _, future in pending:
            if future is not None:
                future.cancel()
