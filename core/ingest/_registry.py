"""Map ``--store``/``--uri`` to a sink class, importing the store's client lazily."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from e5_integrations._errors import ConfigurationError
from e5_integrations._redact import redact
from e5_integrations.ingest._sink import Sink

__all__ = ["DEFAULT_STORE_DIR", "STORES", "infer_store", "open_sink"]

#: store name -> "module:Class" (imported only when used) and the pip extra it needs.
STORES: dict[str, tuple[str, str]] = {
    "chroma": ("e5_integrations.sinks.chroma:ChromaSink", "chroma"),
    "milvus": ("e5_integrations.sinks.milvus:MilvusSink", "milvus"),
    "qdrant": ("e5_integrations.sinks.qdrant:QdrantSink", "qdrant"),
    "pgvector": ("e5_integrations.sinks.pgvector:PGVectorSink", "pgvector"),
}

#: With no --store and no --uri: an embedded Chroma store in the working directory.
DEFAULT_STORE_DIR = ".e5-store"


def infer_store(store: str | None, uri: str | None) -> tuple[str, str]:
    """Resolve ``(store, uri)`` from what the user gave.

    - nothing: embedded Chroma in ``./.e5-store``;
    - ``postgresql://`` URIs mean pgvector, ``*.db`` files mean Milvus Lite;
    - otherwise ``--store`` is required for a server URI.
    """
    if store is not None and store not in STORES:
        raise ConfigurationError(
            f"unknown store {store!r}; expected one of {sorted(STORES)} (e.g. --store chroma)"
        )
    if uri is None:
        if store in (None, "chroma"):
            return "chroma", str(Path(DEFAULT_STORE_DIR) / "chroma")
        if store == "milvus":
            return "milvus", str(Path(DEFAULT_STORE_DIR) / "milvus.db")
        if store == "qdrant":
            return "qdrant", str(Path(DEFAULT_STORE_DIR) / "qdrant")
        raise ConfigurationError(
            "--store pgvector needs --uri postgresql://USER@HOST:PORT/DB (or the PG_DSN env var)"
        )
    if store is None:
        if uri.startswith(("postgresql://", "postgres://")):
            return "pgvector", uri
        if uri.endswith(".db"):
            return "milvus", uri
        if uri == ":memory:":
            return "qdrant", uri
        if uri.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"cannot tell which store serves {redact(uri)!r}; add --store chroma|milvus|qdrant"
            )
        return "chroma", uri
    return store, uri


def open_sink(
    store: str | None, uri: str | None, collection: str, *, retry_seconds: float | None = None, **options: Any
) -> Sink:
    """Instantiate the sink for ``store`` at ``uri`` / ``collection``.

    Args:
        store, uri: the store and where it is (see :func:`infer_store`).
        collection: the collection (table) name.
        retry_seconds: how long each store call keeps being retried while the store cannot
            be reached (``None``: ``DEFAULT_RETRY_SECONDS``, 60 s); the same for every store.
        options: passed to the sink class (``api_key=``, ``timeout=``...).

    Raises:
        ConfigurationError: unknown store or ambiguous URI.
        ImportError: the store's client is not installed; names the extra.
    """
    name, resolved_uri = infer_store(store, uri)
    target, extra = STORES[name]
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"the {name} sink needs its client library ({exc.name or exc}); "
            f"install it with: pip install 'e5-integrations[{extra}]'"
        ) from exc
    sink_cls: type[Sink] = getattr(module, class_name)
    return sink_cls(uri=resolved_uri, collection=collection, retry_seconds=retry_seconds, **options)
