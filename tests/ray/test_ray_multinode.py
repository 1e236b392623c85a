"""The Ray engine on a cluster of two nodes (issue 25, item 4): a worker node removed mid-run,
a writer task killed, and the driver killed then started again. Each ends exact: one row per
chunk, no duplicates, no row lost, counted in the store.

The cluster runs in a process of its own (``tests/ray/_cluster.py``: a head and a worker node,
each its own raylet, object store and workers) and every e5 driver is a separate ``e5 ingest
--engine ray --ray-address`` process, as on a real cluster; this test process only watches
the processes and the store.
"""

from __future__ import annotations

import contextlib
import json
import os
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

from tests.ray.conftest import _kill_ray_processes, dump_rows, write_corpus
from tests.ray.test_ray_engine import CHUNK, expected_rows
from tests.stores._pg_server import pg_dsn  # noqa: F401  (the session's Postgres)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: Documents per run, in FILES files: enough that the run is still embedding when the fault
#: is injected.
DOCUMENTS = 800
FILES = 40
#: How long a run, or the wait for a process to appear, may take on a busy CI machine.
PATIENCE_S = 600


@dataclass
class _Cluster:
    process: subprocess.Popen[str]
    address: str
    worker_raylet: int

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
    running = _Cluster(process, info["address"], info["worker_raylet"])
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
        _kill_ray_processes(temp_dir)


def _driver(cluster: _Cluster, corpus: Path, dsn: str, collection: str, model: Path) -> subprocess.Popen[str]:
    """A driver process running ``ingest_ray`` against the cluster (the job's driver), printing
    the report as JSON. Small actor calls and write requests, so rows reach the store all
    through the run (at the default sizes a corpus this small is one write at the end)."""
    options = {
        "store": "pgvector",
        "uri": dsn,
        "collection": collection,
        "model": str(model),
        "dtype": "fp32",
        "ray_address": cluster.address,
        "workers": 3,
        "writers": 2,
        "gpus_per_worker": 0,
        "embed_batch_rows": 16,
        "write_batch_records": 64,
        "progress": False,
        **CHUNK,
    }
    code = (
        "import contextlib, json, sys\n"
        "from e5_integrations.ray import ingest_ray\n"
        "with contextlib.redirect_stdout(sys.stderr):\n"
        f"    report = ingest_ray([{str(corpus)!r}], **json.loads({json.dumps(options)!r}))\n"
        "print(json.dumps(report.to_dict()))\n"
    )
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _finish(driver: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = driver.communicate(timeout=PATIENCE_S)
    assert driver.returncode == 0, f"exit {driver.returncode}\n{err[-4000:]}"
    report: dict[str, Any] = json.loads(out)
    return report


def _processes(where: Callable[[Any], bool]) -> list[Any]:
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if where(process):
                found.append(process)
    return found


def _title(process: Any) -> str:
    return " ".join(process.info["cmdline"] or []).strip()  # Ray pads the title with spaces


def _rows(dsn: str, collection: str) -> int:
    import psycopg
    from psycopg import sql

    with contextlib.suppress(psycopg.errors.UndefinedTable), psycopg.connect(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(collection))).fetchone()
        return int(row[0]) if row else 0
    return 0


def _wait(condition: Callable[[], bool], what: str, driver: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if driver.poll() is not None:
            _, err = driver.communicate()
            raise AssertionError(f"the run ended (exit {driver.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _assert_exact(dsn: str, collection: str, expected: dict[str, str]) -> None:
    rows = dump_rows("pgvector", dsn, collection)
    assert {id_: text for id_, (text, _, _) in rows.items()} == expected
    assert _rows(dsn, collection) == len(expected)  # no duplicate: the count is the ids'


@pytest.fixture
def corpus(tmp_path: Path, encoder: Any) -> tuple[Path, dict[str, str]]:
    """A folder of many JSONL files (one read task and block each, so rows stream through the
    embedding actors and the write tasks while the run goes on), and the rows it must become."""
    made = write_corpus(tmp_path / "made", documents=DOCUMENTS, seed=11)
    folder = tmp_path / "docs"
    folder.mkdir()
    lines = (made / "records.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    for part in range(FILES):
        (folder / f"part-{part:03d}.jsonl").write_text("".join(lines[part::FILES]), encoding="utf-8")
    return folder, expected_rows(encoder, folder)


def _collection(name: str) -> str:
    return f"e5_multinode_{name}_{os.getpid()}_{time.monotonic_ns() % 10**6}"


def test_a_worker_node_removed_mid_run_ends_exact(
    cluster: _Cluster,
    corpus: tuple[Path, dict[str, str]],
    tiny_model_dir: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    import psutil

    folder, expected = corpus
    collection = _collection("node")
    driver = _driver(cluster, folder, pg_dsn, collection, tiny_model_dir)
    raylet = psutil.Process(cluster.worker_raylet)

    def embedding_on_the_worker_node() -> bool:
        """An embedding actor lives on the worker node, and the first rows are stored: the
        run is mid-way."""
        with contextlib.suppress(psutil.Error):
            titles = [" ".join(p.cmdline()).strip() for p in raylet.children(recursive=True)]
            there = any("EmbedChunks" in title for title in titles)
            return there and _rows(pg_dsn, collection) > 0
        return False

    _wait(embedding_on_the_worker_node, "an embedding actor at work on the worker node", driver)
    stored = _rows(pg_dsn, collection)
    assert cluster.command("remove-worker") == {"removed": True}
    try:
        report = _finish(driver)
    finally:
        cluster.worker_raylet = cluster.command("add-worker")["worker_raylet"]  # for the next tests
    assert stored < len(expected), "the node must be removed mid-run"
    assert report["chunks"] == len(expected)
    assert report["written"] + report["skipped_unchanged"] == len(expected)
    _assert_exact(pg_dsn, collection, expected)


def test_a_killed_writer_task_is_retried_and_ends_exact(
    cluster: _Cluster,
    corpus: tuple[Path, dict[str, str]],
    tiny_model_dir: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    folder, expected = corpus
    collection = _collection("writer")
    driver = _driver(cluster, folder, pg_dsn, collection, tiny_model_dir)
    killed: list[int] = []

    def kill_a_writer() -> bool:
        writers = _processes(lambda p: _title(p).startswith("ray::") and "Write" in _title(p))
        for process in writers:
            with contextlib.suppress(Exception):
                os.kill(process.info["pid"], signal.SIGKILL)
                killed.append(process.info["pid"])
        return bool(killed)

    _wait(kill_a_writer, "a write task to kill", driver)
    report = _finish(driver)
    assert report["chunks"] == len(expected)
    assert report["written"] + report["skipped_unchanged"] == len(expected)
    _assert_exact(pg_dsn, collection, expected)


def test_a_killed_driver_then_a_rerun_ends_exact(
    cluster: _Cluster,
    corpus: tuple[Path, dict[str, str]],
    tiny_model_dir: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    folder, expected = corpus
    collection = _collection("driver")
    driver = _driver(cluster, folder, pg_dsn, collection, tiny_model_dir)
    _wait(lambda: _rows(pg_dsn, collection) > 0, "the first rows", driver)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    stored = _rows(pg_dsn, collection)
    assert 0 < stored < len(expected), "the driver must die mid-run"
    again = _finish(_driver(cluster, folder, pg_dsn, collection, tiny_model_dir))
    assert again["chunks"] == len(expected)
    assert again["skipped_unchanged"] >= stored > 0  # what the killed job stored is not embedded again
    assert again["written"] + again["skipped_unchanged"] == len(expected)
    _assert_exact(pg_dsn, collection, expected)
