"""The sink interface: what the ingestion pipeline needs from a vector store.

A sink is small on purpose. The pipeline owns chunking, ids, skipping unchanged chunks,
batching and retries; a sink only maps these few calls onto one store's client. The
Chroma, Milvus, Qdrant and PGVector sinks (``e5_integrations.sinks``) implement it; the Ray
engine's ``Datasink`` (``e5_integrations.ray``) writes through them, one sink per worker
process.
"""

from __future__ import annotations

import abc
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from e5_integrations.ingest._layout import LAYOUTS, Layout, get_layout, resolve_layout
from e5_integrations.ingest._records import (
    CHUNK_INDEX_KEY,
    CONTENT_HASH_KEY,
    DEFAULT_RETRY_SECONDS,
    DOCUMENT_ID_KEY,
    RESERVED_METADATA_KEYS,
    RESERVED_METADATA_PREFIX,
    SOURCE_KEY,
    Hit,
    Record,
    e5_document_id,
    metadata_strings,
    reserved_metadata_key,
)

if TYPE_CHECKING:
    from e5_integrations.ingest._readers._base import Document

__all__ = [
    "CHUNK_INDEX_KEY",
    "CONTENT_HASH_KEY",
    "DEFAULT_RETRY_SECONDS",
    "DOCUMENT_ID_KEY",
    "RESERVED_METADATA_KEYS",
    "RESERVED_METADATA_PREFIX",
    "SOURCE_KEY",
    "Hit",
    "Record",
    "Sink",
    "e5_document_id",
    "metadata_strings",
    "reserved_metadata_key",
]

_SURROGATE = re.compile("[\ud800-\udfff]")
_S = TypeVar("_S", bound="Sink")


def _lone_surrogate(document: Document) -> str | None:
    fields = [("the id", document.id), ("the text", document.text), *metadata_strings(document.metadata)]
    for where, value in fields:
        found = _SURROGATE.search(value)
        if found is not None:
            return (
                f"{where} holds a lone surrogate (\\u{ord(found.group()):04x} at character {found.start()}), "
                "which is not Unicode and which no store can encode; fix the \\u escapes in the source"
            )
    return None


