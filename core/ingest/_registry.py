"""Map ``--store``/``--uri`` to a sink class, importing the store's client lazily."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from e5_integrations._errors import ConfigurationError, for_front, option
from e5_integrations._redact import redact
from e5_integrations.ingest._sink import Sink

__all__ = ["DEFAULT_STORE_DIR", "STORES", "infer_store", "open_sink", "sink_class"]

#: store name -> "module:Class" (imported only when used) and the pip extra it needs.
STORES: dict[str, tuple[str, str]] = {
    "chroma": ("e5_integrations.sinks.chroma:ChromaSink", "chroma"),
    "milvus": ("e5_integrations.sinks.milvus:MilvusSink", "milvus"),
    "qdrant": ("e5_integrations.sinks.qdrant:QdrantSink", "qdrant"),
    "pgvector": ("e5_integrations.sinks.pgvector:PGVectorSink", "pgvector"),
}

#: With no --store and no --uri: an embedded Chroma store in the working directory.
DEFAULT_STORE_DIR = ".e5-store"


def _store_at(uri: str) -> str | None:
    """The embedded store whose files are at ``uri``, recognised by them, or ``None``."""
    path = Path(uri)
    if uri.endswith(".db") and path.exists():
        return "milvus"  # Milvus Lite keeps a collection set in one .db file
    if path.is_dir():
        if (path / "chroma.sqlite3").is_file():
            return "chroma"
        if (path / "meta.json").is_file() or (path / "collection").is_dir():
            return "qdrant"  # qdrant-client's local mode
    return None


def _is_path(uri: str) -> bool:
    return uri != ":memory:" and not uri.startswith(("http://", "https://", "postgresql://", "postgres://"))


def infer_store(store: str | None, uri: str | None, *, existing: bool = False) -> tuple[str, str]:
    """Resolve ``(store, uri)`` from what the user gave.

    - nothing: embedded Chroma in ``./.e5-store``;
    - ``postgresql://`` URIs mean pgvector, ``:memory:`` Qdrant;
    - a path holding a store is that store: a folder with ``chroma.sqlite3`` is Chroma, one
      with Qdrant's ``meta.json`` is Qdrant local, a ``.db`` file is Milvus Lite;
    - a new path is Chroma, or Milvus Lite when it ends in ``.db``;
    - a server URI (``http(s)://``) needs ``store``.

    Args:
        existing: the store must exist already, as for a search, which never creates one: a
            path with nothing at it, or with files of no known store, is an error instead
            of a new database.

    Raises:
        ConfigurationError: unknown store, a server URI without ``store``, or (``existing``)
            no store at the path.
    """
    if store is not None and store not in STORES:
        raise ConfigurationError(
            f"unknown store {store!r}; expected one of {sorted(STORES)} (e.g. {option('store', 'chroma')})"
        )
    if uri is None:
        if store == "pgvector":
            raise ConfigurationError(
                f"{option('store', 'pgvector')} needs {option('uri', 'postgresql://USER@HOST:PORT/DB')}"
            )
        name = store or "chroma"
        default = str(
            Path(DEFAULT_STORE_DIR) / {"chroma": "chroma", "milvus": "milvus.db", "qdrant": "qdrant"}[name]
        )
        if existing and not os.path.exists(default):
            raise ConfigurationError(
                f"no {name} store at the default location {default!r} (relative to {os.getcwd()}); "
                f"run `e5 ingest SOURCE...` first, or pass {option('uri')} (and {option('store')}) "
                "of an existing store"
            )
        return name, default
    if store is None:
        if uri.startswith(("postgresql://", "postgres://")):
            return "pgvector", uri
        if uri == ":memory:":
            return "qdrant", uri
        if uri.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"cannot tell which store serves {redact(uri)!r}; "
                + for_front(
                    "pass store='chroma', 'milvus' or 'qdrant'", "add --store chroma, milvus or qdrant"
                )
            )
        found = _store_at(uri)
        if found is not None:
            return found, uri
        if existing:
            _missing_store(uri)
            raise ConfigurationError(
                f"cannot tell which store is at {uri!r}: no Chroma database (chroma.sqlite3), no Qdrant "
                f"folder (meta.json) and no Milvus Lite file (.db); pass {option('store', 'chroma')}, "
                f"{option('store', 'qdrant')} or {option('store', 'milvus')}, "
                f"or point {option('uri')} at the store"
            )
        return ("milvus" if uri.endswith(".db") else "chroma"), uri
    if existing and _is_path(uri):
        _missing_store(uri)
    return store, uri


def _missing_store(uri: str) -> None:
    if not os.path.exists(uri):
        raise ConfigurationError(
            f"nothing at {uri!r}; a search reads an existing store and never creates one. Check the path"
            + for_front(", or ingest into it first", f", or run `e5 ingest SOURCE... --uri {uri}` first")
        )


def open_sink(
    store: str | None,
    uri: str | None,
    collection: str,
    *,
    existing: bool = False,
    retry_seconds: float | None = None,
    **options: Any,
) -> Sink:
    """Instantiate the sink for ``store`` at ``uri`` / ``collection`` (see :func:`infer_store`).

    Args:
        store, uri: the store and where it is (see :func:`infer_store`).
        collection: the collection (table) name.
        existing: open only a store that exists (a search): never create a database.
        retry_seconds: how long each store call keeps being retried while the store cannot
            be reached (``None``: ``DEFAULT_RETRY_SECONDS``, 60 s); the same for every store.
        options: passed to the sink class (``api_key=``, ``timeout=``...).

    Raises:
        ConfigurationError: unknown store or ambiguous URI, or (``existing``) no store there.
        ImportError: the store's client is not installed; names the extra.
    """
    name, resolved_uri = infer_store(store, uri, existing=existing)
    sink_cls = cast(Callable[..., Sink], sink_class(name))
    return sink_cls(uri=resolved_uri, collection=collection, retry_seconds=retry_seconds, **options)


def sink_class(store: str) -> type[Sink]:
    """The sink class of ``store`` (a key of :data:`STORES`), without connecting.

    Raises:
        ConfigurationError: unknown store.
        ImportError: the store's client is not installed; names the extra.
    """
    if store not in STORES:
        raise ConfigurationError(
            f"unknown store {store!r}; expected one of {sorted(STORES)}"
            + for_front(" (store='chroma')", " (--store chroma)")
        )
    target, extra = STORES[store]
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"the {store} sink needs its client library ({exc.name or exc}); "
            f"install it with: pip install 'e5-integrations[{extra}]'"
        ) from exc
    sink_cls: type[Sink] = getattr(module, class_name)
    return sink_cls
