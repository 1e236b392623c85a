"""Fixtures for the vector store sink tests (real engines; see the _*.py fixture modules)."""

from tests.stores._pg_server import pg_dsn, pg_sink  # noqa: F401
from tests.stores._qdrant import qdrant_sink, qdrant_uri  # noqa: F401
