"""Chroma sink: an embedded ``PersistentClient`` directory or a Chroma server over HTTP.

- ``uri`` is a directory (embedded, created if missing) or ``http(s)://host:port``.
- The collection uses the cosine space and ``embedding_function=None`` (vectors come from us).
  Its metadata records the dimension (``e5_dim``) so a later run can check it.
- Chroma metadata values must be scalars: other values (dicts, lists, ``None``) are stored
  JSON-encoded, their keys listed under ``e5_json_keys``, and decoded on read, so metadata
  round-trips. Chroma merges metadata on upsert; keys a record no longer has are removed.

Layouts (``layout=``, ``e5 ingest --layout``; see ``Layout`` in ``e5_integrations.sinks``):

- ``e5``: id = the chunk id, ``documents`` = the text, ``metadatas`` = the record's metadata;
  the collection's metadata is ``{"e5_dim": dim}`` (unchanged since before layouts).
- ``langchain`` (langchain-chroma ``Chroma``): id = UUIDv5 of the chunk id, ``documents`` =
  ``page_content``, ``metadatas`` = the Document's metadata (the record's plus
  ``e5_chunk_id``); the collection's metadata adds ``"e5_layout": "langchain"``.
- ``llama-index`` (``ChromaVectorStore``): id = the node id (UUIDv5 of the chunk id),
  ``documents`` = the node's text, ``metadatas`` = ``node_to_metadata_dict(remove_text=True)``
  (``_node_content``, ``_node_type``, ``document_id``/``doc_id``/``ref_doc_id`` = e5's document
  id, so ``delete_ref_doc`` works); the collection's metadata adds ``"e5_layout": "llama-index"``.

Framework-layout collections are created in the cosine space, like e5's, so LangChain picks
its cosine relevance function (``1 - distance``); LlamaIndex reports ``exp(-distance)``. In
every layout non-scalar values are JSON-encoded as above: LangChain's ``Document.metadata``
then holds the JSON string and ``e5_json_keys``; LlamaIndex rebuilds a node's metadata from
``_node_content``, so it sees the original values.

Detection of an existing collection's layout: ``e5_layout`` in its metadata; else ``e5_dim``
(a collection e5 made before layouts): ``e5``; else a sampled row: ``_node_content`` is
``llama-index``, e5's marks as :func:`~e5_integrations.sinks.layout_of_metadata`
says, any other row ``langchain``; an empty collection e5 did not make shows none.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import numpy as np

from e5_integrations.sinks import (
    CHUNK_ID_KEY,
    CONTENT_HASH_KEY,
    ConfigurationError,
    Document,
    Hit,
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
    layout_of_metadata,
    rebuild_hint,
    redact,
    secrets_of,
    with_content_hash,
)
from e5_integrations.sinks._metric import check_unit_norm, unit_query
from e5_integrations.sinks._requests import by_count, last_per_id

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import Include

__all__ = ["ChromaSink"]

T = TypeVar("T")

#: Collection metadata key holding the vector dimension, written at creation.
DIM_KEY = "e5_dim"
#: Collection metadata key holding the layout of a framework-layout collection (absent: ``e5``).
LAYOUT_KEY = "e5_layout"
#: Rows read to detect the layout of a collection without e5's collection metadata.
DETECT_SAMPLE = 10
#: Record metadata key listing the keys whose values are stored JSON-encoded.
JSON_KEYS_KEY = "e5_json_keys"
#: Keep one HTTP request (JSON, ~24 bytes per float) under this many bytes.
REQUEST_BUDGET_BYTES = 32 * 1024 * 1024
#: Ids per ``get``/``delete`` request.
READ_SLICE = 1000

#: ``cos = 1 - distance * factor`` for unit vectors, per Chroma space (see ``_cosine_from_distance``).
_COSINE_FROM_DISTANCE = {"cosine": 1.0, "l2": 0.5, "ip": 1.0}

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_SCALARS = (str, bool, int, float)
#: Metadata key prefixes Chroma refuses (``#``, ``$``, ``chroma:document``) or drops (``chroma:``).
_CHROMA_RESERVED_PREFIXES = ("#", "$", "chroma:")


@dataclass(frozen=True)
class _Rows:
    """One layout's rows in Chroma, the record the methods of :class:`ChromaSink` read (the
    row id, metadata and hit codecs are the layout's own, ``Layout.row_id``/``metadata``/``hit``).
    """

    #: the layout's name (``Layout.name``)
    name: str
    #: whether the collection's metadata names the layout (``e5_layout``); e5's own
    #: collections keep the metadata they had before layouts (``e5_dim`` only)
    tagged: bool
    #: the row metadata key holding the chunk id of e5's rows; ``None``: the row id is it
    chunk_key: str | None


#: The layouts' records, in the order sampled rows show a layout (:meth:`ChromaSink.detect_layout`).
_SHAPES: dict[str, _Rows] = {
    "llama-index": _Rows("llama-index", tagged=True, chunk_key=CHUNK_ID_KEY),
    "langchain": _Rows("langchain", tagged=True, chunk_key=CHUNK_ID_KEY),
    "e5": _Rows("e5", tagged=False, chunk_key=None),
}


class ChromaSink(Sink):
    """A Chroma collection with the cosine metric.

    Args:
        uri: a directory for the embedded ``PersistentClient``, or ``http(s)://host:port``
            for a Chroma server (port 8000 if omitted; ``http://user:password@host:port``
            sends HTTP basic auth). The password is never shown: ``self.uri`` is redacted.
        collection: collection name: 3-512 characters from ``[a-zA-Z0-9._-]``, starting and
            ending with a letter or digit.
        timeout: seconds each HTTP request to a server may take (connect, send, answer).
        retry_seconds: how long a call keeps being retried while the server cannot be
            reached, before ``StoreUnavailableError`` (default ``DEFAULT_RETRY_SECONDS``).
        layout: ``"e5"``, ``"langchain"`` or ``"llama-index"`` (see the module docstring);
            ``None``: the existing collection's, else ``"e5"``.

    Raises:
        ImportError: ``chromadb`` is not installed.
        ConfigurationError: the collection name, URI or layout is invalid.
        StoreUnavailableError: the server cannot be reached.
    """

    name: ClassVar[str] = "chroma"
    #: The registered layouts (:func:`layout_names`) that this store has a record for in
    #: :data:`_SHAPES`, in the registry's order; the registered :class:`Layout` gives their
    #: row ids and metadata and hit codecs.
    layouts: ClassVar[tuple[str, ...]] = tuple(n for n in layout_names("chroma") if n in _SHAPES)

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        timeout: float = 30.0,
        retry_seconds: float | None = None,
        layout: str | None = None,
    ) -> None:
        if layout is not None:
            get_layout(layout, self.layouts, self.name)
        self.requested_layout = layout
        try:
            import chromadb
        except ImportError as exc:
            raise ImportError(
                "the Chroma sink needs chromadb; install it with: pip install 'e5-integrations[chroma]'"
            ) from exc
        _check_collection_name(collection)
        self._secrets = secrets_of(uri)
        self.uri = redact(uri, self._secrets)  # the only copy of the URI that is ever shown
        self.collection = collection
        self._retry = RetryPolicy(retry_seconds)
        self._closed = False
        self._collection: Collection | None = None
        self._max_batch_size: int | None = None
        self._client = self._call(lambda: _connect(chromadb, uri, timeout))

    def __repr__(self) -> str:
        return f"ChromaSink(uri={self.uri!r}, collection={self.collection!r})"

    @property
    def retry_wait_seconds(self) -> float:
        """Seconds spent waiting between retries of an unreachable server."""
        return self._retry.waited

    # -- Sink API -------------------------------------------------------------------------

    @classmethod
    def check_document(cls, document: Document, layout: str = "e5") -> str | None:
        """Also refuse metadata keys Chroma refuses (empty, ``#...``, ``$...``,
        ``chroma:document``) or silently drops (other ``chroma:...``), in every layout
        (the framework layouts keep the metadata at the top level of Chroma's metadata too)."""
        for key in document.metadata:
            if key == "" or key.startswith(_CHROMA_RESERVED_PREFIXES):
                return (
                    f"field {key!r}: Chroma keeps metadata keys that are empty or start with "
                    f"{', '.join(map(repr, _CHROMA_RESERVED_PREFIXES))} for itself; rename the field"
                )
        return super().check_document(document, layout)

    def ensure_collection(self, dim: int) -> None:
        """Create the collection (cosine, ``e5_dim`` = ``dim``, ``e5_layout`` in a framework
        layout) or check the existing one. The layout is resolved first, so a disagreeing
        ``layout=`` fails before anything is created."""
        if dim < 1:
            raise ConfigurationError(f"dimension must be a positive integer, got {dim}")
        layout = self.layout
        shape = _SHAPES[layout.name]
        metadata: dict[str, Any] = {DIM_KEY: dim}
        if shape.tagged:
            metadata[LAYOUT_KEY] = shape.name
        existing = self._existing()
        if existing is None:
            try:
                self._collection = self._call(
                    lambda: self._client.create_collection(
                        name=self.collection,
                        configuration={"hnsw": {"space": "cosine"}},
                        metadata=metadata,
                        embedding_function=None,
                    )
                )
                return
            except StoreUnavailableError:
                raise
            except Exception:
                existing = self._existing()  # created meanwhile by another worker?
                if existing is None:
                    raise
        self._check_schema(existing, dim)
        self._collection = existing

    def max_batch_records(self, dim: int) -> int:
        """``client.get_max_batch_size()``, lowered so one JSON request stays under 32 MiB."""
        if self._max_batch_size is None:
            self._max_batch_size = int(self._call(self._client.get_max_batch_size))
        per_record = 24 * dim + 64 * 1024
        return max(1, min(self._max_batch_size, REQUEST_BUDGET_BYTES // per_record))

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """``{chunk id: e5_content_hash}`` for the chunk ids stored with a hash."""
        collection = self._collection or self._existing()
        if collection is None:
            return {}
        chunk_of = self._row_ids(ids)
        found: dict[str, str] = {}
        for part in by_count(list(chunk_of), READ_SLICE):
            got = self._call(functools.partial(collection.get, ids=part, include=["metadatas"]))
            for id_, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                value = (meta or {}).get(CONTENT_HASH_KEY)
                if isinstance(value, str):
                    found[chunk_of[id_]] = value
        return found

    def set_content_hashes(self, values: Mapping[str, str]) -> int:
        """Set the ``e5_content_hash`` of stored rows (``{chunk id: value}``), in
        ``_node_content`` too in LlamaIndex's layout (:func:`with_content_hash`): an ``update``
        of those keys only, which Chroma merges into each row's metadata (the vector, the
        document and the other keys stay). Returns the rows changed."""
        collection = self._collection or self._existing()
        if collection is None or not values:
            return 0
        chunk_of = self._row_ids(list(values))
        changed = 0
        for part in by_count(list(chunk_of), READ_SLICE):
            got = self._call(functools.partial(collection.get, ids=part, include=["metadatas"]))
            ids: list[str] = []
            metadatas: list[dict[str, Any]] = []
            for id_, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                stored = dict(meta or {})
                value = values[chunk_of[id_]]
                if not isinstance(stored.get(CONTENT_HASH_KEY), str) or stored[CONTENT_HASH_KEY] == value:
                    continue
                kept = {key: stored[key] for key in (CONTENT_HASH_KEY, "_node_content") if key in stored}
                ids.append(id_)
                metadatas.append(with_content_hash(kept, value))
            if ids:
                # chromadb's annotation wants Mapping[str, scalar]; these are strings
                self._call(functools.partial(collection.update, ids=ids, metadatas=metadatas))  # type: ignore[arg-type]
                changed += len(ids)
        return changed

    def upsert(self, records: Sequence[Record]) -> None:
        """Insert or replace ``records`` by id (metadata keys they no longer have are removed)."""
        if not records:
            return
        layout = self.layout  # a disagreeing layout= fails here, before anything is written
        collection = self._require_collection()
        records = last_per_id(records)  # Chroma refuses a repeated id in one call
        ids = [layout.row_id(r.id) for r in records]
        old = self._call(lambda: collection.get(ids=ids, include=["metadatas"]))
        old_keys = {i: set(m or ()) for i, m in zip(old["ids"], old["metadatas"] or [], strict=True)}
        metadatas = [
            _encode_metadata(
                layout.metadata(r, remove_text=True),
                old_keys.get(i, set()),
            )
            for i, r in zip(ids, records, strict=True)
        ]
        embeddings = np.stack([np.asarray(r.embedding, dtype=np.float32) for r in records])
        self._call(
            lambda: collection.upsert(
                ids=ids,
                embeddings=embeddings,
                documents=[r.text for r in records],
                # None is allowed per record, which chromadb's annotation (a list of mappings) omits
                metadatas=metadatas,  # type: ignore[arg-type]
            )
        )

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` nearest records; ``score`` is the cosine similarity.

        A collection that e5 made uses the cosine space: score = 1 - Chroma's distance. A
        collection made by another writer may use ``l2`` (LangChain's and chromadb's
        default) or ``ip``; between unit vectors both rank exactly like cosine, and the
        distance converts exactly (:func:`_cosine_from_distance`), so the query is
        normalised and the scores converted. If a hit's stored vector is not unit-norm the
        ranking is not the cosine ranking, and the search is refused with
        ``SchemaMismatchError`` instead of printing wrong scores (only the hits' vectors
        are checked; a collection mixing unit and other vectors can slip through).
        """
        collection = self._collection or self._existing()
        if collection is None or k < 1:
            return []
        space = _space_of(collection)
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        include: Include = ["documents", "metadatas", "distances"]
        if space != "cosine":
            self._check_space(space)
            query = unit_query(query)
            include.append("embeddings")
        result = self._call(lambda: collection.query(query_embeddings=query, n_results=k, include=include))
        distances, documents, metadatas = result["distances"], result["documents"], result["metadatas"]
        assert distances is not None and documents is not None and metadatas is not None  # included
        if space != "cosine":
            embeddings = result["embeddings"]
            assert embeddings is not None  # included for a space other than cosine
            check_unit_norm(embeddings[0], f"Chroma collection {self.collection!r} at {self.uri}", space)
        rows = zip(
            result["ids"][0],
            distances[0],
            documents[0],
            metadatas[0],
            strict=True,
        )
        layout = self.layout
        return [
            layout.hit(id_, _cosine_from_distance(space, float(dist)), doc, _decode_metadata(meta))
            for id_, dist, doc, meta in rows
        ]

    def dimension(self) -> int | None:
        """The collection's vector dimension (``e5_dim``, else one stored vector's length)."""
        collection = self._collection or self._existing()
        return None if collection is None else self._stored_dim(collection)

    def count(self) -> int:
        """Records in the collection; 0 if it does not exist."""
        collection = self._collection or self._existing()
        return 0 if collection is None else int(self._call(collection.count))

    def scan(self, page_size: int = 1000) -> Iterator[list[tuple[str, str | None]]]:
        """Pages of ``(chunk id, document id)`` over the whole collection (``get`` with
        offsets); the document id is ``None`` for rows e5 did not write (:func:`e5_document_id`),
        whose id is their own row id."""
        collection = self._collection or self._existing()
        if collection is None:
            return
        chunk_key = _SHAPES[self.layout.name].chunk_key
        offset = 0
        while True:
            got = self._call(
                functools.partial(collection.get, include=["metadatas"], limit=page_size, offset=offset)
            )
            page = [
                _scanned(id_, meta, chunk_key)
                for id_, meta in zip(got["ids"], got["metadatas"] or [], strict=True)
            ]
            if page:
                yield page
            if len(page) < page_size:
                return
            offset += len(page)

    def delete(self, ids: Iterable[str]) -> None:
        """Delete records by chunk id; unknown ids are ignored."""
        collection = self._collection or self._existing()
        if collection is None:
            return
        for part in by_count(list(self._row_ids(list(ids))), READ_SLICE):
            self._call(functools.partial(collection.delete, ids=part))

    def drop(self) -> None:
        """Delete the collection if it exists."""
        if self._existing() is not None:
            self._call(lambda: self._client.delete_collection(self.collection))
        self._collection = None
        self.forget_layout()

    def detect_layout(self) -> str | None:
        """The existing collection's layout: ``e5_layout`` (or ``e5`` for ``e5_dim``) in its
        metadata, else from a few rows (see the module docstring); ``None`` when it is missing
        or empty and not made by e5."""
        collection = self._collection or self._existing()
        if collection is None:
            return None
        metadata = collection.metadata or {}
        value = metadata.get(LAYOUT_KEY)
        if isinstance(value, str):
            return value
        if DIM_KEY in metadata:
            return "e5"
        got = self._call(lambda: collection.get(limit=DETECT_SAMPLE, include=["metadatas"]))
        if not got["ids"]:
            return None
        shown = [layout_of_metadata(meta) for meta in got["metadatas"] or []]
        for layout in _SHAPES:
            if layout in shown:
                return layout
        return "langchain"  # rows without any mark: LangChain's Chroma (or plain chromadb)

    def close(self) -> None:
        """Release the client (its shared system stops when the last client closes)."""
        if self._closed:
            return
        self._closed = True
        self._collection = None
        _close_client(self._client)

    # -- helpers --------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        """Run a client call, retrying connection failures, then ``StoreUnavailableError``."""
        return self._retry.call(
            lambda: _translate_unreachable(fn),
            what=f"Chroma at {self.uri}",
            retry_on=(Unreachable,),
            secrets=self._secrets,
        )

    def _existing(self) -> Collection | None:
        """The collection if it exists, else ``None``."""
        from chromadb.errors import NotFoundError

        def get() -> Collection | None:
            try:
                return self._client.get_collection(self.collection, embedding_function=None)
            except NotFoundError:
                return None

        return self._call(get)

    def _row_ids(self, chunk_ids: Sequence[str]) -> dict[str, str]:
        """``{row id: chunk id}`` in this sink's layout."""
        layout = self.layout
        return {layout.row_id(chunk_id): chunk_id for chunk_id in chunk_ids}

    def _require_collection(self) -> Collection:
        collection = self._collection or self._existing()
        if collection is None:
            raise StoreError(
                f"Chroma collection {self.collection!r} at {self.uri} does not exist; "
                "call ensure_collection(dim) before upsert"
            )
        self._collection = collection
        return collection

    def _check_schema(self, collection: Collection, dim: int) -> None:
        """Raise ``SchemaMismatchError`` if ``collection`` is not cosine or not ``dim``-dimensional."""
        where = f"Chroma collection {self.collection!r} at {self.uri}"
        fix = rebuild_hint()
        space = _space_of(collection)
        if space != "cosine":
            raise SchemaMismatchError(
                f"{where} uses the {space!r} distance, but e5 embeddings need 'cosine'; {fix}"
            )
        stored = self._stored_dim(collection)
        if stored is not None and stored != dim:
            raise SchemaMismatchError(
                f"{where} holds {stored}-dimensional vectors, but the embeddings are {dim}-dimensional; {fix}"
            )

    def _check_space(self, space: str) -> None:
        """Refuse to search a collection whose distance does not convert to cosine."""
        if space not in _COSINE_FROM_DISTANCE:
            raise SchemaMismatchError(
                f"Chroma collection {self.collection!r} at {self.uri} uses the {space!r} distance, which "
                f"e5 search cannot turn into a cosine similarity (it reads 'cosine', 'l2' and 'ip' "
                f"collections); search a collection ingested by e5 (cosine): pass its --collection"
            )

    def _stored_dim(self, collection: Collection) -> int | None:
        """``e5_dim`` from the collection metadata, else the length of one stored vector."""
        value = (collection.metadata or {}).get(DIM_KEY)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        peek = self._call(lambda: collection.get(limit=1, include=["embeddings"]))
        embeddings = peek.get("embeddings")
        if embeddings is None or len(embeddings) == 0:
            return None
        return len(embeddings[0])


def _connect(chromadb: Any, uri: str, timeout: float) -> Any:
    """An HTTP client (every request bounded by ``timeout``) for ``http(s)://`` URIs, else a
    ``PersistentClient`` on the path."""
    shown = redact(uri, secrets_of(uri))
    if uri.startswith(("http://", "https://")):
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(
                f"Chroma URI {shown!r} is malformed ({exc}); expected http://HOST:PORT"
            ) from None
        if not parts.hostname:
            raise ConfigurationError(f"Chroma URI {shown!r} has no host; expected http://HOST:PORT")
        if not timeout > 0:
            raise ConfigurationError(f"timeout={timeout}; expected a positive number of seconds")
        from e5_integrations.sinks._chroma_http import connect

        ssl = parts.scheme == "https"
        return connect(
            parts.hostname, port or (443 if ssl else 8000), ssl, timeout, parts.username, parts.password
        )
    if "://" in uri:
        raise ConfigurationError(f"Chroma URI {shown!r} is neither a directory nor http(s)://HOST:PORT")
    return chromadb.PersistentClient(path=uri)


def _close_client(client: Any) -> None:
    """``client.close()``, then close the HTTP sessions an ``HttpClient`` leaves open.

    chromadb 1.5 gives every ``HttpClient`` (and the admin client it makes) a system of its
    own, never shared, but stopping that system leaves its ``httpx.Client`` open, so sockets
    leak until garbage collection (``ResourceWarning``). Embedded clients have no session.
    """
    owners = [client, getattr(client, "_admin_client", None)]
    sessions = [getattr(getattr(o, "_server", None), "_session", None) for o in owners]
    client.close()
    for session in sessions:
        if session is not None:
            session.close()


def _translate_unreachable(fn: Callable[[], T]) -> T:
    """Call ``fn``; re-raise transport failures (also the ones chromadb wraps) as ``Unreachable``."""
    import httpx

    try:
        return fn()
    except httpx.TransportError as exc:
        raise Unreachable(str(exc)) from exc
    except ValueError as exc:
        if isinstance(exc.__context__, httpx.TransportError):
            raise Unreachable(str(exc.__context__)) from exc
        raise


def _check_collection_name(name: str) -> None:
    if not _NAME_RE.match(name) or ".." in name:
        raise ConfigurationError(
            f"invalid Chroma collection name {name!r}: expected 3-512 characters from "
            "[a-zA-Z0-9._-], starting and ending with a letter or digit, without '..'"
        )


def _space_of(collection: Collection) -> str:
    """The distance space from the collection configuration (HNSW or SPANN), else metadata."""
    config = collection.configuration_json or {}
    for index in ("hnsw", "spann"):
        section = config.get(index)
        if isinstance(section, dict) and section.get("space"):
            return str(section["space"])
    return str((collection.metadata or {}).get("hnsw:space", "l2"))


def _cosine_from_distance(space: str, distance: float) -> float:
    """Cosine similarity from Chroma's distance in ``space``, exact for unit-norm vectors.

    - ``cosine``: Chroma returns 1 - cos, so cos = 1 - d (any norms).
    - ``l2``: Chroma returns the *squared* Euclidean distance. For unit vectors
      ``|a - b|^2 = 2 - 2 cos``, so cos = 1 - d / 2.
    - ``ip``: Chroma returns 1 - a.b, and a.b = cos for unit vectors, so cos = 1 - d.

    E5 embeddings, the query's and the ones e5 stores, are unit-norm; :meth:`ChromaSink.search`
    normalises the query and checks the stored vectors of its hits before it trusts this.
    """
    return 1.0 - distance * _COSINE_FROM_DISTANCE[space]


def _scanned(row_id: str, stored: Mapping[str, Any] | None, chunk_key: str | None) -> tuple[str, str | None]:
    """``(chunk id, document id)`` of a stored row: the chunk id from ``chunk_key``
    (``e5_chunk_id`` in a framework layout), else (e5's layout, rows e5 did not write) the row id."""
    meta = stored or {}
    chunk = meta.get(chunk_key) if chunk_key is not None else None
    return (chunk if isinstance(chunk, str) else row_id), e5_document_id(meta)


def _encode_metadata(metadata: Mapping[str, Any], old_keys: set[str]) -> dict[str, Any] | None:
    """Chroma-safe metadata: scalars as is, other values JSON-encoded; stale keys set to ``None``."""
    encoded: dict[str, Any] = {}
    json_keys: list[str] = []
    for key, value in metadata.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, _SCALARS):
            encoded[key] = value
        else:
            encoded[key] = json.dumps(value, ensure_ascii=False)
            json_keys.append(key)
    if json_keys:
        encoded[JSON_KEYS_KEY] = json.dumps(json_keys, ensure_ascii=False)
    for stale in old_keys - encoded.keys():
        encoded[stale] = None  # None removes the key on upsert
    return encoded or None


def _decode_metadata(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Invert :func:`_encode_metadata`."""
    if not stored:
        return {}
    decoded = dict(stored)
    raw_keys = decoded.pop(JSON_KEYS_KEY, None)
    for key in json.loads(raw_keys) if isinstance(raw_keys, str) else ():
        if isinstance(decoded.get(key), str):
            decoded[key] = json.loads(decoded[key])
    return decoded
