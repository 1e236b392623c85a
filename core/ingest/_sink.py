"""The sink interface: what the ingestion pipeline needs from a vector store.

A sink is small on purpose. The pipeline owns chunking, ids, skipping unchanged chunks,
batching and retries; a sink only maps these few calls onto one store's client. The
Chroma, Milvus, Qdrant and PGVector sinks (``e5_integrations.sinks``) implement it; the Ray
engine's ``Datasink`` (``e5_integrations.ray``) writes through them, one sink per worker
process.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "CHUNK_INDEX_KEY",
    "CONTENT_HASH_KEY",
    "DEFAULT_RETRY_SECONDS",
    "DOCUMENT_ID_KEY",
    "SOURCE_KEY",
    "Hit",
    "Record",
    "Sink",
]

#: Metadata keys the pipeline writes on every chunk.
SOURCE_KEY = "source"
CHUNK_INDEX_KEY = "chunk_index"
#: Metadata key holding the id of the document a chunk belongs to.
DOCUMENT_ID_KEY = "document_id"
#: Hash of (model, max_length, text) so a re-run can skip chunks stored unchanged.
CONTENT_HASH_KEY = "e5_content_hash"
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
        """Return ``{id: content_hash}`` for the ids already stored (missing ids are absent)."""

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

        The document id is the ``document_id`` metadata the pipeline writes; ``None`` for a
        record without one (not written by this package). Used to prune chunks of
        documents that left the sources. Nothing is yielded for a missing collection.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support scan")

    def delete(self, ids: Iterable[str]) -> None:
        """Delete records by id (used to drop stale chunks of a shrunk document)."""
        raise NotImplementedError(f"{type(self).__name__} does not support delete")

    def drop(self) -> None:
        """Drop the whole collection (tests and ``force_recreate``)."""
        raise NotImplementedError(f"{type(self).__name__} does not support drop")

    def close(self) -> None:
        """Release client resources. Safe to call twice."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
