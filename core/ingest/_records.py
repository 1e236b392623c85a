"""The plain data of ingestion: what a sink stores and returns, and the metadata keys.

A leaf module: it imports nothing from the rest of the package, so the layouts
(``_layout``), the sink interface (``_sink``) and the sources (``_sources``) all build on it
without importing each other in a circle. Every name is re-exported where it was before
(``e5_integrations.ingest``, ``e5_integrations.ingest._sink``) and, for sink authors, by
``e5_integrations.sinks``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
