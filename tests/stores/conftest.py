"""Fixtures for the vector store sink tests (real engines; see the _*.py fixture modules)."""

from tests.stores._chroma_server import chroma_server_url, chroma_sink, chroma_uri  # noqa: F401
from tests.stores._milvus_server import milvus_server_uri, milvus_sink, milvus_uri  # noqa: F401
from tests.stores._pg_server import pg_dsn, pg_sink  # noqa: F401
from tests.stores._qdrant import qdrant_sink, qdrant_uri  # noqa: F401
