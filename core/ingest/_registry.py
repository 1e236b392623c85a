"""Map ``--store``/``--uri`` to a sink class, importing the store's client lazily."""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

from e5_integrations._errors import ConfigurationError, for_front, option
from e5_integrations._redact import redact
from e5_integrations.ingest._sink import Sink
from e5_integrations.ingest._sources import Document

__all__ = [
    "DEFAULT_STORE_DIR",
    "STORES",
    "StoreEntry",
    "document_check",
    "infer_store",
    "is_shared_store",
    "open_sink",
    "register_store",
    "sink_class",
]


class StoreEntry(NamedTuple):
    """One row of :data:`STORES`: everything the CLI, :func:`open_sink` and the Ray engine
    need to know about a store, without importing its client.

    Attributes:
        target: ``"module:Class"`` of its :class:`~e5_integrations.ingest.Sink` (imported on use).
        extra: the pip extra that installs its client.
        default_path: its embedded store under :data:`DEFAULT_STORE_DIR` when no ``--uri`` is
            given (``None``: it needs a URI).
        uri_schemes: URI prefixes that mean this store (``postgresql://``).
        markers: names inside a folder that show this store is there (a file or a folder);
            ``*.db``-style entries match the URI itself.
        server_only: every URI is a server many processes may write at once.
    """

    target: str
    extra: str
    default_path: str | None = None
    uri_schemes: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    server_only: bool = False


#: store name -> its entry. The one list of stores: ``--store``'s choices, :func:`infer_store`,
#: :func:`open_sink` and the Ray engine read it. A fifth store is one sink module plus
#: :func:`register_store` (or an ``e5_integrations.stores`` entry point naming a StoreEntry).
STORES: dict[str, StoreEntry] = {
    "chroma": StoreEntry(
        "e5_integrations.sinks.chroma:ChromaSink", "chroma", "chroma", markers=("chroma.sqlite3",)
    ),
    "milvus": StoreEntry("e5_integrations.sinks.milvus:MilvusSink", "milvus", "milvus.db", markers=("*.db",)),
    "qdrant": StoreEntry(
        "e5_integrations.sinks.qdrant:QdrantSink",
        "qdrant",
        "qdrant",
        uri_schemes=(":memory:",),
        markers=("meta.json", "collection/"),
    ),
    "pgvector": StoreEntry(
        "e5_integrations.sinks.pgvector:PGVectorSink",
        "pgvector",
        uri_schemes=("postgresql://", "postgres://"),
        server_only=True,
    ),
}

#: With no --store and no --uri: an embedded Chroma store in the working directory.
DEFAULT_STORE_DIR = ".e5-store"
#: The store of a new path (neither a server URI nor an existing store).
_DEFAULT_STORE = "chroma"


def register_store(name: str, entry: StoreEntry) -> None:
    """Add (or replace) a store: ``--store name``, :func:`open_sink` and the Ray engine use it."""
    STORES[name] = entry


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for point in entry_points(group="e5_integrations.stores"):
        entry = point.load()
        if not isinstance(entry, StoreEntry):
            raise ConfigurationError(
                f"the e5_integrations.stores entry point {point.name!r} ({point.value}) gives "
                f"{type(entry).__name__}; expected an e5_integrations.ingest.StoreEntry"
            )
        STORES.setdefault(point.name, entry)


_load_entry_points()


def is_shared_store(store: str, uri: str) -> bool:
    """Whether many processes may write ``store`` at ``uri`` at once (a server, not a file)."""
    return STORES[store].server_only or uri.startswith(("http://", "https://"))


def _store_at(uri: str) -> str | None:
    """The embedded store whose files are at ``uri``, recognised by them, or ``None``."""
    path = Path(uri)
    for name, entry in STORES.items():
        for marker in entry.markers:
            if marker.startswith("*"):
                if uri.endswith(marker[1:]) and path.exists():
                    return name  # e.g. Milvus Lite keeps a collection set in one .db file
            elif path.is_dir() and (
                (path / marker.rstrip("/")).is_dir() if marker.endswith("/") else (path / marker).is_file()
            ):
                return name
    return None


def _is_path(uri: str) -> bool:
    schemes = tuple(scheme for entry in STORES.values() for scheme in entry.uri_schemes)
    return not uri.startswith(("http://", "https://", *schemes))


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
        name = store or _DEFAULT_STORE
        if STORES[name].default_path is None:
            example = (STORES[name].uri_schemes or ("http://",))[0] + "..."
            raise ConfigurationError(f"{option('store', name)} needs {option('uri', example)}")
        default = str(Path(DEFAULT_STORE_DIR) / str(STORES[name].default_path))
        if existing and not os.path.exists(default):
            raise ConfigurationError(
                f"no {name} store at the default location {default!r} (relative to {os.getcwd()}); "
                f"run `e5 ingest SOURCE...` first, or pass {option('uri')} (and {option('store')}) "
                "of an existing store"
            )
        return name, default
    if store is None:
        for name, entry in STORES.items():
            if entry.uri_schemes and uri.startswith(entry.uri_schemes):
                return name, uri
        if uri.startswith(("http://", "https://")):
            servers = [name for name, entry in STORES.items() if not entry.uri_schemes]
            raise ConfigurationError(
                f"cannot tell which store serves {redact(uri)!r}; "
                + for_front(f"pass store= one of {servers}", f"add --store with one of {', '.join(servers)}")
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
        for name, entry in STORES.items():
            if any(m.startswith("*") and uri.endswith(m[1:]) for m in entry.markers):
                return name, uri
        return _DEFAULT_STORE, uri
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
    layout: str | None = None,
    **options: Any,
) -> Sink:
    """Instantiate the sink for ``store`` at ``uri`` / ``collection`` (see :func:`infer_store`).

    Args:
        store, uri: the store and where it is (see :func:`infer_store`).
        collection: the collection (table) name.
        existing: open only a store that exists (a search): never create a database.
        retry_seconds: how long each store call keeps being retried while the store cannot
            be reached (``None``: ``DEFAULT_RETRY_SECONDS``, 60 s); the same for every store.
        layout: ``"e5"``, ``"langchain"`` or ``"llama-index"`` (pgvector also
            ``"langchain-legacy"``): whose schema the collection follows (see
            ``e5_integrations.ingest._layout``). ``None``: the existing collection's, else ``e5``.
            An existing collection in another layout is a ``SchemaMismatchError`` at first use.
        options: passed to the sink class (``api_key=``, ``timeout=``...).

    Raises:
        ConfigurationError: unknown store or ambiguous URI, or (``existing``) no store there.
        ImportError: the store's client is not installed; names the extra.
    """
    name, resolved_uri = infer_store(store, uri, existing=existing)
    sink_cls = cast(Callable[..., Sink], sink_class(name))
    if layout is not None:
        from e5_integrations.ingest._layout import get_layout

        get_layout(layout, sink_class(name).layouts, name)  # an unknown layout fails before connecting
        options["layout"] = layout
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
    target, extra = STORES[store].target, STORES[store].extra
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


def document_check(store: str, layout: str = "e5") -> Callable[[Document], str | None]:
    """``store``'s ``check_document`` in ``layout``, without connecting (Ray workers)."""
    return functools.partial(sink_class(store).check_document, layout=layout)
