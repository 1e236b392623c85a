"""The Ray engine on a cluster of two nodes (issue 25, item 4): a worker node removed mid-run,
a writer task killed, and the driver killed then started again. Each ends exact: one row per
chunk, no duplicates, no row lost, counted in the store.

The cluster runs in a process of its own (``tests/ray/_cluster.py``: a head and a worker node,
each its own raylet, object store and workers) and every e5 driver is a separate process
calling ``ingest_ray(ray_address=...)``, as on a real cluster; this test process only watches
the processes and the store.

Each fault is injected at a state of the run the test has made sure of, never at a moment
guessed from the clock:

- the table is created by the test and locked (``LOCK TABLE ... IN EXCLUSIVE MODE``: reads,
  so the lookups, go on; every upsert waits), so no run can end while the test holds the
  lock, and a write task is caught in the middle of its upsert. Committing and locking again
  lets the waiting writes through, and only those: then some rows are stored, most not;
- the embedding actors compute with a fast deterministic backend
  (``tests/ray/_gated_backend.py``, through ``ingest_ray(backend_factory=...)``) that records
  which node embedded what, and can make the actors of the other nodes wait until one on a
  given node has embedded a batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ray._gated_backend import embedded_by_node
from tests.ray.conftest import WORDS, _kill_ray_processes, dump_rows
from tests.ray.test_ray_engine import CHUNK, expected_rows
from tests.stores._pg_server import pg_dsn  # noqa: F401  (the session's Postgres)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: One-chunk documents per run, in FILES files (one read task each). The Ray engine hands its
#: actors 512 documents per task (the lookup's batch), so this is 4 actor tasks, and a write
#: task upserts what one actor task made (at least WRITE_BATCH_RECORDS rows): while the table
#: is locked, the 2 write tasks hold at most half of the rows.
DOCUMENTS = 2048
FILES = 32
EMBED_BATCH_ROWS = 16
WRITE_BATCH_RECORDS = 64
#: A failure guard only: how long a run, or a wait for a state of the run, may take on a
#: very busy CI machine before the test gives up.
PATIENCE_S = 600


@dataclass
class _Cluster:
    process: subprocess.Popen[str]
    address: str
    worker_raylet: int
    worker_node: str

    def command(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the cluster process exited on {command!r}: {self.process.poll()}")
        answer: dict[str, Any] = json.loads(line)
        return answer


@pytest.fixture(scope="module")
def cluster() -> Iterator[_Cluster]:
    pytest.importorskip("ray.data", reason="pip install 'e5-integrations[ray]'")
    temp_dir = Path(tempfile.mkdtemp(prefix="e5-rc-", dir="/tmp"))  # Ray's socket paths stay short
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.ray._cluster", str(temp_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=60)
        _kill_ray_processes(temp_dir)
        raise AssertionError(f"the two-node Ray cluster did not start (exit {process.returncode})")
    info = json.loads(line)
    running = _Cluster(process, info["address"], info["worker_raylet"], info["worker_node"])
    try:
        yield running
    finally:
        with contextlib.suppress(Exception):
            assert process.stdin is not None
            process.stdin.write("quit\n")
            process.stdin.flush()
            process.wait(timeout=120)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        _kill_ray_processes(temp_dir)


@dataclass
class _Run:
    """One driver process and where it logs."""

    process: subprocess.Popen[str]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


class _Job:
    """One test's target: the cluster, the corpus, a collection the test created (so it can
    lock it before any driver starts), the drivers and the backends' markers."""

    def __init__(
        self, cluster: _Cluster, corpus: Path, expected: dict[str, str], model: Path, dsn: str, work: Path
    ) -> None:
        from e5_integrations._encoder import model_dimension
        from e5_integrations.ingest import open_sink

        self.cluster, self.corpus, self.expected, self.dsn = cluster, corpus, expected, dsn
        self.model = model
        self.collection = f"e5_multinode_{os.getpid()}_{time.monotonic_ns() % 10**9}"
        self.gate = work / "gate"
        self.gate.mkdir()
        self.dim = model_dimension(str(self.model))
        self.runs = 0
        with open_sink("pgvector", dsn, self.collection) as sink:
            sink.ensure_collection(self.dim)

    def start(self, workers: int = 1, first_node: str | None = None) -> _Run:
        """A driver process running ``ingest_ray`` with ``workers`` embedding actors against
        the cluster (the job's driver), printing the report as JSON; its log (stderr) goes to
        a file. One actor unless the test needs more: each is a process importing torch, and
        CI has 2 cores."""
        options = {
            "store": "pgvector",
            "uri": self.dsn,
            "collection": self.collection,
            "model": str(self.model),
            "dtype": "fp32",
            "ray_address": self.cluster.address,
            "workers": workers,
            "writers": 2,
            "gpus_per_worker": 0,
            "embed_batch_rows": EMBED_BATCH_ROWS,
            "write_batch_records": WRITE_BATCH_RECORDS,
            "progress": False,
            **CHUNK,
        }
        code = (
            "import contextlib, json, sys\n"
            "from e5_integrations.ray import ingest_ray\n"
            "from tests.ray._gated_backend import GatedBackends\n"
            f"backends = GatedBackends({self.dim}, {str(self.gate)!r}, {first_node!r})\n"
            "with contextlib.redirect_stdout(sys.stderr):\n"
            f"    report = ingest_ray([{str(self.corpus)!r}], backend_factory=backends, "
            f"**json.loads({json.dumps(options)!r}))\n"
            "print(json.dumps(report.to_dict()))\n"
        )
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        self.runs += 1
        log = self.gate.parent / f"driver-{self.runs}.log"
        with log.open("w", encoding="utf-8") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", code],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
                cwd=REPO,
            )
        return _Run(process, log)

    def rows(self) -> int:
        return _rows(self.dsn, self.collection)

    def wait(self, condition: Callable[[], bool], what: str, run: _Run) -> None:
        deadline = time.monotonic() + PATIENCE_S
        while not condition():
            if run.process.poll() is not None:
                raise AssertionError(
                    f"the run ended (exit {run.process.returncode}) before {what}:\n{run.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}:\n{run.tail()}")
            time.sleep(0.05)

    @contextlib.contextmanager
    def locked(self) -> Iterator[_Lock]:
        """The table locked against writes until the block ends."""
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            lock = _Lock(conn, self.collection)
            lock.take()
            try:
                yield lock
            finally:
                conn.commit()

    def finish(self, run: _Run) -> dict[str, Any]:
        try:
            out, _ = run.process.communicate(timeout=PATIENCE_S)
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.communicate(timeout=60)
            raise AssertionError(f"the run did not end in {PATIENCE_S} s:\n{run.tail()}") from None
        assert run.process.returncode == 0, f"exit {run.process.returncode}\n{run.tail()}"
        report: dict[str, Any] = json.loads(out)
        return report

    def assert_exact(self, report: dict[str, Any]) -> None:
        """The report counts every chunk, and the store holds exactly the corpus's rows: each
        id once, with its text, and nothing else."""
        assert report["chunks"] == len(self.expected)
        assert report["written"] + report["skipped_unchanged"] == len(self.expected)
        rows = dump_rows("pgvector", self.dsn, self.collection)
        assert {id_: text for id_, (text, _, _) in rows.items()} == self.expected
        assert self.rows() == len(self.expected)  # no duplicate: the count is the ids'


