"""Qdrant sink: a local folder, an in-process ``:memory:`` store, or a Qdrant server.

Qdrant point ids must be unsigned integers or UUIDs, so in every layout each deterministic
chunk id is stored as point ``uuid5(POINT_ID_NAMESPACE, chunk_id)`` (the namespace is the
layouts' ``ID_NAMESPACE``, so this is also ``Layout.row_id`` of the framework layouts); the
vector is the unnamed one, cosine distance. The payload per layout (``layout=``):

- ``e5``: ``{"id": chunk id, "text", "metadata": {...}}``;
- ``langchain``: ``{"page_content": text, "metadata": {..., "e5_chunk_id"}}``, what
  langchain-qdrant's ``QdrantVectorStore`` writes and reads (collection made with the vector
  config ``{"": VectorParams(size, Cosine)}``, as its ``from_texts`` does). Its reader adds
  ``_id`` and ``_collection_name`` to the metadata, so fields with those names are refused;
- ``llama-index``: ``node_to_metadata_dict(node, remove_text=False)`` at the top level (the
  metadata, ``e5_chunk_id``, ``_node_content`` holding the node and its text, ``_node_type``,
  ``document_id``/``doc_id``/``ref_doc_id``), what llama-index's ``QdrantVectorStore`` writes
  without hybrid search; point id = node id. On a server the collection gets its keyword
  payload index on ``doc_id`` (``index_doc_id=True``), which ``delete_ref_doc`` filters on.

The layout of an existing collection is found from its points: a point e5 wrote (with
``e5_content_hash``) decides, else a sampled point's payload (``_node_content`` or
``_node_type``: llama-index; ``page_content``: langchain; ``id``/``text``/``metadata``: e5).
Searches decode each point by its own payload, so points the frameworks added to a
collection are read with their text and metadata in every layout.

Local mode (a path or ``:memory:``) is qdrant-client's Python emulation of the API. It
stores ``on_disk`` in the collection config but keeps every vector in RAM, and it ignores
``quantization``; both options only take effect on a server.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from e5_integrations.sinks import (
    CHUNK_ID_KEY,
    CONTENT_HASH_KEY,
    ID_NAMESPACE,
    ConfigurationError,
    Document,
    Hit,
    Layout,
    Record,
    RetryPolicy,
    SchemaMismatchError,
    Sink,
    StoreError,
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
from e5_integrations.sinks._requests import by_count, by_size

if TYPE_CHECKING:
    from qdrant_client import models
    from qdrant_client.http.exceptions import UnexpectedResponse

__all__ = ["POINT_ID_NAMESPACE", "QdrantSink", "point_id"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Namespace of the uuid5 point ids, the layouts' ``ID_NAMESPACE`` (so a point id is the
#: framework layouts' ``Layout.row_id``). Changing it orphans every stored point: never do.
POINT_ID_NAMESPACE = ID_NAMESPACE

#: Qdrant's default ``service.max_request_size_mb``.
REQUEST_LIMIT_BYTES = 32 * 1024 * 1024
#: Share of the limit one upsert request may use (JSON overhead, headers, estimates).
_REQUEST_BUDGET = 0.75
#: JSON bytes per vector component: a float32 printed as a Python float, plus ", ".
_JSON_BYTES_PER_DIM = 24
#: Text and metadata bytes assumed per record when only the dimension is known.
_PAYLOAD_ESTIMATE_BYTES = 16 * 1024
#: Point ids per ``retrieve`` of :meth:`QdrantSink.set_content_hashes` (payloads hold the text).
_RETRIEVE_SLICE = 256
_QUANTIZATIONS = (None, "int8")
#: Characters a Qdrant server refuses in a collection name (it also becomes a folder name).
_FORBIDDEN_NAME_CHARS = '<>:"/\\|?*\0\x1f'
_MAX_NAME_LENGTH = 255
#: HTTP statuses that mean "the server is there but cannot answer now": retried.
_RETRIED_STATUSES = (502, 503, 504)
#: Payload keys that tell a point's layout and hold the bookkeeping (scan, fetch_hashes).
_BOOKKEEPING_PAYLOAD = ["id", "metadata", "_node_type", CHUNK_ID_KEY, "document_id", CONTENT_HASH_KEY]


def point_id(chunk_id: str) -> str:
    """The Qdrant point id (a UUID string) that stores chunk ``chunk_id``."""
    return str(uuid.uuid5(POINT_ID_NAMESPACE, chunk_id))


@dataclass(frozen=True)
class _Points:
    """One layout's points in Qdrant (the module's docstring), the record that the methods of
    :class:`QdrantSink` read: how a record becomes a payload and a point a hit, how a payload
    shows its layout, and what the collection gets besides its cosine vector."""

    #: the layout's name (``Layout.name``)
    name: str
    #: top-level payload keys that show a point is in this layout (:func:`_kind` tries the
    #: records in :data:`_SHAPES`' order)
    marks: tuple[str, ...]
    #: the payload key holding the metadata and e5's bookkeeping; ``None``: the top level
    metadata_key: str | None
    #: a top-level payload key whose string is the chunk id, tried before ``e5_chunk_id``
    id_key: str | None
    #: the payload of a record
    encode: Callable[[Record, Layout], dict[str, Any]]
    #: the hit of a point (its id, its cosine score, its payload)
    decode: Callable[[Layout, str, float, dict[str, Any]], Hit]
    #: whether the unnamed vector is configured as ``{"": params}`` (langchain-qdrant's
    #: ``from_texts``; the same collection)
    vector_named: bool = False
    #: a keyword payload index made on a server (llama-index's ``index_doc_id=True``; local
    #: mode has none and warns)
    keyword_index: str | None = None
    #: the framework class whose reader sets ``reader_keys`` in every result's metadata,
    #: so documents with such fields are refused
    reader: str = ""
    reader_keys: tuple[str, ...] = ()


def _e5_payload(record: Record, layout: Layout) -> dict[str, Any]:
    return {"id": record.id, "text": record.text, "metadata": layout.metadata(record)}


def _e5_hit(layout: Layout, point: str, score: float, payload: dict[str, Any]) -> Hit:
    return layout.hit(payload.get("id", point), score, payload.get("text"), payload.get("metadata"))


def _langchain_payload(record: Record, layout: Layout) -> dict[str, Any]:
    return {"page_content": record.text, "metadata": layout.metadata(record)}


def _langchain_hit(layout: Layout, point: str, score: float, payload: dict[str, Any]) -> Hit:
    return layout.hit(point, score, payload.get("page_content"), payload.get("metadata"))


def _llama_index_payload(record: Record, layout: Layout) -> dict[str, Any]:
    return layout.metadata(record, remove_text=False)


def _llama_index_hit(layout: Layout, point: str, score: float, payload: dict[str, Any]) -> Hit:
    return layout.hit(point, score, None, payload)


#: The layouts' records, in the order a payload's layout is recognised (:func:`_kind`): a
#: LlamaIndex payload may hold user fields called ``id``, ``text`` or ``metadata``.
_SHAPES: dict[str, _Points] = {
    "llama-index": _Points(
        name="llama-index",
        marks=("_node_content", "_node_type", CHUNK_ID_KEY),
        metadata_key=None,
        id_key=None,
        encode=_llama_index_payload,
        decode=_llama_index_hit,
        keyword_index="doc_id",
    ),
    "langchain": _Points(
        name="langchain",
        marks=("page_content",),
        metadata_key="metadata",
        id_key="id",
        encode=_langchain_payload,
        decode=_langchain_hit,
        vector_named=True,
        reader="LangChain's QdrantVectorStore",
        reader_keys=("_id", "_collection_name"),
    ),
    "e5": _Points(
        name="e5",
        marks=("id", "text", "metadata"),
        metadata_key="metadata",
        id_key="id",
        encode=_e5_payload,
        decode=_e5_hit,
    ),
}
#: The record a payload of no known layout is read with.
_UNMARKED = _SHAPES["e5"]


class QdrantSink(Sink):
    """Write to and search one Qdrant collection with cosine distance.

    Args:
        uri: ``":memory:"``, a folder for local mode, or ``http(s)://host:6333`` for a server.
        collection: collection name.
        api_key: server API key; defaults to the ``QDRANT_API_KEY`` environment variable.
        layout: ``"e5"``, ``"langchain"`` or ``"llama-index"`` (see the module docstring);
            ``None``: the existing collection's, else ``"e5"``.
        on_disk: keep original vectors on disk (server only); sensible for 4096-dim vectors.
        quantization: ``"int8"`` adds scalar quantization kept in RAM (server only): the
            HNSW search runs on 1-byte components and rescoring uses the full vectors.
        timeout: seconds per server request (rounded up to whole seconds).
        retry_seconds: how long a call keeps being retried while the server cannot be
            reached, before ``StoreUnavailableError`` (default ``DEFAULT_RETRY_SECONDS``).
        **options: passed to ``qdrant_client.QdrantClient`` (e.g. ``prefer_grpc=True``).
    """

    name: ClassVar[str] = "qdrant"
    #: The registered layouts (:func:`layout_names`) that this store has a record for in
    #: :data:`_SHAPES`, in the registry's order; the registered :class:`Layout` gives their
    #: row ids and metadata and hit codecs.
    layouts: ClassVar[tuple[str, ...]] = tuple(n for n in layout_names("qdrant") if n in _SHAPES)

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        api_key: str | None = None,
        on_disk: bool = False,
        quantization: str | None = None,
        timeout: float = 30.0,
        retry_seconds: float | None = None,
        layout: str | None = None,
        **options: Any,
    ) -> None:
        if layout is not None:
            get_layout(layout, self.layouts, self.name)
        self.requested_layout = layout
        try:
            import qdrant_client
            from qdrant_client.http.exceptions import ResponseHandlingException
        except ImportError as exc:
            raise ImportError(
                "QdrantSink needs qdrant-client; install it with: pip install 'e5-integrations[qdrant]'"
            ) from exc
        if quantization not in _QUANTIZATIONS:
            raise ConfigurationError(
                f"quantization={quantization!r} is not supported; expected None or 'int8'"
            )
        _check_collection_name(collection)
        if not timeout > 0:
            raise ConfigurationError(f"timeout={timeout}; expected a positive number of seconds")
        self.is_server = uri.startswith(("http://", "https://"))
        if api_key is None and self.is_server:
            api_key = os.environ.get("QDRANT_API_KEY")
        self._secrets = [*secrets_of(uri), api_key]
        self.uri = redact(uri, self._secrets)  # the only copy of the URI that is ever shown
        self.collection = collection
        self.on_disk = on_disk
        self.quantization = quantization
        self._retry = RetryPolicy(retry_seconds)
        self._retry_on: tuple[type[BaseException], ...] = (
            ResponseHandlingException,
            ConnectionError,
            TimeoutError,
        )
        self._client = self._make_client(qdrant_client, uri, api_key, timeout, options)
        self._ready = False  # the collection is known to exist
        self._vectors: models.VectorParams | None = (
            None  # its unnamed vector's VectorParams, read once per sink
        )

    def __repr__(self) -> str:
        return f"QdrantSink(uri={self.uri!r}, collection={self.collection!r})"

    @property
    def retry_wait_seconds(self) -> float:
        """Seconds spent waiting between retries of an unreachable server."""
        return self._retry.waited

    def _make_client(
        self, module: Any, uri: str, api_key: str | None, timeout: float, options: dict[str, Any]
    ) -> Any:
        try:
            if self.is_server:
                # qdrant-client's version check runs in a thread of its own that only warns
                # (also when the server is down, which this sink reports itself); opt in with
                # check_compatibility=True.
                options = {"check_compatibility": False, **options}
                return module.QdrantClient(url=uri, api_key=api_key, timeout=math.ceil(timeout), **options)
            if self.on_disk or self.quantization:
                _log.info(
                    "qdrant local mode keeps vectors in RAM and ignores on_disk/quantization; "
                    "they apply on a Qdrant server"
                )
            if self.uri == ":memory:":
                return module.QdrantClient(location=":memory:", **options)
            return module.QdrantClient(path=self.uri, **options)
        except TypeError as exc:
            raise ConfigurationError(
                f"unsupported QdrantSink option ({redact(str(exc), self._secrets)}); "
                "see QdrantSink's docstring for its options"
            ) from None
        except RuntimeError as exc:  # local folder locked by another client
            raise ConfigurationError(
                f"cannot open the Qdrant folder {self.uri!r}: {exc}. Close the other client "
                "using it, or run a Qdrant server and pass its http:// URL"
            ) from None

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        return self._retry.call(
            lambda: self._translate(what, fn),
            what=f"qdrant {what} at {self.uri} (collection {self.collection!r})",
            retry_on=self._retry_on,
            secrets=self._secrets,
        )

    def _translate(self, what: str, fn: Callable[[], _T]) -> _T:
        """Call ``fn``; an HTTP error status from a server becomes a ``StoreError`` that says
        what to do (502/503/504 become ``Unreachable``, so they are retried)."""
        from qdrant_client.http.exceptions import UnexpectedResponse

        try:
            return fn()
        except UnexpectedResponse as exc:
            status = exc.status_code
            detail = redact(_response_detail(exc), self._secrets)
            where = f"the Qdrant server at {self.uri} ({what} on collection {self.collection!r})"
            if status in _RETRIED_STATUSES:
                raise Unreachable(f"{where} answered HTTP {status} {detail}") from None
            if status in (401, 403):
                raise StoreError(
                    f"{where} refused the request with HTTP {status} ({detail}): the API key is missing "
                    "or wrong; pass the server's key with --api-key (api_key= in Python) or the "
                    "QDRANT_API_KEY environment variable"
                ) from None
            raise StoreError(
                f"{where} failed with HTTP {status}: {detail}; check the server's log, and that the "
                "collection name and options are ones this server accepts"
            ) from None

    def _exists(self) -> bool:
        return bool(self._call("collection_exists", lambda: self._client.collection_exists(self.collection)))

    # -- Sink API --------------------------------------------------------------------------

    @classmethod
    def check_document(cls, document: Document, layout: str = "e5") -> str | None:
        """Also refuse the fields that the layout's framework reader overwrites in every
        returned result (langchain-qdrant: ``_id``, ``_collection_name``)."""
        problem = super().check_document(document, layout)  # first: an unknown layout is refused
        if problem is None:
            shape = _SHAPES[layout]
            for key in shape.reader_keys:
                if key in document.metadata:
                    return (
                        f"field {key!r}: {shape.reader} sets its own {key!r} in the metadata "
                        "of every Document it returns, so the document's field would be lost; rename the "
                        "field in the source"
                    )
        return problem

    def detect_layout(self) -> str | None:
        """The layout of the existing collection: that of a point e5 wrote (one with
        ``e5_content_hash``), else of a sampled point's payload shape; ``None`` when the
        collection is missing or empty."""
        from qdrant_client import models

        if not self._exists():
            return None

        def present(key: str) -> models.Filter:
            return models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=key))])

        marked = models.Filter(should=[present(f"metadata.{CONTENT_HASH_KEY}"), present(CONTENT_HASH_KEY)])
        # a point e5 wrote first (its payload shape is its layout's), else any point
        for found in (marked, None):
            points, _ = self._call(
                "scroll",
                functools.partial(
                    self._client.scroll,
                    self.collection,
                    scroll_filter=found,
                    limit=1,
                    with_payload=[*_BOOKKEEPING_PAYLOAD, "page_content", "text"],
                    with_vectors=False,
                ),
            )
            if points:
                return _kind(points[0].payload or {})
        return None

    def ensure_collection(self, dim: int) -> None:
        """Create the collection with cosine distance, as the layout's framework class
        creates it, or check the existing one's dimension and distance
        (``SchemaMismatchError``; nothing is written). A collection in another layout than
        ``layout=`` is a ``SchemaMismatchError`` too."""
        layout = self.layout  # a disagreeing layout= fails here, before anything is written
        shape = _SHAPES[layout.name]
        self._vectors = None
        if self._exists():
            self._check_schema(dim)
            self._ready = True
            return
        from qdrant_client import models

        params = models.VectorParams(size=dim, distance=models.Distance.COSINE, on_disk=self.on_disk or None)
        vectors: models.VectorParams | dict[str, models.VectorParams] = (
            {"": params} if shape.vector_named else params
        )
        quantization = None
        if self.quantization == "int8":
            quantization = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
            )
        self._call(
            "create_collection",
            lambda: self._client.create_collection(
                self.collection, vectors_config=vectors, quantization_config=quantization
            ),
        )
        keyword_index = shape.keyword_index
        if keyword_index is not None and self.is_server:
            self._call(
                "create_payload_index",
                lambda: self._client.create_payload_index(
                    self.collection,
                    field_name=keyword_index,
                    field_schema=models.PayloadSchemaType.KEYWORD,
                    wait=True,
                ),
            )
        self._ready = True
        _log.info(
            "created qdrant collection %r (%d dims, cosine, %s)", self.collection, dim, layout.describe()
        )

    def _check_schema(self, dim: int) -> None:
        from qdrant_client import models

        info = self._call("get_collection", lambda: self._client.get_collection(self.collection))
        vectors = _unnamed(info.config.params.vectors)
        if vectors is None:
            named = info.config.params.vectors
            raise SchemaMismatchError(
                f"qdrant collection {self.collection!r} uses named vectors {sorted(named or {})}; "
                "expected one unnamed cosine vector. Use another collection name or drop it"
            )
        if vectors.size != dim or vectors.distance != models.Distance.COSINE:
            raise SchemaMismatchError(
                f"qdrant collection {self.collection!r} has {vectors.size}-dim {vectors.distance.value} "
                f"vectors; the embeddings are {dim}-dim cosine; {rebuild_hint()}"
            )
        self._vectors = vectors

    def max_batch_records(self, dim: int) -> int:
        """Records per upsert that keep a JSON request well under Qdrant's 32 MB limit."""
        per_record = dim * _JSON_BYTES_PER_DIM + _PAYLOAD_ESTIMATE_BYTES
        return max(1, int(REQUEST_LIMIT_BYTES * _REQUEST_BUDGET) // per_record)

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """``{chunk id: content hash}`` for the given ids that are stored."""
        if not ids or not self._exists():
            return {}
        chunks = {point_id(i): i for i in ids}
        points = self._call(
            "retrieve",
            lambda: self._client.retrieve(
                self.collection, ids=list(chunks), with_payload=_BOOKKEEPING_PAYLOAD, with_vectors=False
            ),
        )
        hashes: dict[str, str] = {}
        for point in points:
            content_hash = _flat_metadata(point.payload or {}).get(CONTENT_HASH_KEY)
            chunk = chunks.get(str(point.id))
            if chunk is not None and isinstance(content_hash, str):
                hashes[chunk] = content_hash
        return hashes

    def upsert(self, records: Sequence[Record]) -> None:
        """Upsert records (acknowledged with ``wait=True``), split so each request stays
        under the request size limit even when texts are long."""
        from qdrant_client import models

        if not records:
            return
        layout = self.layout  # a disagreeing layout= fails here, before anything is written
        encode = _SHAPES[layout.name].encode
        if not self._ready:
            if not self._exists():
                raise StoreError(
                    f"qdrant collection {self.collection!r} at {self.uri} does not exist; "
                    "call ensure_collection(dim) before upsert"
                )
            self._ready = True
        points = [
            models.PointStruct(
                id=point_id(r.id),
                vector=np.asarray(r.embedding, dtype=np.float32).tolist(),
                payload=encode(r, layout),
            )
            for r in records
        ]
        for chunk in _split_by_size(points):
            self._call(
                "upsert",
                functools.partial(self._client.upsert, self.collection, points=chunk, wait=True),
            )
        _log.debug(
            "upserted %d points into qdrant collection %r (%s)", len(points), self.collection, layout.name
        )

    def set_content_hashes(self, values: Mapping[str, str]) -> int:
        """Replace the ``e5_content_hash`` of stored chunks (``{chunk id: new value}``) and
        nothing else of their points: the vector, the text and every other payload key stay.

        The points are read in slices (payload only) and each changed one gets a
        ``SetPayloadOperation`` holding only the keys that change, at the path where its own
        payload's layout keeps the metadata (``key="metadata"`` for e5 and langchain, the top
        level for llama-index, whose ``_node_content`` copy changes too:
        :func:`with_content_hash`); the operations go in ``batch_update_points`` requests
        (``wait=True``) that stay under the request size limit. Ids not stored, or stored
        without a string ``e5_content_hash``, are left alone, and so are points that already
        hold the value (idempotent). Returns how many points were changed."""
        from qdrant_client import models

        if not values or not self._exists():
            return 0
        chunks = {point_id(chunk): chunk for chunk in values}
        operations: list[models.SetPayloadOperation] = []
        for ids in by_count(list(chunks), _RETRIEVE_SLICE):
            points = self._call(
                "retrieve",
                functools.partial(
                    self._client.retrieve, self.collection, ids=ids, with_payload=True, with_vectors=False
                ),
            )
            for point in points:
                chunk = chunks.get(str(point.id))
                payload = point.payload or {}
                metadata = _flat_metadata(payload)
                if chunk is None or not isinstance(metadata.get(CONTENT_HASH_KEY), str):
                    continue  # not e5's point
                updated = with_content_hash(metadata, values[chunk])
                change = {k: v for k, v in updated.items() if k not in metadata or metadata[k] != v}
                if not change:
                    continue  # already holds the value
                key = _shape_of(payload).metadata_key
                operations.append(
                    models.SetPayloadOperation(
                        set_payload=models.SetPayload(payload=change, points=[point.id], key=key)
                    )
                )
        for request in by_size(operations, int(REQUEST_LIMIT_BYTES * _REQUEST_BUDGET), _operation_bytes):
            self._call(
                "batch_update_points",
                functools.partial(self._client.batch_update_points, self.collection, request, wait=True),
            )
        _log.debug(
            "set the content hash of %d points in qdrant collection %r", len(operations), self.collection
        )
        return len(operations)

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` nearest records by cosine similarity, best first; ``[]`` when the
        collection does not exist.

        A collection that another writer made with the ``Dot`` or ``Euclid`` distance is read
        too: between unit vectors both rank exactly like cosine, with cos = a.b and
        cos = 1 - d^2 / 2 for Qdrant's (not squared) Euclidean distance d. The query is
        normalised, and the search is refused with ``SchemaMismatchError`` when a hit's
        stored vector is not unit-norm, or for ``Manhattan``, instead of printing wrong scores.
        """
        from qdrant_client import models

        if k < 1 or not self._exists():
            self._vectors = None
            return []
        distance = self._distance()
        query = np.asarray(vector, dtype=np.float32).ravel()
        converted = distance in (models.Distance.DOT, models.Distance.EUCLID)
        if converted:
            query = unit_query(query)
        elif distance not in (models.Distance.COSINE, None):
            raise SchemaMismatchError(
                f"qdrant collection {self.collection!r} at {self.uri} uses the {distance.value!r} "
                "distance, which e5 search cannot turn into a cosine similarity (it reads Cosine, Dot "
                "and Euclid collections); search a collection ingested by e5 (cosine): pass its --collection"
            )
        response = self._call(
            "query_points",
            lambda: self._client.query_points(
                self.collection, query=query.tolist(), limit=k, with_payload=True, with_vectors=converted
            ),
        )
        if converted and distance is not None:
            vectors = [p.vector for p in response.points]
            check_unit_norm(vectors, f"qdrant collection {self.collection!r} at {self.uri}", distance.value)
        return [
            _hit(
                str(p.id),
                1.0 - float(p.score) ** 2 / 2 if distance == models.Distance.EUCLID else float(p.score),
                p.payload or {},
            )
            for p in response.points
        ]

    def _unnamed_vector(self) -> models.VectorParams | None:
        """The ``VectorParams`` of the collection's unnamed vector (``None`` with named
        vectors only), read once per sink: searches make no ``get_collection`` call each."""
        if self._vectors is None:
            info = self._call("get_collection", lambda: self._client.get_collection(self.collection))
            self._vectors = _unnamed(info.config.params.vectors)
        return self._vectors

    def _distance(self) -> models.Distance | None:
        """The distance of the collection's unnamed vector (``None`` with named vectors)."""
        vectors = self._unnamed_vector()
        return vectors.distance if vectors is not None else None

    def dimension(self) -> int | None:
        """The size of the collection's (unnamed) vector; ``None`` if it does not exist."""
        if not self._exists():
            self._vectors = None
            return None
        vectors = self._unnamed_vector()
        return int(vectors.size) if vectors is not None else None

    def count(self) -> int:
        """Exact number of points; 0 if the collection does not exist."""
        if not self._exists():
            return 0
        result = self._call("count", lambda: self._client.count(self.collection, exact=True))
        return int(result.count)

    def scan(self, page_size: int = 1000) -> Iterator[list[tuple[str, str | None]]]:
        """Pages of ``(chunk id, document id)`` over the whole collection (``scroll``); the
        document id is ``None`` for points e5 did not write (:func:`e5_document_id`)."""
        if not self._exists():
            return
        offset: models.ExtendedPointId | None = None
        while True:
            points, offset = self._call(
                "scroll",
                functools.partial(
                    self._client.scroll,
                    self.collection,
                    limit=page_size,
                    offset=offset,
                    with_payload=_BOOKKEEPING_PAYLOAD,
                    with_vectors=False,
                ),
            )
            page = []
            for point in points:
                payload = point.payload or {}
                page.append((_chunk_id(str(point.id), payload), e5_document_id(_flat_metadata(payload))))
            if page:
                yield page
            if offset is None:
                return

    def delete(self, ids: Iterable[str]) -> None:
        """Delete records by chunk id (missing ids are ignored)."""
        from qdrant_client import models

        selector = models.PointIdsList(points=[point_id(i) for i in ids])
        if not selector.points or not self._exists():
            return
        self._call(
            "delete", lambda: self._client.delete(self.collection, points_selector=selector, wait=True)
        )

    def drop(self) -> None:
        """Delete the whole collection (no error if it does not exist)."""
        if self._exists():
            self._call("delete_collection", lambda: self._client.delete_collection(self.collection))
        self._ready = False
        self._vectors = None
        self.forget_layout()

    def close(self) -> None:
        """Close the client (releases the local folder lock). Safe to call twice."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _unnamed(
    vectors: models.VectorParams | Mapping[str, models.VectorParams] | None,
) -> models.VectorParams | None:
    """The ``VectorParams`` of a collection's unnamed vector: the config itself, or its
    ``""`` entry (how langchain-qdrant names it); ``None`` when it has named vectors only."""
    from qdrant_client import models

    if isinstance(vectors, dict):
        vectors = vectors.get("")
    return vectors if isinstance(vectors, models.VectorParams) else None


def _kind(payload: dict[str, Any]) -> str | None:
    """The layout a point's payload follows, by its shape; ``None`` for an unknown one."""
    return next((s.name for s in _SHAPES.values() if any(key in payload for key in s.marks)), None)


def _shape_of(payload: dict[str, Any]) -> _Points:
    """The record a point is read with: its payload's layout's, else e5's."""
    kind = _kind(payload)
    return _UNMARKED if kind is None else _SHAPES[kind]


def _flat_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    """A point's metadata, with e5's bookkeeping, wherever its layout keeps it."""
    key = _shape_of(payload).metadata_key
    if key is None:
        return payload
    metadata = payload.get(key)
    return metadata if isinstance(metadata, dict) else {}


def _chunk_id(point: str, payload: dict[str, Any]) -> str:
    """The chunk id of a point: e5's (``id``, or ``e5_chunk_id`` in the framework layouts),
    else the point id (a point e5 did not write)."""
    key = _shape_of(payload).id_key
    found = None if key is None else payload.get(key)
    if not isinstance(found, str):
        found = _flat_metadata(payload).get(CHUNK_ID_KEY)
    return found if isinstance(found, str) else point


def _hit(point: str, score: float, payload: dict[str, Any]) -> Hit:
    """A search hit from a point, decoded by its own payload's layout."""
    shape = _shape_of(payload)
    return shape.decode(get_layout(shape.name), point, score, payload)


def _check_collection_name(name: str) -> None:
    """Refuse a name a Qdrant server (or local mode's folder) cannot hold, before any call."""
    bad = sorted({c for c in name if c in _FORBIDDEN_NAME_CHARS or ord(c) < 32})
    if not name or len(name) > _MAX_NAME_LENGTH or bad or name.strip() in (".", ".."):
        reason = f"it contains {''.join(bad)!r}" if bad else f"it has {len(name)} characters"
        raise ConfigurationError(
            f"invalid Qdrant collection name {name!r}: {reason}; expected 1-{_MAX_NAME_LENGTH} "
            "characters without < > : \" / \\ | ? * or control characters, e.g. 'docs_v1' "
            "(--collection)"
        )


def _response_detail(exc: UnexpectedResponse) -> str:
    """The server's error text of an ``UnexpectedResponse``, shortened."""
    content = exc.content.decode("utf-8", "replace") if isinstance(exc.content, bytes) else str(exc.content)
    try:
        status = json.loads(content).get("status")
        if isinstance(status, dict) and status.get("error"):
            content = str(status["error"])
    except (ValueError, AttributeError):
        pass
    text = " ".join((exc.reason_phrase or "", content)).strip()
    return text[:300] or "no details"


def _estimated_json_bytes(point: models.PointStruct) -> int:
    assert isinstance(point.vector, list)  # upsert sends one unnamed dense vector per point
    payload = json.dumps(point.payload, ensure_ascii=False, default=str)
    return len(point.vector) * _JSON_BYTES_PER_DIM + len(payload.encode()) + 128


def _split_by_size(points: list[models.PointStruct]) -> Iterable[list[models.PointStruct]]:
    """Group points into requests whose estimated JSON size fits the request budget."""
    return by_size(points, int(REQUEST_LIMIT_BYTES * _REQUEST_BUDGET), _estimated_json_bytes)


def _operation_bytes(operation: models.SetPayloadOperation) -> int:
    """The estimated JSON size of a ``SetPayloadOperation`` in a ``batch_update_points`` request."""
    change = operation.set_payload
    payload = json.dumps(change.payload, ensure_ascii=False, default=str)
    return len(payload.encode()) + 40 * len(change.points or ()) + 128
