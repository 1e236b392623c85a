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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

if TYPE_CHECKING:
    from e5_integrations.ingest._layout import Layout
    from e5_integrations.ingest._sources import Document

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

#: Metadata keys the pipeline writes on every chunk.
SOURCE_KEY = "source"
CHUNK_INDEX_KEY = "chunk_index"
#: Metadata key holding the id of the document a chunk belongs to.
DOCUMENT_ID_KEY = "document_id"
#: Hash of (model, max_length, text) so a re-run can skip chunks stored unchanged.
CONTENT_HASH_KEY = "e5_content_hash"
#: Metadata keys a document may not bring: the pipeline writes them on every chunk.
RESERVED_METADATA_KEYS = frozenset({SOURCE_KEY, CHUNK_INDEX_KEY, DOCUMENT_ID_KEY})
#: Metadata keys with this prefix are the package's (content hash, a sink's own bookkeeping
#: such as Chroma's ``e5_json_keys``); a document may not bring them either.
RESERVED_METADATA_PREFIX = "e5_"


def reserved_metadata_key(key: str) -> bool:
    """Whether ``key`` is the pipeline's or a sink's bookkeeping, never a user field."""
    return key in RESERVED_METADATA_KEYS or key.startswith(RESERVED_METADATA_PREFIX)


def e5_document_id(metadata: Any) -> str | None:
    """The document id of a record that e5 wrote, from its metadata; ``None`` for any other row.

    A row is e5's only when its metadata holds both ``document_id`` and e5's own
    ``e5_content_hash`` as strings. ``document_id`` alone is not enough: LlamaIndex writes
    one on every node (its ref doc id), and apps keep one in their LangChain metadata, so
    their rows in a shared collection would be pruned as documents that left the sources.
    Sinks use this in :meth:`Sink.scan`.
    """
    if not isinstance(metadata, Mapping):
        return None
    document_id = metadata.get(DOCUMENT_ID_KEY)
    marked = isinstance(metadata.get(CONTENT_HASH_KEY), str)
    if document_id == "None" and ("_node_type" in metadata or "_node_content" in metadata):
        return None  # LlamaIndex's placeholder for a node without a ref doc: no document at all
    return document_id if marked and isinstance(document_id, str) else None


_SURROGATE = re.compile("[\ud800-\udfff]")
_S = TypeVar("_S", bound="Sink")


def metadata_strings(value: Any, where: str = "metadata") -> Iterator[tuple[str, str]]:
    """Every key and string value in a metadata value, nested ones too, as ``(where, string)``
    (``where`` names the field, e.g. ``metadata['tags'][1]``), for the sinks' checks."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield f"the key {key!r} of {where}", str(key)
            yield from metadata_strings(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from metadata_strings(item, f"{where}[{index}]")


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


#: How long every sink keeps retrying a store it cannot reach before it gives up, in
#: seconds (``e5 ingest --retry-seconds``, ``retry_seconds=`` on the sinks and ``open_sink``).
DEFAULT_RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class Record:
    """One chunk to store.

    Attributes:
        id: deterministic chunk id (source id or path + chunk index); the primary key.
        text: the chunk text.
        metadata: JSON-serialisable metadata; includes ``source``, ``chunk_index`` and
            ``e5_content_hash``.
        embedding: float32 vector of the collection's dimension.
    """

    id: str
    text: str
    metadata: Mapping[str, Any]
    embedding: np.ndarray


@dataclass(frozen=True)
class Hit:
    """One search result. ``score`` is cosine similarity (higher is closer)."""

    id: str
    score: float
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


class Sink(abc.ABC):
    """A vector store collection that the pipeline writes to and searches.

    Implementations import their client library lazily (in ``__init__``) and raise an
    ``ImportError`` naming the extra to install when it is missing.
    """

    #: Store name as given to ``--store``.
    name: ClassVar[str]
    #: Collection (table) name this sink writes to; set by ``__init__``.
    collection: str

    #: The layouts this store can write and read (``e5_integrations.ingest._layout``).
    layouts: ClassVar[tuple[str, ...]] = ("e5", "langchain", "llama-index")
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
        from e5_integrations.ingest._layout import get_layout, resolve_layout

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
        from e5_integrations.ingest._layout import get_layout

        return _lone_surrogate(document) or get_layout(layout, cls.layouts, cls.name).check_document(document)

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