class Sink(abc.ABC):
    """A vector store collection that the pipeline writes to and searches.

    Implementations import their client library lazily (in ``__init__``) and raise an
    ``ImportError`` naming the extra to install when it is missing.
    """

    #: Store name as given to ``--store``.
    name: ClassVar[str]
    #: Collection (table) name this sink writes to; set by ``__init__``.
    collection: str

    #: The layouts this store can write and read: the built-in layouts every store has
    #: (``LAYOUTS``, from the layout registry); a store with more lists them (names
    #: registered with ``register_layout``).
    layouts: ClassVar[tuple[str, ...]] = LAYOUTS
    #: The layout asked for (``layout=``); ``None``: the existing collection's, else ``e5``.
    requested_layout: str | None = None
    _resolved_layout: Layout | None = None

    @property
    def layout(self) -> Layout:
        """The layout this sink writes and reads: the existing collection's (found by
        :meth:`detect_layout`), else the requested one, else ``e5``. Resolved on first use
        and kept; :meth:`forget_layout` drops it (after ``drop``).

        Raises:
            SchemaMismatchError: the collection is in another layout than the requested one.
        """
        if self._resolved_layout is None:
            where = f"{self.name} collection {self.collection!r}"
            if self.requested_layout is not None:
                get_layout(self.requested_layout, self.layouts, self.name)
            name = resolve_layout(self.requested_layout, self.detect_layout(), where)
            self._resolved_layout = get_layout(name, self.layouts, self.name)
        return self._resolved_layout

    def forget_layout(self) -> None:
        """Detect the layout again at next use (the collection was dropped or recreated)."""
        self._resolved_layout = None

    def detect_layout(self) -> str | None:
        """The layout of the existing collection, from its schema or its rows; ``None`` when
        it does not exist or does not show one (empty, and made by a framework that leaves no
        mark). The default claims nothing."""
        return None

    def document_check(self) -> Callable[[Document], str | None]:
        """:meth:`check_document` in this sink's :attr:`layout` (resolving it: a layout
        mismatch fails here, before anything is read or written)."""
        return functools.partial(type(self).check_document, layout=self.layout.name)

    @classmethod
    def check_document(cls, document: Document, layout: str = "e5") -> str | None:
        """Why this store would refuse the chunks of ``document``, or ``None`` if it takes them.

        The pipeline's check pass calls it on every document before anything is written
        (both engines; a class method, so Ray workers call it without a connection). A
        refused document is an invalid record: it fails the run naming its file and line,
        or is skipped and reported under ``on_error="skip"``, instead of failing a write
        midway. The chunks of a document are substrings of ``document.text`` with ids
        ``"{document.id}#{index}"`` and its metadata plus the bookkeeping keys, so
        checking the document covers them.

        The default refuses lone surrogates (``"\\ud800"`` from a JSON escape), which no
        store can encode as UTF-8, and fields that ``layout`` keeps for itself. A sink adds
        its store's own rules (per layout) and calls ``super()``. Return a message that says
        what is wrong and how to fix it.
        """
        return _lone_surrogate(document) or get_layout(layout, cls.layouts, cls.name).check_document(document)

    def begin_bulk_load(self) -> None:
        """Called once, before ``ensure_collection``, by a run that calls :meth:`finalize`
        after its last upsert (``e5 ingest``, :func:`ingest`, :func:`ingest_ray`): a sink may
        then leave to ``finalize`` the indexes that are cheaper to build once than to grow row
        by row (PGVector's HNSW index on a table this run creates).

        Code that writes through a sink without ever calling ``finalize`` must not call it
        either, so its collections are indexed from the start. The default does nothing.
        """

    @abc.abstractmethod
    def ensure_collection(self, dim: int) -> None:
        """Create the collection (cosine metric) or check that the existing one matches.

        Raises:
            SchemaMismatchError: it exists with another dimension or metric. Nothing is written.
            StoreUnavailableError: the store cannot be reached.
        """

    @abc.abstractmethod
    def max_batch_records(self, dim: int) -> int:
        """How many records of dimension ``dim`` one upsert request may carry under the
        store's limits (request size, ``get_max_batch_size()``)."""

    @abc.abstractmethod
    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """Return ``{id: content_hash}`` for the ids already stored with e5's content hash
        (missing ids, and rows without a string ``e5_content_hash``, are absent: stale-chunk
        deletion deletes only ids found here, so it never touches another writer's rows)."""

    @abc.abstractmethod
    def upsert(self, records: Sequence[Record]) -> None:
        """Insert or replace records by id; returns only when the store acknowledged them
        and a following read sees them. Idempotent. ``len(records)`` never exceeds
        ``max_batch_records``."""

    def set_content_hashes(self, values: Mapping[str, str]) -> int:
        """Replace the ``e5_content_hash`` of stored chunks (``{chunk id: new value}``) and
        nothing else of their rows: text, vector and every other metadata key stay as they
        are; where the layout keeps a second copy of the metadata (LlamaIndex's
        ``_node_content``), that copy's hash changes too (:func:`with_content_hash`).

        Ids not stored, or stored without a string ``e5_content_hash`` (not e5's rows), are
        left alone, and so are rows that hold the value already. Returns how many rows were
        changed (0 when called again with the same values); a following :meth:`fetch_hashes`
        sees the new values.

        ``ingest_ray`` calls it after its job to seal the files it read whole (see
        ``e5_integrations.ingest._file_seals``): a write of the hash alone, since the Ray
        engine writes a file's rows in no set order. A sink without it (the default raises
        ``NotImplementedError``) still works with both engines; the Ray engine then reads
        every file again on each run.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support set_content_hashes")

    @abc.abstractmethod
    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` nearest records to ``vector`` by cosine similarity, best first."""

    @abc.abstractmethod
    def count(self) -> int:
        """Number of records in the collection (0 if it does not exist)."""

    def dimension(self) -> int | None:
        """The vector dimension of the existing collection, ``None`` when it does not exist
        (or the store cannot tell). ``search`` checks a query against it."""
        return None

    @property
    def retry_wait_seconds(self) -> float:
        """Seconds this sink has spent waiting between retries of an unreachable store."""
        return 0.0

    def finalize(self) -> None:
        """Called once after a run's last upsert: build deferred indexes, refresh statistics.

        The default does nothing; PGVector builds its binary-quantised HNSW index here.
        Safe to call more than once.
        """

    def scan(self, page_size: int = 1000) -> Iterator[list[tuple[str, str | None]]]:
        """Every stored record as pages of ``(id, document id)``.

        The document id is :func:`e5_document_id` of the record's metadata: the
        ``document_id`` the pipeline writes, ``None`` for a record without it or without
        e5's ``e5_content_hash`` (not written by this package: a LangChain or LlamaIndex row
        in a shared collection). Used to prune chunks of documents that left the sources,
        which deletes only records with a document id. Nothing is yielded for a missing
        collection.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support scan")

    def delete(self, ids: Iterable[str]) -> None:
        """Delete records by id (used to drop stale chunks of a shrunk document)."""
        raise NotImplementedError(f"{type(self).__name__} does not support delete")

    def drop(self) -> None:
        """Drop the whole collection, to rebuild it (tests; e5 itself never drops one)."""
        raise NotImplementedError(f"{type(self).__name__} does not support drop")

    def close(self) -> None:
        """Release client resources. Safe to call twice."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
