"""The sink-author API: everything a vector store sink needs, in one public module.

The built-in sinks (``e5_integrations.sinks.chroma``, ``.milvus``, ``.pgvector``,
``.qdrant``) import from here only, and so may a sink in another package, registered with
:func:`register_store` or an ``e5_integrations.stores`` entry point naming a
:class:`StoreEntry`. Importing this module loads no store client.

The data a sink stores and returns:
    ``Record`` (a chunk to store), ``Hit`` (a search result), ``Document`` (what
    ``Sink.check_document`` judges), and the metadata keys the pipeline writes:
    ``SOURCE_KEY``, ``CHUNK_INDEX_KEY``, ``DOCUMENT_ID_KEY``, ``CONTENT_HASH_KEY``, with
    ``RESERVED_METADATA_KEYS``, ``RESERVED_METADATA_PREFIX`` and ``reserved_metadata_key``
    (what a document may not bring).

The interface and its rules:
    ``Sink`` (the abstract base class), ``e5_document_id`` (the ownership rule: a row is
    e5's only with a ``document_id`` and e5's content hash; ``Sink.scan`` reports it) and
    ``metadata_strings`` (every key and string of a metadata value, for a store's checks).
    A run (``e5 ingest``, ``ingest_ray``) calls ``begin_bulk_load``, ``ensure_collection``,
    then ``fetch_hashes`` / ``upsert`` / ``delete`` per batch, ``set_content_hashes`` (Ray:
    file seals, optional) and ``finalize`` once at the end: an index that is cheaper to build once than to grow row by row may wait for
    ``finalize`` (code that never calls ``finalize`` calls neither, and its collections are
    indexed at once).

Layouts (whose schema a collection follows; each is one registered record):
    ``Layout`` (name, family, description, reserved keys, metadata and hit codecs),
    ``register_layout`` (a new one: ``--layout`` and ``open_sink(layout=)`` take it),
    ``layout_names``, ``LAYOUTS`` (the built-in ones every store has), ``DEFAULT_LAYOUT``,
    ``get_layout``, ``resolve_layout``, ``layout_of_metadata``; the codecs the built-in
    layouts use, to reuse in a new one: ``MetadataEncoder`` (``own_metadata``,
    ``flat_metadata``, ``node_metadata``) and ``MetadataDecoder`` (``plain_row``,
    ``node_row``); ``uuid_id`` and ``ID_NAMESPACE`` (framework row ids), ``CHUNK_ID_KEY``
    (where framework rows keep the chunk id), ``LLAMA_INDEX_KEYS``; ``with_content_hash``
    (a stored row's metadata with a new ``e5_content_hash``, for ``set_content_hashes``).

Reaching a store:
    ``RetryPolicy`` (one patient back-off for every store call; ``DEFAULT_RETRY_SECONDS``),
    ``Unreachable`` (a client error recognised as "could not reach the store"), and
    ``redact`` / ``secrets_of`` (no password or key in any message or log line).

Errors a sink raises (the tree is in ``e5_integrations._errors``):
    ``StoreError``, ``StoreUnavailableError``, ``SchemaMismatchError``,
    ``LayoutMismatchError``, ``ConfigurationError``; messages name options with ``option``
    and ``for_front``, and a schema clash ends with ``rebuild_hint``.

Registering a store:
    ``StoreEntry`` and ``register_store``.
"""

from e5_integrations._errors import (
    ConfigurationError,
    LayoutMismatchError,
    SchemaMismatchError,
    StoreError,
    StoreUnavailableError,
    for_front,
    option,
    rebuild_hint,
)
from e5_integrations._redact import redact, secrets_of
from e5_integrations.ingest._layout import (
    CHUNK_ID_KEY,
    DEFAULT_LAYOUT,
    ID_NAMESPACE,
    LAYOUTS,
    LLAMA_INDEX_KEYS,
    Layout,
    MetadataDecoder,
    MetadataEncoder,
    flat_metadata,
    get_layout,
    layout_names,
    layout_of_metadata,
    node_metadata,
    node_row,
    own_metadata,
    plain_row,
    register_layout,
    resolve_layout,
    uuid_id,
    with_content_hash,
)
from e5_integrations.ingest._readers._base import Document
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
from e5_integrations.ingest._registry import StoreEntry, register_store
from e5_integrations.ingest._retry import RetryPolicy, Unreachable
from e5_integrations.ingest._sink import Sink

__all__ = [
    "CHUNK_ID_KEY",
    "CHUNK_INDEX_KEY",
    "CONTENT_HASH_KEY",
    "DEFAULT_LAYOUT",
    "DEFAULT_RETRY_SECONDS",
    "DOCUMENT_ID_KEY",
    "ID_NAMESPACE",
    "LAYOUTS",
    "LLAMA_INDEX_KEYS",
    "RESERVED_METADATA_KEYS",
    "RESERVED_METADATA_PREFIX",
    "SOURCE_KEY",
    "ConfigurationError",
    "Document",
    "Hit",
    "Layout",
    "LayoutMismatchError",
    "MetadataDecoder",
    "MetadataEncoder",
    "Record",
    "RetryPolicy",
    "SchemaMismatchError",
    "Sink",
    "StoreEntry",
    "StoreError",
    "StoreUnavailableError",
    "Unreachable",
    "e5_document_id",
    "flat_metadata",
    "for_front",
    "get_layout",
    "layout_names",
    "layout_of_metadata",
    "metadata_strings",
    "node_metadata",
    "node_row",
    "option",
    "own_metadata",
    "plain_row",
    "rebuild_hint",
    "redact",
    "register_layout",
    "register_store",
    "reserved_metadata_key",
    "resolve_layout",
    "secrets_of",
    "uuid_id",
    "with_content_hash",
]
