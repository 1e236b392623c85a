"""Milvus sink: a Milvus Lite ``*.db`` file or a Milvus server (``http://host:19530``).

Schema of the ``e5`` layout (explicit, no dynamic fields)::

    pk         VARCHAR(64)   primary key = sha256 hex of the chunk id (auto_id off)
    id         VARCHAR(4096) the chunk id as given
    embedding  FLOAT_VECTOR(dim), index AUTOINDEX with metric COSINE
    text       VARCHAR(65535) the chunk text (at most 65535 UTF-8 bytes)
    metadata   JSON

The primary key is a hash of the id, not the id itself: C++ Milvus Lite 2.5 builds an SQL
``DELETE`` from upserted keys without escaping them, so an id with a single quote fails there;
a hex key also keeps filter expressions free of quoting and ids free of the key length limit.
The collection is created with ``consistency_level="Strong"`` so reads see earlier writes.

The framework layouts (``Layout`` in ``e5_integrations.sinks``) write what the framework's class
writes, with ``uuid5`` row ids and the chunk id in ``e5_chunk_id``:

- ``langchain`` (langchain-milvus ``Milvus(..., enable_dynamic_field=True)``)::

      text    VARCHAR(65535)
      pk      VARCHAR(65535) primary key (auto_id off)
      vector  FLOAT_VECTOR(dim), index AUTOINDEX with metric L2 (the class's default)
      $meta   dynamic fields: the metadata, one top-level field per key (``expr="lang == 'en'"``)

  A collection the class made without ``ids=`` (``from_documents``/``from_texts``/``add_texts``
  without ids: ``auto_id=True``) has an INT64 ``pk`` that Milvus assigns. e5 writes into it
  too (the functions of the "auto_id" part below): it inserts rows without ``pk`` and finds its
  rows by ``e5_chunk_id`` (``fetch_hashes``, stale and pruned chunks, the rows an upsert
  replaces). A replaced chunk is inserted first and its old rows deleted after, so a crash
  between the two leaves the chunk twice, never not at all; ``fetch_hashes`` reports a chunk
  stored twice as changed, so the next run embeds it again and its upsert deletes every older
  row (an insert retried after a lost reply can also leave a second row: the same repair).

  L2, not COSINE: the class picks its relevance function from its ``index_params=``
  argument, not from the collection (without it, it assumes L2), so an L2 collection is
  the one whose scores come out right with ordinary arguments. For unit vectors Milvus'
  L2 "distance" is the squared distance ``d = 2 - 2cos``; ``e5 search`` reports
  ``1 - d/2`` (the cosine), LangChain's relevance score is ``1 - d/4 = (1 + cos)/2``.
- ``llama-index`` (llama-index-vector-stores-milvus ``MilvusVectorStore``)::

      id         VARCHAR(65535) primary key (the node id)
      doc_id     VARCHAR(65535) the ref doc id (``delete_ref_doc``)
      text       VARCHAR(65535) the node's text
      embedding  FLOAT_VECTOR(dim), index FLAT named ``embedding``, metric COSINE
      $meta      dynamic fields: ``node_to_metadata_dict(node, remove_text=True)``

  COSINE, not the class's default IP: its dense search leaves the metric to the
  collection's index, so its similarities are cosines (IP and cosine agree on E5's
  unit-norm vectors).

Both collections are created with ``consistency_level="Strong"`` (the classes default to
``"Session"``; readers do not depend on it). The layout of an existing collection is found
from its schema: ``pk`` primary with ``id``/``embedding``/``text``/``metadata`` is ``e5``,
``pk`` primary with ``text``/``vector`` is ``langchain``, ``id`` primary with ``embedding``
is ``llama-index``. e5 writes into a framework-made collection only when it has dynamic
fields (its bookkeeping keys live there), a VARCHAR primary key and no other required field;
it searches L2, IP and COSINE ones alike (L2 and IP need unit-norm vectors, as in the
Chroma sink).

Each layout is one :class:`_Shape` record in :data:`_SHAPES` (fields, keys, index, the row
and hit codecs, what the schema check and the reads ask for); every method of
:class:`MilvusSink` has one body that reads the record, so a new layout is one record.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from e5_integrations.sinks import (
    CHUNK_ID_KEY,
    CONTENT_HASH_KEY,
    DOCUMENT_ID_KEY,
    ConfigurationError,
    Document,
    Hit,
    Layout,
    Record,
    RetryPolicy,
    SchemaMismatchError,
    Sink,
    StoreError,
    StoreUnavailableError,
    Unreachable,
    e5_document_id,
    get_layout,
    layout_names,
    rebuild_hint,
    redact,
    secrets_of,
    with_content_hash,
)
from e5_integrations.sinks._metric import check_unit_norm, unit_query
from e5_integrations.sinks._requests import by_count, by_size, last_per_id

__all__ = ["MilvusSink", "primary_key"]

T = TypeVar("T")

PK_FIELD, ID_FIELD, VECTOR_FIELD, TEXT_FIELD, METADATA_FIELD = "pk", "id", "embedding", "text", "metadata"
#: VARCHAR limits, in UTF-8 bytes.
MAX_ID_BYTES = 4096
MAX_TEXT_BYTES = 65535
#: Room kept in an id for a chunk's ``#index`` suffix.
CHUNK_SUFFIX_BYTES = 16
#: gRPC refuses messages over 64 MiB; one request is kept under this budget.
REQUEST_BUDGET_BYTES = 32 * 1024 * 1024
#: Metadata bytes assumed per record when sizing batches.
METADATA_ALLOWANCE_BYTES = 8 * 1024
#: Keys per ``pk in [...]`` filter or delete call.
READ_SLICE = 1000
#: The length of the frameworks' VARCHAR fields.
FRAMEWORK_VARCHAR = 65_535
#: LlamaIndex's ``doc_id_field``.
LLAMA_DOC_ID_FIELD = "doc_id"

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_LINE_BREAK = re.compile(r"[\n\r]")
#: What a ``like`` pattern of an id with a line break replaces with ``%`` (:func:`_chunk_filters`).
_LIKE_UNSAFE = re.compile(r'[\n\r\\"]+')


@dataclass(frozen=True)
class _Column:
    """One field of a schema e5 creates, as ``CollectionSchema.add_field`` takes it (a
    ``FLOAT_VECTOR`` also gets the dimension)."""

    name: str
    #: a ``pymilvus.DataType`` member name
    kind: str
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class _Shape:
    """One layout's collection in Milvus, the record every method of :class:`MilvusSink` reads
    (the schemas are in the module's docstring; :data:`_SHAPES` holds one per layout).

    A layout keeps its user metadata and e5's bookkeeping (``document_id``, ``e5_content_hash``)
    either in one JSON field (``metadata_field``: e5's own schema) or in the collection's
    dynamic fields, one top-level field per key (``metadata_field=None``: the frameworks').
    """

    #: the layout's name (``Layout.name``)
    name: str
    primary: str
    vector: str
    text: str
    #: the field holding a row's chunk id (e5's rows; others fall back to their primary key)
    chunk_field: str
    #: the JSON field holding the metadata, ``None``: top-level dynamic fields
    metadata_field: str | None
    #: a chunk id's primary key; ``None``: Milvus assigns it (``auto_id``) and e5 finds its
    #: rows by ``e5_chunk_id`` (the module's docstring)
    key: Callable[[Layout, str], str] | None
    #: the fields of the schema e5 creates, in its order
    columns: tuple[_Column, ...]
    #: the index e5 creates on ``vector``; MilvusVectorStore names its index after the field
    metric: str
    index_type: str
    index_named: bool
    #: fields besides the primary key by which an existing collection is recognised as this
    #: layout's (:func:`_layout_of_schema`)
    signature: frozenset[str]
    #: what the messages call the expected fields (``{layout}``: ``Layout.describe()``)
    expected: str
    #: the metrics e5 reads in such a collection, and what a message says about another one
    metrics: tuple[str, ...]
    metric_rule: str
    #: output fields of ``fetch_hashes``, ``scan`` and ``search``
    hash_fields: tuple[str, ...]
    scan_fields: tuple[str, ...]
    search_fields: tuple[str, ...]
    #: the row of a record (``text_field``: whether the collection has a ``text`` field)
    encode: Callable[[Record, Layout, _Shape, bool], dict[str, Any]]
    #: the hit of a search result, with its score
    decode: Callable[[Mapping[str, Any], Layout, _Shape, float], Hit]
    #: fields of the schema that a user metadata key may not shadow (dynamic fields only)
    top_level: tuple[str, ...] = ()
    #: the record of this layout's collection when Milvus assigns the primary key, if e5
    #: writes into such a collection (LangChain's ``auto_id=True``)
    assigned: _Shape | None = None

    @property
    def dynamic(self) -> bool:
        """Whether the metadata lives in dynamic fields (a framework's collection)."""
        return self.metadata_field is None


#: Metrics e5 reads in a framework's collection (as cosine: unit vectors, :mod:`._metric`).
_READABLE_METRICS = ("COSINE", "IP", "L2")


def primary_key(record_id: str) -> str:
    """The stored primary key of a chunk id: its SHA-256 in hex (64 characters)."""
    return hashlib.sha256(record_id.encode("utf-8")).hexdigest()


def _own_key(layout: Layout, chunk_id: str) -> str:
    return primary_key(chunk_id)


def _own_row(record: Record, layout: Layout, shape: _Shape, text_field: bool) -> dict[str, Any]:
    """The row of ``record`` in e5's own schema, after checking the VARCHAR limits."""
    _check_text(record)
    id_bytes = len(record.id.encode("utf-8"))
    if id_bytes > MAX_ID_BYTES:
        raise StoreError(
            f"chunk id {record.id[:80]!r}... has {id_bytes} UTF-8 bytes; the Milvus sink stores ids "
            f"of at most {MAX_ID_BYTES} bytes; use shorter source ids"
        )
    return {
        PK_FIELD: primary_key(record.id),
        ID_FIELD: record.id,
        VECTOR_FIELD: np.asarray(record.embedding, dtype=np.float32).reshape(-1).tolist(),
        TEXT_FIELD: record.text,
        METADATA_FIELD: layout.metadata(record),
    }


def _own_hit(found: Mapping[str, Any], layout: Layout, shape: _Shape, score: float) -> Hit:
    """A hit from a search result in e5's own schema."""
    entity = found.get("entity", {})
    return layout.hit(entity[ID_FIELD], score, entity.get(TEXT_FIELD), entity.get(METADATA_FIELD))


def _framework_row(record: Record, layout: Layout, shape: _Shape, text_field: bool) -> dict[str, Any]:
    """The row the framework's class writes for ``record``: the layout's metadata as
    top-level (dynamic) fields, then the row id (unless Milvus assigns it), the text and
    the vector.

    LlamaIndex's ``MilvusVectorStore.add`` writes ``node_to_metadata_dict(node,
    remove_text=True)`` plus ``text``; a collection without a ``text`` field (an older
    class) keeps the text inside ``_node_content``.
    """
    _check_text(record)
    row = layout.metadata(record, remove_text=text_field)
    if shape.key is not None:
        row[shape.primary] = shape.key(layout, record.id)
    if text_field:
        row[shape.text] = record.text
    row[shape.vector] = np.asarray(record.embedding, dtype=np.float32).reshape(-1).tolist()
    return row


def _framework_hit(found: Mapping[str, Any], layout: Layout, shape: _Shape, score: float) -> Hit:
    """A hit from a framework layout's search result (``output_fields=["*"]``)."""
    entity = dict(found.get("entity", {}))
    row_id = entity.pop(shape.primary, None) or found.get("id") or found.get(shape.primary)
    entity.pop(shape.vector, None)
    text = entity.pop(shape.text, None)
    return layout.hit(str(row_id), score, text if isinstance(text, str) else None, entity)


def _check_text(record: Record) -> None:
    text_bytes = len(record.text.encode("utf-8"))
    if text_bytes > MAX_TEXT_BYTES:
        raise StoreError(
            f"chunk {record.id!r} has {text_bytes} bytes of UTF-8 text; a Milvus VARCHAR holds at "
            f"most {MAX_TEXT_BYTES}; use smaller chunks (fewer tokens per chunk) or another store"
        )


def _varchar(name: str, length: int, *options: tuple[str, Any]) -> _Column:
    return _Column(name, "VARCHAR", (*options, ("max_length", length)))


_PRIMARY = ("is_primary", True)
_FRAMEWORK_METRICS = "; e5 reads 'COSINE', 'IP' and 'L2' collections"
_FRAMEWORK_FIELDS = "the fields of {layout} ({primary} primary key, {vector})"

#: e5's own schema: explicit fields, no dynamic ones.
_E5 = _Shape(
    name="e5",
    primary=PK_FIELD,
    vector=VECTOR_FIELD,
    text=TEXT_FIELD,
    chunk_field=ID_FIELD,
    metadata_field=METADATA_FIELD,
    key=_own_key,
    columns=(
        _varchar(PK_FIELD, 64, _PRIMARY),
        _varchar(ID_FIELD, MAX_ID_BYTES),
        _Column(VECTOR_FIELD, "FLOAT_VECTOR"),
        _varchar(TEXT_FIELD, MAX_TEXT_BYTES),
        _Column(METADATA_FIELD, "JSON"),
    ),
    metric="COSINE",
    index_type="AUTOINDEX",
    index_named=False,
    signature=frozenset({ID_FIELD, VECTOR_FIELD, TEXT_FIELD, METADATA_FIELD}),
    expected=f"the e5 schema ({PK_FIELD} primary key, {sorted([ID_FIELD, VECTOR_FIELD, TEXT_FIELD, METADATA_FIELD])})",
    metrics=("COSINE",),
    metric_rule=", but e5 embeddings need 'COSINE'",
    hash_fields=(PK_FIELD, METADATA_FIELD),
    scan_fields=(ID_FIELD, METADATA_FIELD),
    search_fields=(ID_FIELD, TEXT_FIELD, METADATA_FIELD),
    encode=_own_row,
    decode=_own_hit,
)
#: LangChain's ``Milvus`` collection made with ``auto_id=True`` (without ``ids=``): an INT64
#: ``pk`` that Milvus assigns; e5 finds its rows by ``e5_chunk_id``.
_LANGCHAIN_ASSIGNED = _Shape(
    name="langchain",
    primary=PK_FIELD,
    vector="vector",
    text=TEXT_FIELD,
    chunk_field=CHUNK_ID_KEY,
    metadata_field=None,
    key=None,
    # Milvus._create_collection, in its order
    columns=(
        _varchar(TEXT_FIELD, FRAMEWORK_VARCHAR),
        _varchar(PK_FIELD, FRAMEWORK_VARCHAR, _PRIMARY, ("auto_id", False)),
        _Column("vector", "FLOAT_VECTOR"),
    ),
    metric="L2",
    index_type="AUTOINDEX",
    index_named=False,
    signature=frozenset({TEXT_FIELD, "vector"}),
    expected=_FRAMEWORK_FIELDS.format(layout="{layout}", primary=PK_FIELD, vector="vector"),
    metrics=_READABLE_METRICS,
    metric_rule=_FRAMEWORK_METRICS,
    hash_fields=(PK_FIELD, CONTENT_HASH_KEY),
    scan_fields=(PK_FIELD, CHUNK_ID_KEY, DOCUMENT_ID_KEY, CONTENT_HASH_KEY),
    search_fields=("*",),
    encode=_framework_row,
    decode=_framework_hit,
    top_level=(PK_FIELD, TEXT_FIELD, "vector"),
)
#: The layouts' records, in the order :func:`_layout_of_schema` tries them.
_SHAPES: dict[str, _Shape] = {
    "e5": _E5,
    # LangChain's ``Milvus(..., enable_dynamic_field=True)`` with ids: uuid5 VARCHAR keys
    "langchain": replace(_LANGCHAIN_ASSIGNED, key=Layout.row_id, assigned=_LANGCHAIN_ASSIGNED),
    # MilvusVectorStore._add_fields_to_schema
    "llama-index": _Shape(
        name="llama-index",
        primary=ID_FIELD,
        vector=VECTOR_FIELD,
        text=TEXT_FIELD,
        chunk_field=CHUNK_ID_KEY,
        metadata_field=None,
        key=Layout.row_id,
        columns=(
            _varchar(ID_FIELD, FRAMEWORK_VARCHAR, _PRIMARY),
            _varchar(LLAMA_DOC_ID_FIELD, FRAMEWORK_VARCHAR),
            _varchar(TEXT_FIELD, FRAMEWORK_VARCHAR),
            _Column(VECTOR_FIELD, "FLOAT_VECTOR"),
        ),
        metric="COSINE",
        index_type="FLAT",
        index_named=True,
        signature=frozenset({VECTOR_FIELD}),
        expected=_FRAMEWORK_FIELDS.format(layout="{layout}", primary=ID_FIELD, vector=VECTOR_FIELD),
        metrics=_READABLE_METRICS,
        metric_rule=_FRAMEWORK_METRICS,
        hash_fields=(ID_FIELD, CONTENT_HASH_KEY),
        # _node_type tells LlamaIndex's "None" ref doc placeholder
        scan_fields=(ID_FIELD, CHUNK_ID_KEY, DOCUMENT_ID_KEY, CONTENT_HASH_KEY, "_node_type"),
        search_fields=("*",),
        encode=_framework_row,
        decode=_framework_hit,
        top_level=(ID_FIELD, VECTOR_FIELD, TEXT_FIELD),
    ),
}
#: The vector fields of every layout (request sizes, :func:`_row_bytes`).
_VECTOR_FIELDS = frozenset(shape.vector for shape in _SHAPES.values())


class MilvusSink(Sink):
    """A Milvus collection in one layout (the module's docstring has the schemas).

    Args:
        uri: a Milvus Lite database file (``*.db``; its directory is created) or a server URI
            (``http(s)://host:port``; ``http://user:password@host:port`` passes the credentials).
            The password is never shown: ``self.uri`` is redacted.
        collection: collection name: letters, digits and ``_``, not starting with a digit.
        token: server credentials (``"user:password"`` or an API key); never shown.
        timeout: seconds each client call may take, retries inside pymilvus included.
        retry_seconds: how long a call keeps being retried while the server cannot be
            reached, before ``StoreUnavailableError`` (default ``DEFAULT_RETRY_SECONDS``).
        layout: ``"e5"``, ``"langchain"`` or ``"llama-index"``; default: the existing
            collection's, else ``"e5"``.

    Raises:
        ImportError: ``pymilvus`` (or ``milvus-lite`` for a file) is not installed.
        ConfigurationError: invalid collection name or layout.
        StoreUnavailableError: the server cannot be reached.
    """

    name: ClassVar[str] = "milvus"
    #: The registered layouts (:func:`layout_names`) that this store has a record for in
    #: :data:`_SHAPES`, in the registry's order; the registered :class:`Layout` gives their
    #: row ids and metadata and hit codecs.
    layouts: ClassVar[tuple[str, ...]] = tuple(n for n in layout_names("milvus") if n in _SHAPES)

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry_seconds: float | None = None,
        layout: str | None = None,
    ) -> None:
        try:
            import pymilvus
        except ImportError as exc:
            raise ImportError(
                "the Milvus sink needs pymilvus; install it with: pip install 'e5-integrations[milvus]'"
            ) from exc
        if not _NAME_RE.match(collection):
            raise ConfigurationError(
                f"invalid Milvus collection name {collection!r}: expected letters, digits and '_' "
                "(at most 255), not starting with a digit; e.g. replace '-' with '_'"
            )
        if layout is not None:
            get_layout(layout, self.layouts, self.name)
        self.requested_layout = layout
        self._secrets = [*secrets_of(uri), *_token_secrets(token)]
        self.uri = redact(uri, self._secrets)  # the only copy of the URI that is ever shown
        self.collection = collection
        self._timeout = timeout
        self._retry = RetryPolicy(retry_seconds)
        self._closed = False
        self._ready = False
        self._metric_type: str | None = None
        self._has_text_field = True
        #: whether Milvus assigns the primary key and e5 finds its rows by ``e5_chunk_id``
        #: (a LangChain collection made with ``auto_id=True``); ``None``: not looked up yet
        self._auto_id: bool | None = None
        self._insert_replaces = "://" not in uri and _merging_lite()
        self._client = self._call(lambda: _connect(pymilvus, uri, token, timeout, self.uri))

    def __repr__(self) -> str:
        return f"MilvusSink(uri={self.uri!r}, collection={self.collection!r})"

    @property
    def retry_wait_seconds(self) -> float:
        """Seconds spent waiting between retries of an unreachable server."""
        return self._retry.waited

    # -- Sink API -------------------------------------------------------------------------

    @classmethod
    def check_document(cls, document: Document, layout: str = "e5") -> str | None:
        """Also refuse document ids whose chunk ids would not fit the ``id`` VARCHAR, and (in
        the framework layouts, whose metadata keys are top-level dynamic fields) metadata
        keys named like one of the schema's fields."""
        refused = super().check_document(document, layout)  # first: the rules below encode the strings
        if refused is not None:
            return refused
        size = len(document.id.encode("utf-8"))
        if size > MAX_ID_BYTES - CHUNK_SUFFIX_BYTES:
            return (
                f"the id {document.id[:40]!r}... has {size} UTF-8 bytes; the Milvus sink stores chunk ids "
                f"of at most {MAX_ID_BYTES} bytes, so document ids of at most "
                f"{MAX_ID_BYTES - CHUNK_SUFFIX_BYTES}; use shorter ids (--id-field)"
            )
        for key in _SHAPES[get_layout(layout, cls.layouts, cls.name).name].top_level:
            if key in document.metadata:
                return (
                    f"field {key!r}: in the {layout} layout Milvus keeps the metadata as top-level fields "
                    f"next to the schema's own {key!r}, so the document's field would be lost; rename the "
                    "field in the source"
                )
        return None

    def detect_layout(self) -> str | None:
        """The layout of the existing collection from its schema's field names (module docstring)."""
        if not self._exists():
            return None
        return _layout_of_schema(self._describe())

    def ensure_collection(self, dim: int) -> None:
        """Create the collection (the layout's schema, Strong) or check and load it.

        Raises:
            SchemaMismatchError: the collection is in another layout than ``layout=``, or it
                exists with another schema, dimension or metric. Nothing is written.
        """
        layout = self.layout  # first: a layout= that disagrees fails before anything is made
        if dim < 1:
            raise ConfigurationError(f"dimension must be a positive integer, got {dim}")
        if not self._exists():
            try:
                self._create(dim, layout)
                self._ready = True
                return
            except StoreUnavailableError:
                raise
            except Exception:
                if not self._exists():  # not created meanwhile by another worker
                    raise
        self._check_schema(dim, layout)
        self._load()
        self._ready = True

    def max_batch_records(self, dim: int) -> int:
        """Records per request so that even maximal texts stay under a 32 MiB request."""
        per_record = 4 * dim + MAX_TEXT_BYTES + MAX_ID_BYTES + 64 + METADATA_ALLOWANCE_BYTES
        return max(1, REQUEST_BUDGET_BYTES // per_record)

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """``{id: e5_content_hash}`` for the ids stored with a hash."""
        if not ids or not self._readable():
            return {}
        shape = self._shape()
        if shape.key is None:
            return self._fetch_by_chunk_id(ids)
        found: dict[str, str] = {}
        for chunk, row in self._rows_by_key(ids, list(shape.hash_fields), READ_SLICE):
            value = (_bookkeeping(row, shape) or {}).get(CONTENT_HASH_KEY)
            if isinstance(value, str):
                found[chunk] = value
        return found

    def upsert(self, records: Sequence[Record]) -> None:
        """Insert or replace ``records`` by id.

        Raises:
            SchemaMismatchError: the collection is in another layout than ``layout=``.
            StoreError: a text over 65535 UTF-8 bytes or an id over 4096 bytes (nothing of
                this batch is written), or the server refused the rows.
        """
        if not records:
            return
        layout = self.layout
        if not self._ready and not self._exists():
            raise StoreError(
                f"Milvus collection {self.collection!r} at {self.uri} does not exist; "
                "call ensure_collection(dim) before upsert"
            )
        shape = self._shape()
        unique = last_per_id(records)  # Milvus 2.5 would keep both copies
        rows = [shape.encode(r, layout, shape, self._has_text_field) for r in unique]
        self._write_rows(rows, shape)

    def set_content_hashes(self, values: Mapping[str, str]) -> int:
        """Replace the ``e5_content_hash`` of stored chunks (``{chunk id: new value}``) and
        nothing else of their rows; returns how many rows were changed.

        Milvus has no partial update, so each row is read whole (Strong, ``"*"`` and the
        vector field named as well), its bookkeeping changed where the layout keeps it (the
        ``metadata`` JSON field, or the dynamic fields with LlamaIndex's ``_node_content``
        copy: :func:`with_content_hash`) and the row written back the way :meth:`upsert`
        writes it; every other field comes back as it was read. Ids not stored, or stored
        without a string ``e5_content_hash``, and rows that already hold the value are left
        alone (so it is idempotent). Where Milvus assigns the keys, a chunk stored more than
        once (a crash inside an upsert) is left alone as well: ``fetch_hashes`` keeps
        reporting it as changed, so the next run embeds it again and repairs it.

        Raises:
            StoreError: the server did not return a row's vector, or refused the rows.
        """
        if not values or not self._readable():
            return 0
        shape = self._shape()
        fields = {f["name"]: f for f in self._describe().get("fields", [])}
        dim = int(fields.get(shape.vector, {}).get("params", {}).get("dim", 0) or 0)
        # at most a request's worth of maximal rows per read: the replies carry texts and vectors
        read_slice = min(READ_SLICE, self.max_batch_records(max(dim, 1)))
        # fields that query returns and a write refuses: computed ones, and keys Milvus assigns
        computed = {name for name, field in fields.items() if field.get("is_function_output")}
        if shape.key is None:
            computed.add(shape.primary)
        output = ["*", shape.vector]
        stored: list[tuple[str, dict[str, Any]]] = []
        if shape.key is None:
            for part in by_count(list(values), read_slice):
                stored.extend((row[CHUNK_ID_KEY], row) for row in self._e5_rows_of(part, output))
            copies = Counter(chunk for chunk, _ in stored)
            stored = [(chunk, row) for chunk, row in stored if copies[chunk] == 1]
        else:
            stored.extend(self._rows_by_key(list(values), output, read_slice))
        changed: list[dict[str, Any]] = []
        for chunk, found in stored:
            row = _as_written(found, computed)
            kept = _bookkeeping(row, shape)
            if not isinstance(kept, Mapping):
                continue
            old, new = kept.get(CONTENT_HASH_KEY), values[chunk]
            if not isinstance(old, str) or old == new:
                continue
            vector = row.get(shape.vector)
            if vector is None:
                raise StoreError(
                    f"Milvus collection {self.collection!r} at {self.uri} returned chunk {chunk!r} without "
                    f"its vector field {shape.vector!r}; its content hash was not changed"
                )
            row[shape.vector] = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
            if shape.metadata_field is None:
                row = with_content_hash(row, new)
            else:
                row[shape.metadata_field] = with_content_hash(kept, new)
            changed.append(row)
        if changed:
            self._write_rows(changed, shape)
        return len(changed)

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` nearest records with their cosine similarity.

        Milvus' COSINE "distance" is the cosine similarity. A framework's collection may use
        L2 (LangChain's default; Milvus gives the squared distance ``2 - 2cos``) or IP
        (LlamaIndex's default; the cosine): between unit vectors both rank like cosine, so
        the query is normalised and the scores converted, and a hit whose stored vector is
        not unit-norm makes the search a ``SchemaMismatchError`` instead of a wrong score.
        """
        if k < 1 or not self._readable():
            return []
        layout, shape = self.layout, self._shape()
        metric = self._metric() or shape.metric
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if metric != "COSINE":
            query = unit_query(query)
        result = self._call(
            lambda: self._client.search(
                self.collection,
                data=[query.tolist()],
                anns_field=shape.vector,
                limit=k,
                output_fields=list(shape.search_fields),
                search_params={"metric_type": metric},
                consistency_level="Strong",
                timeout=self._timeout,
            )
        )
        found = list(result[0])
        if metric != "COSINE":
            where = f"Milvus collection {self.collection!r} at {self.uri}"
            check_unit_norm([f["entity"].get(shape.vector) for f in found], where, metric)
        return [shape.decode(f, layout, shape, _score(f, metric)) for f in found]

    def dimension(self) -> int | None:
        """The dimension of the collection's vector field; ``None`` if it does not exist."""
        if not self._exists():
            return None
        vector = self._shape().vector
        for field in self._describe().get("fields", []):
            if field.get("name") == vector:
                return int(field.get("params", {}).get("dim", 0)) or None
        return None

    def count(self) -> int:
        """Records in the collection; 0 if it does not exist."""
        if not self._readable():
            return 0
        # read Strong: a framework's collection may be "Session" (its class's default)
        rows = self._call(
            lambda: self._client.query(
                self.collection,
                filter="",
                output_fields=["count(*)"],
                timeout=self._timeout,
                consistency_level="Strong",
            )
        )
        return int(rows[0]["count(*)"])

    def scan(self, page_size: int = 1000) -> Iterator[list[tuple[str, str | None]]]:
        """Pages of ``(chunk id, document id)`` over the whole collection (a query iterator);
        the document id is ``None`` for rows e5 did not write (:func:`e5_document_id`), whose
        id is their own row id."""
        if not self._readable():
            return
        shape = self._shape()
        iterator = self._call(
            lambda: self._client.query_iterator(
                self.collection,
                batch_size=page_size,
                output_fields=list(shape.scan_fields),
                timeout=self._timeout,
            )
        )
        try:
            while True:
                rows = self._call(iterator.next)
                if not rows:
                    return
                yield [(_chunk_id(row, shape), e5_document_id(_bookkeeping(row, shape))) for row in rows]
        finally:
            iterator.close()

    def delete(self, ids: Iterable[str]) -> None:
        """Delete records by id; unknown ids are ignored."""
        ids = list(ids)
        if not ids or not self._exists():
            return
        layout, shape = self.layout, self._shape()
        if shape.key is None:
            self._delete_keys(self._keys_of_chunks(ids))
            return
        self._delete_keys([shape.key(layout, i) for i in ids])

    def drop(self) -> None:
        """Drop the collection if it exists."""
        if self._exists():
            self._call(lambda: self._client.drop_collection(self.collection, timeout=self._timeout))
        self._ready = False
        self._metric_type = None
        self._has_text_field = True
        self._auto_id = None
        self.forget_layout()

    def close(self) -> None:
        """Close the client connection."""
        if self._closed:
            return
        self._closed = True
        self._client.close()

    # -- helpers --------------------------------------------------------------------------

    def _write_rows(self, rows: list[dict[str, Any]], shape: _Shape) -> None:
        """Write whole rows, each replacing the stored row of its chunk (``upsert``)."""
        if shape.key is None:
            self._replace_by_chunk_id(rows)
            return
        # milvus-lite 3's upsert merges a row's new dynamic fields onto its old ones (a metadata
        # key the new row lacks would survive); its insert replaces the row, as upsert does on servers
        write = self._client.insert if shape.dynamic and self._insert_replaces else self._client.upsert
        for part in by_size(rows, REQUEST_BUDGET_BYTES, _row_bytes):
            self._call(functools.partial(write, self.collection, part, timeout=self._timeout))

    def _call(self, fn: Callable[[], T]) -> T:
        """Run a client call, retrying connection failures, then ``StoreUnavailableError``."""
        return self._retry.call(
            lambda: _translate_unreachable(fn),
            what=f"Milvus at {self.uri}",
            retry_on=(Unreachable,),
            secrets=self._secrets,
        )

    def _exists(self) -> bool:
        return bool(self._call(lambda: self._client.has_collection(self.collection, timeout=self._timeout)))

    def _describe(self) -> dict[str, Any]:
        info = self._call(lambda: self._client.describe_collection(self.collection, timeout=self._timeout))
        return dict(info)

    def _shape(self) -> _Shape:
        """The record of the layout's collection: its :data:`_SHAPES` record, or the record's
        ``assigned`` variant when Milvus assigns the existing collection's primary key. Call
        only when the collection exists."""
        shape = _SHAPES[self.layout.name]
        if shape.assigned is None:
            return shape
        if self._auto_id is None:
            self._auto_id = _assigned_primary(self._describe())
        return shape.assigned if self._auto_id else shape

    def _rows_by_key(
        self, chunk_ids: Sequence[str], output: list[str], read_slice: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(chunk id, row)`` of the stored ``chunk_ids`` (by primary key, Strong), read
        ``read_slice`` keys at a time, with ``output``'s fields. Call only when the shape has
        a key (``shape.key``)."""
        layout, shape = self.layout, self._shape()
        assert shape.key is not None
        chunk_of = {shape.key(layout, i): i for i in chunk_ids}
        for part in by_count(list(chunk_of), read_slice):
            rows = self._call(
                functools.partial(
                    self._client.query,
                    self.collection,
                    filter=f"{shape.primary} in {json.dumps(part)}",
                    output_fields=output,
                    consistency_level="Strong",
                    timeout=self._timeout,
                )
            )
            for row in rows:
                if row.get(shape.primary) in chunk_of:
                    yield chunk_of[row[shape.primary]], row

    # -- auto_id: a collection whose INT64 primary key Milvus assigns (LangChain's) ---------

    def _e5_rows_of(self, chunk_ids: Sequence[str], output: list[str]) -> Iterator[dict[str, Any]]:
        """e5's rows (``e5_chunk_id`` and a string ``e5_content_hash``) of ``chunk_ids``, every
        copy of each, read Strong."""
        for expression, wanted in _chunk_filters(chunk_ids):
            rows = self._call(
                functools.partial(
                    self._client.query,
                    self.collection,
                    filter=expression,
                    output_fields=[CHUNK_ID_KEY, CONTENT_HASH_KEY, *output],
                    consistency_level="Strong",
                    timeout=self._timeout,
                )
            )
            for row in rows:
                if row.get(CHUNK_ID_KEY) in wanted and isinstance(row.get(CONTENT_HASH_KEY), str):
                    yield row

    def _fetch_by_chunk_id(self, ids: Sequence[str]) -> dict[str, str]:
        """``fetch_hashes``: a chunk stored more than once (a crash inside an upsert) gets
        :data:`_STORED_TWICE`, which matches no content hash, so the pipeline embeds it again
        and its upsert deletes every older copy; a stale chunk stored twice is still found."""
        found: dict[str, str] = {}
        for row in self._e5_rows_of(ids, []):
            chunk = row[CHUNK_ID_KEY]
            found[chunk] = _STORED_TWICE if chunk in found else row[CONTENT_HASH_KEY]
        return found

    def _keys_of_chunks(self, chunk_ids: Sequence[str]) -> list[int]:
        """The primary keys of every stored copy of ``chunk_ids`` that e5 wrote."""
        primary = self._shape().primary
        return [row[primary] for row in self._e5_rows_of(chunk_ids, [primary])]

    def _replace_by_chunk_id(self, rows: list[dict[str, Any]]) -> None:
        """``upsert``: per request, read the keys of the chunks' stored copies, insert the
        new rows (keyless: Milvus assigns their keys), then delete the old copies. In that
        order a crash leaves a chunk twice, never missing (the module's docstring)."""
        for part in by_size(rows, REQUEST_BUDGET_BYTES, _row_bytes):
            old = self._keys_of_chunks([row[CHUNK_ID_KEY] for row in part])
            self._call(functools.partial(self._client.insert, self.collection, part, timeout=self._timeout))
            self._delete_keys(old)

    def _delete_keys(self, keys: Sequence[Any]) -> None:
        for part in by_count(keys, READ_SLICE):
            self._call(
                functools.partial(self._client.delete, self.collection, ids=part, timeout=self._timeout)
            )

    def _create(self, dim: int, layout: Layout) -> None:
        from pymilvus import DataType, MilvusClient

        shape = _SHAPES[layout.name]
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=shape.dynamic)
        for column in shape.columns:
            options = dict(column.options)
            if column.kind == "FLOAT_VECTOR":
                options["dim"] = dim
            schema.add_field(column.name, DataType[column.kind], **options)
        index = self._client.prepare_index_params()
        named = {"index_name": shape.vector} if shape.index_named else {}
        index.add_index(
            field_name=shape.vector, index_type=shape.index_type, metric_type=shape.metric, **named
        )
        self._call(
            lambda: self._client.create_collection(
                self.collection,
                schema=schema,
                index_params=index,
                consistency_level="Strong",
                timeout=self._timeout,
            )
        )
        self._metric_type = shape.metric
        self._has_text_field = True
        self._auto_id = False
        self._load()

    def _readable(self) -> bool:
        """Whether the collection exists; loads it on first use, since a collection another
        process created starts out released and refuses search/get/query."""
        if self._ready:
            return True
        if not self._exists():
            return False
        self._load()
        self._ready = True
        return True

    def _load(self) -> None:
        self._call(lambda: self._client.load_collection(self.collection, timeout=self._timeout))

    def _check_schema(self, dim: int, layout: Layout) -> None:
        """Raise ``SchemaMismatchError`` unless e5 can write rows of ``layout`` into the
        collection: the layout's fields, ``dim`` and a metric e5 reads; where the metadata
        lives in dynamic fields (a framework's collection) also a VARCHAR primary key (or one
        Milvus assigns, where the layout's record allows it), dynamic fields (e5's bookkeeping
        lives there) and no other required field."""
        from pymilvus import DataType

        where = f"Milvus collection {self.collection!r} at {self.uri}"
        fix = rebuild_hint()
        shape = _SHAPES[layout.name]
        info = self._describe()
        fields = {f["name"]: f for f in info.get("fields", [])}
        if _layout_of_schema(info) != shape.name:
            expected = shape.expected.format(layout=layout.describe())
            raise SchemaMismatchError(f"{where} has fields {sorted(fields)}, not {expected}; {fix}")
        primary = fields[shape.primary]
        assigned = shape.assigned is not None and _assigned_primary(info)
        if shape.dynamic and primary.get("type") != DataType.VARCHAR and not assigned:
            how = (
                "Milvus assigns (auto_id=True)"
                if _assigned_primary(info)
                else "the writer sets (auto_id=False)"
            )
            raise SchemaMismatchError(
                f"{where} has a {_type_name(primary)} primary key {shape.primary!r} that {how}; e5 writes "
                f"rows of {layout.describe()} with VARCHAR keys, and lets Milvus assign INT64 ones only in a "
                "LangChain collection made with auto_id=True (what langchain-milvus makes without ids=); "
                f"{fix}"
            )
        self._auto_id = assigned
        _check_dimension(fields[shape.vector], dim, where)
        if shape.dynamic and not info.get("enable_dynamic_field"):
            raise SchemaMismatchError(
                f"{where} was made without dynamic fields (its metadata fields are {sorted(fields)}), so "
                "it cannot hold e5's bookkeeping (document_id, e5_content_hash, e5_chunk_id) nor metadata "
                "keys other than the first document's; make it with enable_dynamic_field=True (LangChain's "
                f"Milvus(..., enable_dynamic_field=True); MilvusVectorStore always does), or {fix}"
            )
        known = {shape.primary, shape.vector, shape.text, LLAMA_DOC_ID_FIELD}
        required = sorted(
            name
            for name, field in fields.items()
            if shape.dynamic
            and name not in known
            and not field.get("nullable")
            and "default_value" not in field
        )
        if required:
            raise SchemaMismatchError(
                f"{where} has fields {required} that every row must fill and that e5 does not write "
                f"(not part of {layout.describe()}); {fix}"
            )
        metric = self._metric()
        if metric not in shape.metrics:
            raise SchemaMismatchError(
                f"{where} indexes {shape.vector!r} with metric {metric!r}{shape.metric_rule}; {fix}"
            )
        self._has_text_field = shape.text in fields

    def _metric(self) -> str | None:
        """The metric of the index on the vector field, or ``None`` without an index (kept)."""
        if self._metric_type is not None:
            return self._metric_type
        vector = self._shape().vector
        names = self._call(
            lambda: self._client.list_indexes(self.collection, field_name=vector, timeout=self._timeout)
        )
        if not names:
            return None
        index = self._call(
            lambda: self._client.describe_index(self.collection, names[0], timeout=self._timeout)
        )
        metric = index.get("metric_type")
        self._metric_type = str(metric).upper() if metric else None
        return self._metric_type


#: What ``fetch_hashes`` reports for a chunk stored more than once in a collection whose keys
#: Milvus assigns: no content hash looks like it, so the chunk counts as changed.
_STORED_TWICE = "e5:stored-twice"


def _assigned_primary(info: Mapping[str, Any]) -> bool:
    """Whether the collection's primary key is an INT64 that Milvus assigns (``auto_id``)."""
    from pymilvus import DataType

    for field in info.get("fields", []):
        if field.get("is_primary"):
            auto = field.get("auto_id", info.get("auto_id"))
            return field.get("type") == DataType.INT64 and bool(auto)
    return False


def _type_name(field: Mapping[str, Any]) -> str:
    kind = field.get("type")
    return str(getattr(kind, "name", kind))


def _chunk_filters(chunk_ids: Sequence[str]) -> Iterator[tuple[str, frozenset[str]]]:
    """Filter expressions that together select every row whose ``e5_chunk_id`` is one of
    ``chunk_ids``, each with the ids it is for: a ``like`` selects others too, and the caller
    keeps only rows of those ids (so no row is kept twice).

    ``e5_chunk_id in ["a", ...]`` with ``\\`` and ``"`` escaped and every other character as
    it is: milvus-lite 3 reads no ``\\u`` escape, and the C++ engine matches no escaped ``\\n``
    or ``\\t``. No engine takes a line break inside a string, so an id with one is looked up
    with ``like``, its line breaks, backslashes and quotes turned into ``%`` wildcards.
    """
    plain = [i for i in dict.fromkeys(chunk_ids) if not _LINE_BREAK.search(i)]
    for part in by_count(plain, READ_SLICE):
        quoted = ('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in part)
        yield f"{CHUNK_ID_KEY} in [{', '.join(quoted)}]", frozenset(part)
    for broken in dict.fromkeys(i for i in chunk_ids if _LINE_BREAK.search(i)):
        yield f'{CHUNK_ID_KEY} like "{_LIKE_UNSAFE.sub("%", broken)}"', frozenset([broken])


def _merging_lite() -> bool:
    """Whether the installed milvus-lite is the 3.x Python engine, whose ``upsert`` merges
    dynamic fields and whose ``insert`` replaces a row with the same key (2.x, the C++ engine,
    keeps both rows on insert and replaces on upsert, like a server)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("milvus-lite").split(".")[0]) >= 3
    except (PackageNotFoundError, ValueError):
        return False


def _layout_of_schema(info: Mapping[str, Any]) -> str | None:
    """The layout a collection's schema shows (the first record in :data:`_SHAPES` whose primary
    key and fields it has), or ``None``."""
    fields = {f["name"] for f in info.get("fields", [])}
    primary = next((f["name"] for f in info.get("fields", []) if f.get("is_primary")), None)
    for shape in _SHAPES.values():
        if primary == shape.primary and shape.signature <= fields:
            return shape.name
    return None


def _chunk_id(row: Mapping[str, Any], shape: _Shape) -> str:
    """The chunk id of a row: its ``chunk_field``, else (not e5's row) its primary key."""
    chunk = row.get(shape.chunk_field)
    return chunk if isinstance(chunk, str) else str(row[shape.primary])


def _bookkeeping(row: Mapping[str, Any], shape: _Shape) -> Any:
    """Where a row keeps its metadata and e5's bookkeeping: its metadata field, or itself."""
    return row if shape.metadata_field is None else row.get(shape.metadata_field)


def _as_written(found: Mapping[str, Any], dropped: set[str]) -> dict[str, Any]:
    """A row as a query returned it, in the form a write takes: without ``dropped`` (fields
    a write refuses) and with the dynamic fields top-level (an engine that returns them as
    ``$meta`` gets them unpacked, as pymilvus does)."""
    row = {key: value for key, value in found.items() if key not in dropped and key != "$meta"}
    meta = found.get("$meta")
    if isinstance(meta, Mapping):
        for key, value in meta.items():
            row.setdefault(key, value)
    return row


def _score(found: Mapping[str, Any], metric: str) -> float:
    """The cosine similarity of a search result: Milvus' squared L2 is ``2 - 2cos`` between
    unit vectors; COSINE and IP are the cosine."""
    distance = float(found["distance"])
    return 1.0 - distance / 2.0 if metric == "L2" else distance


def _check_dimension(field: Mapping[str, Any], dim: int, where: str) -> None:
    stored_dim = int(field.get("params", {}).get("dim", -1))
    if stored_dim != dim:
        raise SchemaMismatchError(
            f"{where} holds {stored_dim}-dimensional vectors, but the embeddings are "
            f"{dim}-dimensional; {rebuild_hint()}"
        )


def _token_secrets(token: str | None) -> list[str]:
    """The parts of a Milvus ``token`` to mask: the whole of it and a ``user:password``'s password."""
    if not token:
        return []
    return [token, token.split(":", 1)[1]] if ":" in token else [token]


def _connect(pymilvus: Any, uri: str, token: str | None, timeout: float, shown: str) -> Any:
    """A ``MilvusClient`` for a server URI, or for a Milvus Lite file (its directory created).

    ``shown`` is the redacted URI, the one used in messages."""
    if "://" not in uri:
        Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
    elif not uri.startswith(("http://", "https://", "tcp://", "grpc://")):
        raise ConfigurationError(f"Milvus URI {shown!r} is neither a *.db file nor http(s)://HOST:PORT")
    try:
        return pymilvus.MilvusClient(uri=uri, token=token or "", timeout=timeout)
    except pymilvus.exceptions.MilvusException as exc:
        if "://" in uri or "open local milvus failed" not in str(exc.message).lower():
            raise
        raise StoreError(
            f"cannot open the Milvus Lite file {shown!r} ({exc.message}): Milvus Lite lets one process "
            "at a time open a file, and another process most likely holds this one (another e5 run, a "
            "notebook, a MilvusClient). Stop that process, or give this run another .db file with --uri, "
            "or serve the data with a Milvus server and pass --uri http://HOST:19530"
        ) from None


def _translate_unreachable(fn: Callable[[], T]) -> T:
    """Call ``fn``; re-raise "server unavailable" failures as ``Unreachable``."""
    import grpc
    from pymilvus.exceptions import MilvusException

    unreachable_codes = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
    try:
        return fn()
    except MilvusException as exc:
        cause = exc.__cause__
        if (
            exc.code == 2
            or exc.code in unreachable_codes
            or (isinstance(cause, grpc.RpcError) and cause.code() in unreachable_codes)
        ):
            raise Unreachable(exc.message) from exc
        raise
    except grpc.RpcError as exc:
        if exc.code() in unreachable_codes:
            raise Unreachable(str(exc.details())) from exc
        raise


def _row_bytes(row: dict[str, Any]) -> int:
    """Approximate request bytes of one row (any layout)."""
    size = 64
    for key, value in row.items():
        if key in _VECTOR_FIELDS and isinstance(value, list):
            size += 4 * len(value)
        elif isinstance(value, str):
            size += len(value.encode("utf-8")) + len(key)
        else:
            size += len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")) + len(key)
    return size
