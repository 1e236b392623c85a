"""Milvus sink: a Milvus Lite ``*.db`` file or a Milvus server (``http://host:19530``).

Schema (explicit, no dynamic fields)::

    pk         VARCHAR(64)   primary key = sha256 hex of the chunk id (auto_id off)
    id         VARCHAR(4096) the chunk id as given
    embedding  FLOAT_VECTOR(dim), index AUTOINDEX with metric COSINE
    text       VARCHAR(65535) the chunk text (at most 65535 UTF-8 bytes)
    metadata   JSON

The primary key is a hash of the id, not the id itself: C++ Milvus Lite 2.5 builds an SQL
``DELETE`` from upserted keys without escaping them, so an id with a single quote fails there;
a hex key also keeps filter expressions free of quoting and ids free of the key length limit.
The collection is created with ``consistency_level="Strong"`` so reads see earlier writes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from e5_integrations._errors import (
    ConfigurationError,
    SchemaMismatchError,
    StoreError,
    StoreUnavailableError,
    rebuild_hint,
)
from e5_integrations._redact import redact, secrets_of
from e5_integrations.ingest._sink import CONTENT_HASH_KEY, Hit, Record, Sink, e5_document_id
from e5_integrations.ingest._sources import Document
from e5_integrations.sinks._requests import by_count, by_size, last_per_id
from e5_integrations.sinks._retry import RetryPolicy, Unreachable

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

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


def primary_key(record_id: str) -> str:
    """The stored primary key of a chunk id: its SHA-256 in hex (64 characters)."""
    return hashlib.sha256(record_id.encode("utf-8")).hexdigest()


class MilvusSink(Sink):
    """A Milvus collection with a cosine index.

    Args:
        uri: a Milvus Lite database file (``*.db``; its directory is created) or a server URI
            (``http(s)://host:port``; ``http://user:password@host:port`` passes the credentials).
            The password is never shown: ``self.uri`` is redacted.
        collection: collection name: letters, digits and ``_``, not starting with a digit.
        token: server credentials (``"user:password"`` or an API key); never shown.
        timeout: seconds each client call may take, retries inside pymilvus included.
        retry_seconds: how long a call keeps being retried while the server cannot be
            reached, before ``StoreUnavailableError`` (default ``DEFAULT_RETRY_SECONDS``).

    Raises:
        ImportError: ``pymilvus`` (or ``milvus-lite`` for a file) is not installed.
        ConfigurationError: invalid collection name.
        StoreUnavailableError: the server cannot be reached.
    """

    name: ClassVar[str] = "milvus"

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry_seconds: float | None = None,
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
        self._secrets = [*secrets_of(uri), *_token_secrets(token)]
        self.uri = redact(uri, self._secrets)  # the only copy of the URI that is ever shown
        self.collection = collection
        self._timeout = timeout
        self._retry = RetryPolicy(retry_seconds)
        self._closed = False
        self._ready = False
        self._client = self._call(lambda: _connect(pymilvus, uri, token, timeout, self.uri))

    def __repr__(self) -> str:
        return f"MilvusSink(uri={self.uri!r}, collection={self.collection!r})"

    @property
    def retry_wait_seconds(self) -> float:
        """Seconds spent waiting between retries of an unreachable server."""
        return self._retry.waited

    # -- Sink API -------------------------------------------------------------------------

    @classmethod
    def check_document(cls, document: Document) -> str | None:
        """Also refuse document ids whose chunk ids would not fit the ``id`` VARCHAR."""
        refused = super().check_document(document)  # first: the rules below encode the strings
        if refused is not None:
            return refused
        size = len(document.id.encode("utf-8"))
        if size > MAX_ID_BYTES - CHUNK_SUFFIX_BYTES:
            return (
                f"the id {document.id[:40]!r}... has {size} UTF-8 bytes; the Milvus sink stores chunk ids "
                f"of at most {MAX_ID_BYTES} bytes, so document ids of at most "
                f"{MAX_ID_BYTES - CHUNK_SUFFIX_BYTES}; use shorter ids (--id-field)"
            )
        return None

    def ensure_collection(self, dim: int) -> None:
        """Create the collection (schema above, cosine index, Strong) or check and load it."""
        if dim < 1:
            raise ConfigurationError(f"dimension must be a positive integer, got {dim}")
        if not self._exists():
            try:
                self._create(dim)
                self._ready = True
                return
            except StoreUnavailableError:
                raise
            except Exception:
                if not self._exists():  # not created meanwhile by another worker
                    raise
        self._check_schema(dim)
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
        found: dict[str, str] = {}
        for part in by_count([primary_key(i) for i in ids], READ_SLICE):
            rows = self._call(
                functools.partial(
                    self._client.query,
                    self.collection,
                    filter=f"{PK_FIELD} in {json.dumps(part)}",
                    output_fields=[ID_FIELD, METADATA_FIELD],
                    timeout=self._timeout,
                )
            )
            for row in rows:
                value = (row.get(METADATA_FIELD) or {}).get(CONTENT_HASH_KEY)
                if isinstance(value, str):
                    found[row[ID_FIELD]] = value
        return found

    def upsert(self, records: Sequence[Record]) -> None:
        """Insert or replace ``records`` by id.

        Raises:
            StoreError: a text over 65535 UTF-8 bytes or an id over 4096 bytes (nothing of
                this batch is written), or the server refused the rows.
        """
        if not records:
            return
        if not self._ready and not self._exists():
            raise StoreError(
                f"Milvus collection {self.collection!r} at {self.uri} does not exist; "
                "call ensure_collection(dim) before upsert"
            )
        rows = [_row(r) for r in last_per_id(records)]  # Milvus 2.5 would keep both copies
        for part in by_size(rows, REQUEST_BUDGET_BYTES, _row_bytes):
            self._call(functools.partial(self._client.upsert, self.collection, part, timeout=self._timeout))

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` nearest records; Milvus' COSINE "distance" is the cosine similarity."""
        if k < 1 or not self._readable():
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        result = self._call(
            lambda: self._client.search(
                self.collection,
                data=[query],
                anns_field=VECTOR_FIELD,
                limit=k,
                output_fields=[ID_FIELD, TEXT_FIELD, METADATA_FIELD],
                search_params={"metric_type": "COSINE"},
                timeout=self._timeout,
            )
        )
        return [_hit(found) for found in result[0]]

    def dimension(self) -> int | None:
        """The dimension of the collection's vector field; ``None`` if it does not exist."""
        if not self._exists():
            return None
        info = self._call(lambda: self._client.describe_collection(self.collection, timeout=self._timeout))
        for field in info.get("fields", []):
            if field.get("name") == VECTOR_FIELD:
                return int(field.get("params", {}).get("dim", 0)) or None
        return None

    def count(self) -> int:
        """Records in the collection; 0 if it does not exist."""
        if not self._readable():
            return 0
        rows = self._call(
            lambda: self._client.query(
                self.collection, filter="", output_fields=["count(*)"], timeout=self._timeout
            )
        )
        return int(rows[0]["count(*)"])

    def scan(self, page_size: int = 1000) -> Iterator[list[tuple[str, str | None]]]:
        """Pages of ``(id, document id)`` over the whole collection (a query iterator); the
        document id is ``None`` for rows e5 did not write (:func:`e5_document_id`)."""
        if not self._readable():
            return
        iterator = self._call(
            lambda: self._client.query_iterator(
                self.collection,
                batch_size=page_size,
                output_fields=[ID_FIELD, METADATA_FIELD],
                timeout=self._timeout,
            )
        )
        try:
            while True:
                rows = self._call(iterator.next)
                if not rows:
                    return
                yield [(row[ID_FIELD], e5_document_id(row.get(METADATA_FIELD))) for row in rows]
        finally:
            iterator.close()

    def delete(self, ids: Iterable[str]) -> None:
        """Delete records by id; unknown ids are ignored."""
        keys = [primary_key(i) for i in ids]
        if not keys or not self._exists():
            return
        for part in by_count(keys, READ_SLICE):
            self._call(
                functools.partial(self._client.delete, self.collection, ids=part, timeout=self._timeout)
            )

    def drop(self) -> None:
        """Drop the collection if it exists."""
        if self._exists():
            self._call(lambda: self._client.drop_collection(self.collection, timeout=self._timeout))
        self._ready = False

    def close(self) -> None:
        """Close the client connection."""
        if self._closed:
            return
        self._closed = True
        self._client.close()

    # -- helpers --------------------------------------------------------------------------

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

    def _create(self, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(PK_FIELD, DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field(ID_FIELD, DataType.VARCHAR, max_length=MAX_ID_BYTES)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field(TEXT_FIELD, DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field(METADATA_FIELD, DataType.JSON)
        index = self._client.prepare_index_params()
        index.add_index(field_name=VECTOR_FIELD, index_type="AUTOINDEX", metric_type="COSINE")
        self._call(
            lambda: self._client.create_collection(
                self.collection,
                schema=schema,
                index_params=index,
                consistency_level="Strong",
                timeout=self._timeout,
            )
        )
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

    def _check_schema(self, dim: int) -> None:
        """Raise ``SchemaMismatchError`` unless the collection has our fields, ``dim`` and COSINE."""
        where = f"Milvus collection {self.collection!r} at {self.uri}"
        fix = rebuild_hint()
        info = self._call(lambda: self._client.describe_collection(self.collection, timeout=self._timeout))
        fields = {f["name"]: f for f in info.get("fields", [])}
        expected = {PK_FIELD, ID_FIELD, VECTOR_FIELD, TEXT_FIELD, METADATA_FIELD}
        if not expected <= fields.keys() or not fields[PK_FIELD].get("is_primary"):
            raise SchemaMismatchError(
                f"{where} has fields {sorted(fields)}, not the e5 schema "
                f"({PK_FIELD} primary key, {sorted(expected - {PK_FIELD})}); {fix}"
            )
        stored_dim = int(fields[VECTOR_FIELD].get("params", {}).get("dim", -1))
        if stored_dim != dim:
            raise SchemaMismatchError(
                f"{where} holds {stored_dim}-dimensional vectors, but the embeddings are "
                f"{dim}-dimensional; {fix}"
            )
        metric = self._metric()
        if metric != "COSINE":
            raise SchemaMismatchError(
                f"{where} indexes {VECTOR_FIELD!r} with metric {metric!r}, but e5 embeddings need "
                f"'COSINE'; {fix}"
            )

    def _metric(self) -> str | None:
        """The metric of the index on the vector field, or ``None`` without an index."""
        names = self._call(
            lambda: self._client.list_indexes(self.collection, field_name=VECTOR_FIELD, timeout=self._timeout)
        )
        if not names:
            return None
        index = self._call(
            lambda: self._client.describe_index(self.collection, names[0], timeout=self._timeout)
        )
        metric = index.get("metric_type")
        return str(metric).upper() if metric else None


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


def _row(record: Record) -> dict[str, Any]:
    """The Milvus row of ``record``, after checking the VARCHAR limits."""
    text_bytes = len(record.text.encode("utf-8"))
    if text_bytes > MAX_TEXT_BYTES:
        raise StoreError(
            f"chunk {record.id!r} has {text_bytes} bytes of UTF-8 text; a Milvus VARCHAR holds at "
            f"most {MAX_TEXT_BYTES}; use smaller chunks (fewer tokens per chunk) or another store"
        )
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
        METADATA_FIELD: dict(record.metadata),
    }


def _hit(found: dict[str, Any]) -> Hit:
    entity = found.get("entity", {})
    return Hit(
        id=entity[ID_FIELD],
        score=float(found["distance"]),
        text=entity.get(TEXT_FIELD, ""),
        metadata=entity.get(METADATA_FIELD) or {},
    )


def _row_bytes(row: dict[str, Any]) -> int:
    """Approximate request bytes of one row."""
    meta = len(json.dumps(row[METADATA_FIELD], ensure_ascii=False, default=str).encode("utf-8"))
    return 4 * len(row[VECTOR_FIELD]) + len(row[TEXT_FIELD].encode("utf-8")) + len(row[ID_FIELD]) + 64 + meta