class _Lock:
    """``LOCK TABLE ... IN EXCLUSIVE MODE`` on one connection: reads go on, writes wait."""

    def __init__(self, conn: Any, table: str) -> None:
        from psycopg import sql

        self._conn = conn
        self._lock = sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table))
        self._waiting = sql.SQL(
            "SELECT count(*) FROM pg_locks WHERE relation = {}::regclass AND NOT granted"
        ).format(sql.Literal(table))

    def take(self) -> None:
        self._conn.execute(self._lock)

    def let_waiting_writes_through(self) -> None:
        """Release the lock and take it again: the upserts that were waiting go first (the
        new request queues behind them), so this returns once they are committed."""
        self._conn.commit()
        self.take()

    def a_write_waits(self) -> bool:
        row = self._conn.execute(self._waiting).fetchone()
        return bool(row and row[0])


def _rows(dsn: str, collection: str) -> int:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(collection))).fetchone()
        return int(row[0]) if row else 0


def _processes(where: Callable[[str], bool]) -> list[int]:
    """The pids of the processes whose title (Ray's ``ray::Task``, padded) matches."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if where(" ".join(process.info["cmdline"] or []).strip()):
                found.append(int(process.info["pid"]))
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, encoder: Any) -> tuple[Path, dict[str, str]]:
    """FILES JSONL files of short one-chunk records, and the rows they must become."""
    folder = tmp_path_factory.mktemp("multinode")
    rng = random.Random(11)
    for part in range(FILES):
        with (folder / f"part-{part:03d}.jsonl").open("w", encoding="utf-8") as handle:
            for index in range(part, DOCUMENTS, FILES):
                words = " ".join(rng.choice(WORDS) for _ in range(8))
                handle.write(
                    json.dumps({"id": f"doc-{index:05d}", "text": f"Record {index}: {words}."}) + "\n"
                )
    expected = expected_rows(encoder, folder)
    assert len(expected) == DOCUMENTS, "one chunk per record"
    return folder, expected


@pytest.fixture
def job(
    cluster: _Cluster,
    corpus: tuple[Path, dict[str, str]],
    tiny_model_dir: Path,
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> Iterator[_Job]:
    """A fresh collection, created, and a folder for the backends' markers and the logs."""
    from e5_integrations.ingest import open_sink

    job = _Job(cluster, *corpus, tiny_model_dir, pg_dsn, tmp_path)
    yield job
    with open_sink("pgvector", pg_dsn, job.collection) as sink, contextlib.suppress(Exception):
        sink.drop()


