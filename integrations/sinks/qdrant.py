"""Qdrant sink: a local folder, an in-process ``:memory:`` store, or a Qdrant server.

Qdrant point ids must be unsigned integers or UUIDs, so each deterministic chunk id is
mapped to ``uuid5(POINT_ID_NAMESPACE, chunk_id)`` and kept verbatim in the payload under
``"id"``; searches return that chunk id. The payload is ``{"id", "text", "metadata"}``.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from e5_integrations._errors import ConfigurationError, SchemaMismatchError, StoreError, rebuild_hint
from e5_integrations._redact import redact, secrets_of
from e5_integrations.ingest._sink import CONTENT_HASH_KEY, Hit, Record, Sink, e5_document_id
from e5_integrations.sinks._metric import check_unit_norm, unit_query
from e5_integrations.sinks._requests import by_size
from e5_integrations.sinks._retry import RetryPolicy, Unreachable

__all__ = ["POINT_ID_NAMESPACE", "QdrantSink", "point_id"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Namespace of the uuid5 point ids. Changing it orphans every stored point: never do.
POINT_ID_NAMESPACE = uuid.UUID("cee79ab9-b7dd-5233-aed4-74546597854d")

#: Qdrant's default ``service.max_request_size_mb``.
REQUEST_LIMIT_BYTES = 32 * 1024 * 1024
#: Share of the limit one upsert request may use (JSON overhead, headers, estimates).
_REQUEST_BUDGET = 0.75
#: JSON bytes per vector component: a float32 printed as a Python float, plus ", ".
_JSON_BYTES_PER_DIM = 24
#: Text and metadata bytes assumed per record when only the dimension is known.
_PAYLOAD_ESTIMATE_BYTES = 16 * 1024
_QUANTIZATIONS = (None, "int8")
#: Characters a Qdrant server refuses in a collection name (it also becomes a folder name).
_FORBIDDEN_NAME_CHARS = '<>:"/\\|?*\0\x1f'
_MAX_NAME_LENGTH = 255
#: HTTP statuses that mean "the server is there but cannot answer now": retried.
_RETRIED_STATUSES = (502, 503, 504)


def point_id(chunk_id: str) -> str:
    """The Qdrant point id (a UUID string) that stores chunk ``chunk_id``."""
    return str(uuid.uuid5(POINT_ID_NAMESPACE, chunk_id))


class QdrantSink(Sink):
    """Write to and search one Qdrant collection with cosine distance.

    Args:
        uri: ``":memory:"``, a folder for local mode, or ``http(s)://host:6333`` for a server.
        collection: collection name.
        api_key: server API key; defaults to the ``QDRANT_API_KEY`` environment variable.
        on_disk: keep original vectors on disk (server only); sensible for 4096-dim vectors.
        quantization: ``"int8"`` adds scalar quantization kept in RAM (server only): the
            HNSW search runs on 1-byte components and rescoring uses the full vectors.
        timeout: seconds per server request (rounded up to whole seconds).
        retry_seconds: how long a call keeps being retried while the server cannot be
            reached, before ``StoreUnavailableError`` (default ``DEFAULT_RETRY_SECONDS``).
        **options: passed to ``qdrant_client.QdrantClient`` (e.g. ``prefer_grpc=True``).
    """

    name: ClassVar[str] = "qdrant"

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
        **options: Any,
    ) -> None:
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

    def ensure_collection(self, dim: int) -> None:
        """Create the collection with cosine distance, or check the existing one's
        dimension and distance (``SchemaMismatchError``; nothing is written)."""
        if self._exists():
            self._check_schema(dim)
            self._ready = True
            return
        from qdrant_client import models

        vectors = models.VectorParams(size=dim, distance=models.Distance.COSINE, on_disk=self.on_disk or None)
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
        self._ready = True
        _log.info("created qdrant collection %r (%d dims, cosine)", self.collection, dim)

    def _check_schema(self, dim: int) -> None:
        from qdrant_client import models

        info = self._call("get_collection", lambda: self._client.get_collection(self.collection))
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise SchemaMismatchError(
                f"qdrant collection {self.collection!r} uses named vectors {sorted(vectors or {})}; "
                "expected one unnamed cosine vector. Use another collection name or drop it"
            )
        if vectors.size != dim or vectors.distance != models.Distance.COSINE:
            raise SchemaMismatchError(
                f"qdrant collection {self.collection!r} has {vectors.size}-dim {vectors.distance.value} "
                f"vectors; the embeddings are {dim}-dim cosine; {rebuild_hint()}"
            )

    def max_batch_records(self, dim: int) -> int:
        """Records per upsert that keep a JSON request well under Qdrant's 32 MB limit."""
        per_record = dim * _JSON_BYTES_PER_DIM + _PAYLOAD_ESTIMATE_BYTES
        return max(1, int(REQUEST_LIMIT_BYTES * _REQUEST_BUDGET) // per_record)

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """``{chunk id: content hash}`` for the given ids that are stored."""
        if not ids or not self._exists():
            return {}
        points = self._call(
            "retrieve",
            lambda: self._client.retrieve(
                self.collection,
                ids=[point_id(i) for i in ids],
                with_payload=["id", "metadata"],
                with_vectors=False,
            ),
        )
        hashes: dict[str, str] = {}
        for point in points:
            payload = point.payload or {}
            content_hash = (payload.get("metadata") or {}).get(CONTENT_HASH_KEY)
            if "id" in payload and isinstance(content_hash, str):
                hashes[payload["id"]] = content_hash
        return hashes

    def upsert(self, records: Sequence[Record]) -> None:
        """Upsert records (acknowledged with ``wait=True``), split so each request stays
        under the request size limit even when texts are long."""
        from qdrant_client import models

        if not records:
            return
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
                payload={"id": r.id, "text": r.text, "metadata": dict(r.metadata)},
            )
            for r in records
        ]
        for chunk in _split_by_size(points):
            self._call(
                "upsert",
                functools.partial(self._client.upsert, self.collection, points=chunk, wait=True),
            )
        _log.debug("upserted %d points into qdrant collection %r", len(points), self.collection)

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
            Hit(
                id=(p.payload or {}).get("id", str(p.id)),
                score=1.0 - float(p.score) ** 2 / 2 if distance == models.Distance.EUCLID else float(p.score),
                text=(p.payload or {}).get("text", ""),
                metadata=(p.payload or {}).get("metadata") or {},
            )
            for p in response.points
        ]

    def _distance(self) -> Any:
        """The distance of the collection's unnamed vector (``None`` with named vectors)."""
        from qdrant_client import models

        info = self._call("get_collection", lambda: self._client.get_collection(self.collection))
        vectors = info.config.params.vectors
        return vectors.distance if isinstance(vectors, models.VectorParams) else None

    def dimension(self) -> int | None:
        """The size of the collection's (unnamed) vector; ``None`` if it does not exist."""
        from qdrant_client import models

        if not self._exists():
            return None
        info = self._call("get_collection", lambda: self._client.get_collection(self.collection))
        vectors = info.config.params.vectors
        return int(vectors.size) if isinstance(vectors, models.VectorParams) else None

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
        offset: Any = None
        while True:
            points, offset = self._call(
                "scroll",
                functools.partial(
                    self._client.scroll,
                    self.collection,
                    limit=page_size,
                    offset=offset,
                    with_payload=["id", "metadata"],
                    with_vectors=False,
                ),
            )
            page = []
            for point in points:
                payload = point.payload or {}
                page.append((str(payload.get("id", point.id)), e5_document_id(payload.get("metadata"))))
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

    def close(self) -> None:
        """Close the client (releases the local folder lock). Safe to call twice."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


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


def _response_detail(exc: Any) -> str:
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


def _estimated_json_bytes(point: Any) -> int:
    payload = json.dumps(point.payload, ensure_ascii=False, default=str)
    return len(point.vector) * _JSON_BYTES_PER_DIM + len(payload.encode()) + 128


def _split_by_size(points: list[Any]) -> Iterable[list[Any]]:
    """Group points into requests whose estimated JSON size fits the request budget."""
    return by_size(points, int(REQUEST_LIMIT_BYTES * _REQUEST_BUDGET), _estimated_json_bytes)