def test_a_worker_node_removed_mid_run_ends_exact(job: _Job) -> None:
    """The worker node dies (its raylet, object store, embedding actor and write tasks) after
    its actor has embedded rows and some rows are stored: Ray restarts the actor on the head,
    re-runs what was lost, and the run ends exact on the one node left."""
    cluster = job.cluster
    worker_node = cluster.worker_node
    try:
        with job.locked() as lock:
            # one actor per node (Ray Data spreads them); the head's waits until the worker
            # node's has embedded a batch
            run = job.start(workers=2, first_node=worker_node)
            job.wait(
                lambda: embedded_by_node(job.gate).get(worker_node, 0) > 0 and lock.a_write_waits(),
                "rows embedded on the worker node and a write waiting on the table",
                run,
            )
            lock.let_waiting_writes_through()
            stored = job.rows()
            assert cluster.command("remove-worker") == {"removed": True}
        report = job.finish(run)
    finally:
        info = cluster.command("add-worker")  # a fresh worker node for the next tests
        cluster.worker_raylet, cluster.worker_node = info["worker_raylet"], info["worker_node"]
    assert 0 < stored < len(job.expected), "the node must be removed mid-run"
    assert set(embedded_by_node(job.gate)) - {worker_node}, "the head's actor embedded too"
    job.assert_exact(report)


def test_a_killed_writer_task_is_retried_and_ends_exact(job: _Job) -> None:
    """Write tasks are killed (SIGKILL) in the middle of their upserts, where the table lock
    holds them, after other writes were stored: Ray retries them and the run ends exact."""
    with job.locked() as lock:
        run = job.start()
        job.wait(lock.a_write_waits, "a write waiting on the table", run)
        lock.let_waiting_writes_through()
        stored = job.rows()
        job.wait(lock.a_write_waits, "another write waiting on the table", run)
        writers = _processes(lambda title: title.startswith("ray::") and "Write" in title)
        assert writers, "the waiting writes are write tasks at work"
        for pid in writers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    report = job.finish(run)
    assert 0 < stored < len(job.expected)
    job.assert_exact(report)


def test_a_killed_driver_then_a_rerun_ends_exact(job: _Job) -> None:
    """The driver is killed (SIGKILL) with some rows stored and writes waiting: Ray ends the
    job. The same command run again skips what was stored and ends exact."""
    with job.locked() as lock:
        run = job.start()
        job.wait(lock.a_write_waits, "a write waiting on the table", run)
        lock.let_waiting_writes_through()
        run.process.send_signal(signal.SIGKILL)
        run.process.communicate(timeout=60)
    stored = job.rows()
    assert 0 < stored < len(job.expected), "the driver must die mid-run"
    again = job.finish(job.start())
    assert again["skipped_unchanged"] >= stored  # what the killed job stored is not embedded again
    job.assert_exact(again)
