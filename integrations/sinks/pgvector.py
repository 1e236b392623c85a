"""PostgreSQL + pgvector sink.

A collection is a table of that name in the connection's current schema::

    id text PRIMARY KEY, text text NOT NULL, metadata jsonb NOT NULL, embedding vector(dim) NOT NULL

Writes COPY each batch (binary) into a temporary staging table and merge it with
``INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE``, in one transaction per batch.

Indexes. pgvector's HNSW refuses ``vector`` columns above 2000 dimensions (e5-mistral has
4096), so:

- up to 2000 dims: HNSW on ``embedding vector_cosine_ops``, created with the table;
- above 2000 dims: HNSW on ``(binary_quantize(embedding)::bit(dim)) bit_hamming_ops``,
  built by :meth:`PGVectorSink.finalize` after the bulk load (building it once is much
  faster than maintaining it row by row). Searches take ``max(candidate_factor * k,
  min_candidates)`` candidates by Hamming distance from that index and re-rank them by
  exact cosine distance. Before ``finalize`` they scan exactly.

Layouts (``layout=``, ``e5 ingest --layout``; detected from the catalog when omitted):

- ``e5``: the table above, in the current schema (unchanged);
- ``langchain``: ``langchain_postgres.PGVectorStore`` (v2): table ``public."<collection>"``
  with ``"langchain_id" UUID PRIMARY KEY, "content" TEXT NOT NULL, "embedding" vector(dim)
  NOT NULL, "langchain_metadata" JSON`` (``init_vectorstore_table``'s defaults); the user
  metadata and e5's bookkeeping at the top level of ``langchain_metadata``;
- ``langchain-legacy``: ``langchain_postgres.PGVector`` (deprecated): the shared tables
  ``langchain_pg_collection (uuid, name, cmetadata)`` and ``langchain_pg_embedding (id
  VARCHAR PRIMARY KEY, collection_id, embedding vector, document, cmetadata JSONB)``, in the
  current schema, as that class creates them (untyped ``vector``, GIN ``ix_cmetadata_gin``);
  every read, write, delete and ``drop`` is scoped to this collection's row in
  ``langchain_pg_collection`` (``drop`` deletes that row; its embeddings cascade). Since
  every collection shares one primary key, a row id is ``uuid5(uuid_id(collection),
  chunk id)`` here, so two collections of the same corpus never collide;
- ``llama-index``: ``llama_index.vector_stores.postgres.PGVectorStore``: table
  ``public."data_<collection lower-cased>"`` with ``id BIGSERIAL PRIMARY KEY, text VARCHAR
  NOT NULL, metadata_ JSON, node_id VARCHAR, embedding vector(dim)`` and the btree index
  ``<c>_idx_1`` on ``metadata_ ->> 'ref_doc_id'`` (the class's defaults, ``use_jsonb=
  False``; a JSONB ``metadata_`` made with ``use_jsonb=True`` is read and written too).
  ``metadata_`` is ``node_to_metadata_dict`` of a ``TextNode`` (text blanked, as the class
  does); ``node_id`` has no unique constraint, so e5 upserts by deleting and inserting a
  node's rows in one transaction, under an advisory lock, and adds a plain btree index
  ``data_<c>_e5_node_id`` on ``node_id`` (LlamaIndex's own writes are unaffected).

In the framework layouts row ids are UUIDs (:meth:`~e5_integrations.ingest.Layout.row_id`)
and the chunk id is kept in the metadata (``e5_chunk_id``). Above 2000 dims
:meth:`PGVectorSink.finalize` gives their tables the same binary-quantised HNSW expression
index (partial, ``WHERE collection_id = ...``, for ``langchain-legacy``): it changes nothing
the frameworks write or read and keeps ``e5 search`` fast, but the frameworks' own queries
(``ORDER BY embedding <=> q``) cannot use it and scan exactly.

Every table and index name goes through ``psycopg.sql.Identifier``; passwords are
redacted from every message and log line.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from e5_integrations.sinks import (
    CHUNK_ID_KEY,
    CONTENT_HASH_KEY,
    DOCUMENT_ID_KEY,
    ConfigurationError,
    Document,
    Hit,
    Record,
    RetryPolicy,
    SchemaMismatchError,
    Sink,
    StoreError,
    get_layout,
    metadata_strings,
    rebuild_hint,
    redact,
    reserved_metadata_key,
    secrets_of,
    uuid_id,
)
from e5_integrations.sinks._requests import last_per_id

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql
    from psycopg.rows import TupleRow

    #: A connection with psycopg's default row factory (rows are tuples).
    _Conn = psycopg.Connection[TupleRow]
    #: A statement psycopg runs (a plain or a composed one), and one with its parameters.
    _Query = sql.SQL | sql.Composed
    _Statement = tuple[_Query, tuple[object, ...]]

__all__ = ["HNSW_MAX_DIM", "PGVectorSink", "redact_dsn"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Largest ``vector`` dimension pgvector's HNSW/IVFFlat index; above it we index bits.
HNSW_MAX_DIM = 2000
#: Largest dimension of a pgvector ``vector`` column.
VECTOR_MAX_DIM = 16000
#: Postgres truncates longer identifiers (NAMEDATALEN - 1 bytes).
_MAX_IDENTIFIER_BYTES = 63
#: pgvector caps ``hnsw.ef_search`` (and so one index scan's candidates) at 1000.
_MAX_EF_SEARCH = 1000
#: Longest document id, in UTF-8 bytes: a btree index row holds at most 2704 bytes, so
#: chunk ids (the document id plus ``#index``) stay well under it even uncompressed.
MAX_DOCUMENT_ID_BYTES = 2048
_COLUMNS = ("id", "text", "metadata", "embedding")
#: The staging table of an upsert, always written as ``pg_temp.e5_stage`` (the session's own
#: temporary schema) while the collection's table is always schema-qualified, so a
#: collection of the same name cannot be mistaken for it.
_STAGE = "e5_stage"
#: Key of the transaction-level advisory lock that serialises creating the extension and
#: tables, so that first runs racing on a fresh database do not collide.
_CREATE_LOCK_KEY = 0x6535_6372_6561_7465  # "e5create"
#: SQLSTATEs of a refused login: invalid_authorization_specification, invalid_password.
_AUTH_FAILED = ("28000", "28P01")
#: The shared tables of LangChain's older ``PGVector`` (``langchain-legacy``).
_LEGACY_COLLECTIONS = "langchain_pg_collection"
_LEGACY_EMBEDDINGS = "langchain_pg_embedding"
_LAYOUTS = ("e5", "langchain", "langchain-legacy", "llama-index")


@dataclass(frozen=True)
class _Shape:
    """Where one layout keeps a collection's rows: table and column names."""

    schema: str | None  # None: the connection's current schema
    table: str
    id: str  # the row id column
    text: str
    metadata: str
    key: str  # a unique column to page through the rows by
    id_type: str  # SQL type of the row ids


#: The columns of a LangChain ``PGVectorStore`` table (``init_vectorstore_table``'s defaults);
#: any other column is one of its ``metadata_columns``.
_LANGCHAIN_COLUMNS = ("langchain_id", "content", "embedding", "langchain_metadata")


@dataclass(frozen=True)
class _MetadataColumn:
    """A column of a LangChain ``PGVectorStore`` table made with ``metadata_columns=``: the
    store writes the metadata field of that name into it (and leaves it out of
    ``langchain_metadata``), and its filters read only such columns."""

    name: str
    type: str  # format_type with its modifier: "text", "integer", "character varying(20)", "text[]"
    required: bool  # NOT NULL without a default: every row must fill it

    def value(self) -> sql.Composable:
        """The SQL expression of this column's value, from the staged row's ``metadata``."""
        from psycopg import sql

        key = sql.Literal(self.name)
        typ = sql.SQL(self.type)  # from the catalog's format_type: already a valid type name
        if self.type in ("json", "jsonb"):
            return sql.SQL("(metadata -> {})::{}").format(key, typ)
        if self.type.endswith("[]"):
            return sql.SQL(
                "(CASE WHEN jsonb_typeof(metadata -> {k}) = 'array' "
                "THEN ARRAY(SELECT jsonb_array_elements_text(metadata -> {k})) END)::{t}"
            ).format(k=key, t=typ)
        return sql.SQL("(metadata ->> {})::{}").format(key, typ)


_AUTH_FAILED_TEXT = re.compile(
    r"authentication failed|no pg_hba\.conf entry|no password supplied|role .* does not exist", re.IGNORECASE
)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL and ``key=value`` forms); the same
    function as :func:`e5_integrations._redact.redact`."""
    return redact(dsn)


class PostgresConnectionFailed(ConnectionError):
    """Connecting failed or the connection broke; the message is already redacted."""


class PGVectorSink(Sink):
    """Write to and search one pgvector table with cosine distance.

    Args:
        uri: libpq connection string, ``postgresql://user:pass@host:5432/db`` or ``key=value``.
        collection: table name (any characters, at most 63 bytes), in the current schema.
        connect_timeout: seconds to wait for a connection (libpq's minimum is 2).
        statement_timeout: seconds one statement may run before the server cancels it
            (``None``: no limit); :meth:`finalize`'s index build is exempt.
        retry_seconds: how long an operation keeps being retried while the server cannot be
            reached, before ``StoreUnavailableError`` (default ``DEFAULT_RETRY_SECONDS``).
        candidate_factor: above 2000 dims, candidates per requested hit for the re-rank.
        min_candidates: above 2000 dims, the least number of candidates taken.
        maintenance_work_mem: e.g. ``"1GB"``, set while :meth:`finalize` builds the index
            (the build is much faster when the graph fits in it).
        layout: ``"e5"``, ``"langchain"``, ``"langchain-legacy"`` or ``"llama-index"`` (see
            the module docs); ``None``: the existing collection's, else ``"e5"``.
    """

    name: ClassVar[str] = "pgvector"
    layouts: ClassVar[tuple[str, ...]] = _LAYOUTS

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        connect_timeout: int = 10,
        statement_timeout: float | None = 300.0,
        retry_seconds: float | None = None,
        candidate_factor: int = 10,
        min_candidates: int = 100,
        maintenance_work_mem: str | None = None,
        layout: str | None = None,
    ) -> None:
        try:
            import pgvector.psycopg  # noqa: F401
            import psycopg  # noqa: F401  (both, or the ImportError names the extra)
        except ImportError as exc:
            raise ImportError(
                "PGVectorSink needs psycopg and pgvector; install them with: "
                "pip install 'e5-integrations[pgvector]'"
            ) from exc
        _check_table_name(collection)
        if layout is not None:
            get_layout(layout, self.layouts, self.name)
        self.requested_layout = layout
        if candidate_factor < 1 or min_candidates < 1:
            raise ConfigurationError(
                f"candidate_factor={candidate_factor} and min_candidates={min_candidates} must be >= 1"
            )
        self.collection = collection
        self.index_name = _index_name_for(collection)
        if statement_timeout is not None and not statement_timeout > 0:
            raise ConfigurationError(
                f"statement_timeout={statement_timeout}; expected a positive number of seconds or None"
            )
        self._secrets = [*secrets_of(uri), _password_of(uri)]
        self.uri = redact(uri, self._secrets)  # the only copy of the URI that is ever shown
        self._dsn = uri
        self._connect_timeout = connect_timeout
        self._statement_timeout_ms = (
            None if statement_timeout is None else max(1, int(statement_timeout * 1000))
        )
        self._retry = RetryPolicy(retry_seconds)
        self._schema: str | None = None
        self.candidate_factor = candidate_factor
        self.min_candidates = min_candidates
        self._maintenance_work_mem = maintenance_work_mem
        self._conn: _Conn | None = None
        self._dim: int | None = None
        self._has_bit_index = False

    def __repr__(self) -> str:
        return f"PGVectorSink(uri={self.uri!r}, collection={self.collection!r})"

    @property
    def retry_wait_seconds(self) -> float:
        """Seconds spent waiting between retries of an unreachable server."""
        return self._retry.waited

    # -- connection and retries --------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _connection(self) -> _Conn:
        import psycopg

        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._conn = None
        try:
            conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                application_name="e5-integrations",
            )
        except psycopg.OperationalError as exc:
            message = self._redact(str(exc).strip())
            if is_auth_failure(exc):
                raise StoreError(
                    f"authentication failed for PostgreSQL at {self.uri}: {message}; the server is "
                    "reachable but refused this user or password: fix them in --uri "
                    "(postgresql://USER:PASSWORD@HOST:PORT/DB)"
                ) from None
            raise PostgresConnectionFailed(message) from None
        except psycopg.Error as exc:  # e.g. a malformed DSN
            raise ConfigurationError(
                f"cannot use the PostgreSQL URI {self.uri}: {self._redact(str(exc).strip())}; "
                "expected postgresql://USER:PASSWORD@HOST:PORT/DB"
            ) from None
        try:
            if self._statement_timeout_ms is not None:
                conn.execute(f"SET statement_timeout = {self._statement_timeout_ms}")
            row = conn.execute("SELECT current_schema()").fetchone()
            self._schema = row[0] if row else None
            self._register_vector(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _register_vector(self, conn: _Conn) -> bool:
        from pgvector.psycopg import register_vector

        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
            return False
        register_vector(conn)
        return True

    def _run(self, what: str, fn: Callable[[_Conn], _T]) -> _T:
        """Run ``fn(connection)``, reconnecting with back-off while the server is unreachable."""
        import psycopg

        def attempt() -> _T:
            conn = self._connection()
            try:
                return fn(conn)
            except psycopg.errors.QueryCanceled as exc:
                raise StoreError(
                    f"PostgreSQL at {self.uri} cancelled {what} on {self.collection!r}: "
                    f"{self._redact(str(exc).strip())}; a statement ran longer than statement_timeout= "
                    f"({(self._statement_timeout_ms or 0) / 1000:g} s): check for locks held by other "
                    "sessions, or raise statement_timeout="
                ) from None
            except psycopg.OperationalError as exc:
                if conn.broken or conn.closed:
                    self._conn = None
                    raise PostgresConnectionFailed(self._redact(str(exc).strip())) from None
                raise
            except psycopg.errors.UndefinedTable:
                raise StoreError(
                    f"pgvector table {self.collection!r} does not exist at {self.uri}; "
                    "call ensure_collection(dim) first"
                ) from None

        return self._retry.call(
            attempt,
            what=f"PostgreSQL at {self.uri} ({what} on {self.collection!r})",
            retry_on=(PostgresConnectionFailed,),
            secrets=self._secrets,
        )

    # -- schema ------------------------------------------------------------------------------

    def _table(self) -> sql.Identifier:
        """The collection's table, qualified with the connection's current schema so that it
        never resolves to a temporary table of the same name."""
        from psycopg import sql

        if self._schema is None:
            return sql.Identifier(self.collection)
        return sql.Identifier(self._schema, self.collection)

    def _table_columns(self, conn: _Conn) -> dict[str, tuple[str, int]] | None:
        """``{column: (type, typmod)}`` of the collection's table, or None if it does not exist."""
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, NULL), a.atttypmod "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE c.relname = %s AND n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
            "AND a.attnum > 0 AND NOT a.attisdropped",
            (self.collection,),
        ).fetchall()
        return {name: (typ, mod) for name, typ, mod in rows} if rows else None

    def _existing_dim(self, conn: _Conn) -> int | None:
        columns = self._table_columns(conn)
        if columns is None:
            return None
        missing = [c for c in _COLUMNS if c not in columns]
        typ, dim = columns.get("embedding", ("", -1))
        if missing or typ != "vector" or dim < 1:
            raise SchemaMismatchError(
                f"table {self.collection!r} at {self.uri} exists but is not an e5 collection "
                f"(columns {sorted(columns)}; embedding type {typ or 'missing'}); expected columns "
                f"{list(_COLUMNS)} with embedding vector(dim). Use another collection name"
            )
        return dim

    def _index_name(self) -> sql.Identifier:
        from psycopg import sql

        return sql.Identifier(self.index_name)

    def _index_sql(self, dim: int) -> sql.Composed:
        from psycopg import sql

        create = sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ").format(
            self._index_name(), self._table()
        )
        if dim <= HNSW_MAX_DIM:
            return create + sql.SQL("(embedding vector_cosine_ops)")
        bits = sql.SQL("((binary_quantize(embedding)::bit({})) bit_hamming_ops)").format(sql.Literal(dim))
        return create + bits

    # -- Sink API ----------------------------------------------------------------------------

    @classmethod
    def check_document(cls, document: Document, layout: str = "e5") -> str | None:
        """Also refuse what Postgres refuses: NUL characters (``text`` and ``jsonb`` cannot hold
        them) and ids too long for the primary key's btree index (in every layout: the
        framework layouts keep the chunk id in the metadata)."""
        refused = super().check_document(document, layout)  # first: the rules below encode the strings
        if refused is not None:
            return refused
        fields = [("the id", document.id), ("the text", document.text), *metadata_strings(document.metadata)]
        for where, value in fields:
            if "\x00" in value:
                return (
                    f"{where} holds a NUL character (\\u0000 at character {value.index(chr(0))}), which "
                    "PostgreSQL cannot store; remove it from the source"
                )
        size = len(document.id.encode("utf-8"))
        if size > MAX_DOCUMENT_ID_BYTES:
            return (
                f"the id {document.id[:40]!r}... has {size} UTF-8 bytes; pgvector tables index ids of at "
                f"most {MAX_DOCUMENT_ID_BYTES} bytes (a btree row holds about 2700); use shorter ids "
                "(--id-field)"
            )
        return None

    def document_check(self) -> Callable[[Document], str | None]:
        """Also, in a LangChain ``PGVectorStore`` table, refuse a record that leaves one of its
        NOT NULL ``metadata_columns`` empty: before anything is written, not midway."""
        check = super().document_check()
        if self.layout.name != "langchain":
            return check
        required = [c.name for c in self._run("check", self._metadata_columns) if c.required]
        required = [name for name in required if not reserved_metadata_key(name)]  # e5 always fills those
        if not required:
            return check

        def refuse_unfilled(document: Document) -> str | None:
            refused = check(document)
            if refused is not None:
                return refused
            for name in required:
                if document.metadata.get(name) is None:
                    return (
                        f"record {document.id!r} has no {name!r} field, and column {name!r} of table "
                        f"{self.collection!r} is NOT NULL (one of the metadata_columns of LangChain's "
                        f"PGVectorStore); give every record a {name!r} field, or make the column nullable"
                    )
            return None

        return refuse_unfilled

    def _metadata_columns(self, conn: _Conn) -> tuple[_MetadataColumn, ...]:
        """The ``metadata_columns`` of this collection's LangChain table (none if it has none
        or does not exist yet)."""
        shape = self._shape("langchain")
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull AND NOT a.atthasdef "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE c.relname = %s AND n.nspname = coalesce(%s, current_schema()) "
            "AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (shape.table, shape.schema),
        ).fetchall()
        return tuple(
            _MetadataColumn(str(name), str(typ), bool(required))
            for name, typ, required in rows
            if name not in _LANGCHAIN_COLUMNS
        )

    def ensure_collection(self, dim: int) -> None:
        """Create the table (and, up to 2000 dims, its HNSW index) or check the existing
        table's vector dimension (``SchemaMismatchError``; nothing is written)."""
        layout = self.layout  # first: a disagreeing layout= fails before anything is created
        if not 1 <= dim <= VECTOR_MAX_DIM:
            raise ConfigurationError(f"dim={dim} is outside pgvector's 1..{VECTOR_MAX_DIM} range")
        if layout.framework:
            self._run("ensure_collection", lambda conn: self._fw_ensure(conn, dim))
        else:
            self._run("ensure_collection", lambda conn: self._ensure(conn, dim))
        self._dim = dim

    def _ensure(self, conn: _Conn, dim: int) -> None:
        from psycopg import sql

        existing = self._existing_dim(conn)
        if existing is not None:
            if existing != dim:
                raise SchemaMismatchError(
                    f"table {self.collection!r} at {self.uri} has vector({existing}) embeddings; "
                    f"the embeddings are {dim}-dim; {rebuild_hint()}"
                )
            if not self._register_vector(conn):
                raise StoreError(f"table {self.collection!r} exists but the vector extension is missing")
            return
        table = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, text text NOT NULL, "
            "metadata jsonb NOT NULL DEFAULT '{{}}', embedding vector({}) NOT NULL)"
        ).format(self._table(), sql.Literal(dim))
        self._create(conn, [(table, ())] + ([(self._index_sql(dim), ())] if dim <= HNSW_MAX_DIM else []))
        _log.info("created pgvector table %r (vector(%d)) at %s", self.collection, dim, self.uri)

    def _create(self, conn: _Conn, statements: Sequence[_Statement]) -> None:
        """Run ``statements`` (DDL) in one transaction, after the vector extension exists."""
        with conn.transaction():
            # First runs racing on a fresh database would collide on CREATE EXTENSION and
            # CREATE TABLE (unique violations in the catalogs): take turns.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK_KEY,))
            if not self._register_vector(conn):
                self._create_extension(conn)
            for statement, params in statements:
                conn.execute(statement, params)

    def _build_index(self, conn: _Conn, statement: sql.Composed) -> None:
        """Run an index build without the statement timeout, with ``maintenance_work_mem``."""
        from psycopg import sql

        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = 0")  # an index build may take long
            if self._maintenance_work_mem:
                conn.execute(
                    sql.SQL("SET LOCAL maintenance_work_mem = {}").format(
                        sql.Literal(self._maintenance_work_mem)
                    )
                )
            conn.execute(statement)

    def _create_extension(self, conn: _Conn) -> None:
        import psycopg

        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege:
            raise StoreError(
                f"the pgvector extension is not installed in the database at {self.uri} and this "
                "user may not create it; run 'CREATE EXTENSION vector;' as its owner or a superuser"
            ) from None
        self._register_vector(conn)

    def finalize(self) -> None:
        """Build the HNSW index after a bulk load (idempotent: ``IF NOT EXISTS``) and ANALYZE.

        Above 2000 dims this creates the binary-quantised index searches need; up to 2000
        dims the index already exists and this only refreshes statistics. Call it at the
        end of an ingestion run.
        """
        from psycopg import sql

        if self.layout.framework:
            self._run("finalize", self._fw_finalize)
            _log.info("indexed pgvector collection %r at %s", self.collection, self.uri)
            return

        def build(conn: _Conn) -> None:
            dim = self._existing_dim(conn)
            if dim is None:
                return
            self._build_index(conn, self._index_sql(dim))
            conn.execute(sql.SQL("ANALYZE {}").format(self._table()))
            self._has_bit_index = dim > HNSW_MAX_DIM

        self._run("finalize", build)
        _log.info("indexed pgvector table %r at %s", self.collection, self.uri)

    def max_batch_records(self, dim: int) -> int:
        """COPY streams, so only memory bounds a batch: about 32 MB of vectors per batch."""
        return max(1, min(4096, (32 * 1024 * 1024) // (4 * dim + 4096)))

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """``{id: content hash}`` for the given ids that are stored."""
        from psycopg import sql

        if not ids:
            return {}
        if self.layout.framework:
            return self._fw_fetch_hashes(ids)

        def fetch(conn: _Conn) -> dict[str, str]:
            if self._table_columns(conn) is None:
                return {}
            rows = conn.execute(
                sql.SQL(
                    "SELECT id, metadata ->> %s FROM {} WHERE id = ANY(%s) "
                    "AND jsonb_typeof(metadata -> %s) = 'string'"
                ).format(self._table()),
                (CONTENT_HASH_KEY, list(ids), CONTENT_HASH_KEY),
            ).fetchall()
            return {i: h for i, h in rows if h is not None}

        return self._run("fetch_hashes", fetch)

    def upsert(self, records: Sequence[Record]) -> None:
        """COPY the batch into a staging table and merge it by id, in one transaction."""
        from psycopg import sql
        from psycopg.types.json import Jsonb

        latest = last_per_id(records)  # ON CONFLICT cannot update one row twice
        if self.layout.framework:
            self._fw_upsert(latest)
            return
        if not latest:
            return
        stage = sql.Identifier("pg_temp", _STAGE)
        columns = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))

        def load(conn: _Conn) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
                        sql.Identifier(_STAGE), self._table()
                    )
                )
                copy_sql = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(stage, columns)
                with cur.copy(copy_sql) as copy:
                    copy.set_types(["text", "text", "jsonb", "vector"])
                    for r in latest:
                        vector = np.asarray(r.embedding, dtype=np.float32).ravel()
                        copy.write_row((r.id, r.text, Jsonb(dict(r.metadata)), vector))
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} "
                        "ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, "
                        "metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding"
                    ).format(table=self._table(), cols=columns, stage=stage)
                )

        self._run("upsert", load)
        _log.debug("upserted %d rows into %r at %s", len(latest), self.collection, self.uri)

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` nearest rows by cosine similarity, best first (see the module docs)."""
        query = np.asarray(vector, dtype=np.float32).ravel()
        if self.layout.framework:
            return self._run("search", lambda conn: self._fw_search(conn, query, k))

        def run(conn: _Conn) -> list[Hit]:
            dim = self._dim or self._existing_dim(conn)
            if dim is None or k < 1:
                return []
            with conn.transaction(), conn.cursor() as cur:
                if dim > HNSW_MAX_DIM and self._bit_index_exists(conn):
                    rows = self._search_bits(cur, query, k, dim)
                else:
                    rows = self._search_exact(cur, query, k)
            return [Hit(id=i, score=float(s), text=t, metadata=m) for i, t, m, s in rows]

        return self._run("search", run)

    def _bit_index_exists(self, conn: _Conn) -> bool:
        if not self._has_bit_index:
            row = conn.execute(
                "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
                "AND indexname = %s",
                (self.collection, self.index_name),
            ).fetchone()
            self._has_bit_index = row is not None
        return self._has_bit_index

    def _search_exact(self, cur: psycopg.Cursor[TupleRow], query: np.ndarray, k: int) -> list[TupleRow]:
        from psycopg import sql

        cur.execute(
            sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(min(max(k, 40), _MAX_EF_SEARCH)))
        )
        cur.execute(
            sql.SQL(
                "SELECT id, text, metadata, 1 - (embedding <=> %(q)s) FROM {} "
                "ORDER BY embedding <=> %(q)s LIMIT %(k)s"
            ).format(self._table()),
            {"q": query, "k": k},
        )
        return list(cur.fetchall())

    def _search_bits(
        self, cur: psycopg.Cursor[TupleRow], query: np.ndarray, k: int, dim: int
    ) -> list[TupleRow]:
        from psycopg import sql

        candidates = min(max(self.candidate_factor * k, self.min_candidates, k), _MAX_EF_SEARCH)
        cur.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(candidates)))
        cur.execute(self._bits_query(dim), {"q": query, "n": candidates, "k": k})
        return list(cur.fetchall())

    def _bits_query(self, dim: int) -> sql.Composed:
        """``n`` candidates by Hamming distance (from the bit index), re-ranked by ``<=>``."""
        from psycopg import sql

        return sql.SQL(
            "SELECT id, text, metadata, 1 - (embedding <=> %(q)s) FROM ("
            "SELECT id, text, metadata, embedding FROM {table} "
            "ORDER BY binary_quantize(embedding)::bit({dim}) <~> binary_quantize(%(q)s) LIMIT %(n)s"
            ") AS candidates ORDER BY embedding <=> %(q)s LIMIT %(k)s"
        ).format(table=self._table(), dim=sql.Literal(dim))

    def dimension(self) -> int | None:
        """The table's ``vector(dim)`` (``langchain-legacy``: that of the collection's rows);
        ``None`` if the table (collection) does not exist."""
        if self.layout.framework:
            return self._run("dimension", self._fw_dim)
        return self._run("dimension", self._existing_dim)

    def count(self) -> int:
        """Number of rows; 0 if the table does not exist."""
        from psycopg import sql

        if self.layout.framework:
            return self._run("count", self._fw_count)

        def run(conn: _Conn) -> int:
            if self._table_columns(conn) is None:
                return 0
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._table())).fetchone()
            assert row is not None  # count(*) returns one row
            return int(row[0])

        return self._run("count", run)

    def scan(self, page_size: int = 1000) -> Iterator[list[tuple[str, str | None]]]:
        """Pages of ``(id, document id)`` in id order (keyset pagination on the primary key);
        the document id is ``None`` for rows e5 did not write (:func:`e5_document_id`)."""
        from psycopg import sql

        if self.layout.framework:
            yield from self._fw_scan(page_size)
            return
        last: str | None = None
        while True:

            def page(conn: _Conn, after: str | None = last) -> list[tuple[str, str | None]]:
                if self._table_columns(conn) is None:
                    return []
                # e5's rows only (e5_document_id): a document_id without e5's content hash is
                # another writer's, e.g. a LangChain or LlamaIndex row, and reads as NULL
                query = sql.SQL(
                    "SELECT id, CASE WHEN jsonb_typeof(metadata -> %s) = 'string' "
                    "AND jsonb_typeof(metadata -> %s) = 'string' THEN metadata ->> %s END "
                    "FROM {} WHERE (%s::text IS NULL OR id > %s) ORDER BY id LIMIT %s"
                ).format(self._table())
                keys = (CONTENT_HASH_KEY, DOCUMENT_ID_KEY, DOCUMENT_ID_KEY)
                return conn.execute(query, (*keys, after, after, page_size)).fetchall()

            rows = self._run("scan", page)
            if rows:
                yield [(row[0], row[1]) for row in rows]
            if len(rows) < page_size:
                return
            last = rows[-1][0]

    def delete(self, ids: Iterable[str]) -> None:
        """Delete rows by id (missing ids are ignored)."""
        from psycopg import sql

        wanted = list(ids)
        if self.layout.framework:
            if wanted:
                self._run("delete", lambda conn: self._fw_delete(conn, wanted))
            return

        def delete(conn: _Conn) -> None:
            if self._table_columns(conn) is not None:  # a missing table has nothing to delete
                conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._table()), (wanted,))

        if wanted:
            self._run("delete", delete)

    def drop(self) -> None:
        """Drop the table and its index (no error if it does not exist); ``langchain-legacy``:
        delete this collection's row in ``langchain_pg_collection`` (its rows cascade) and its
        index, leaving the shared tables and other collections."""
        from psycopg import sql

        if self.layout.framework:
            self._run("drop", self._fw_drop)
        else:
            self._run(
                "drop", lambda conn: conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table()))
            )
        self._dim = None
        self._has_bit_index = False
        self.forget_layout()

    # -- layouts -----------------------------------------------------------------------------

    def detect_layout(self) -> str | None:
        """The layout of the existing collection, from the catalog: table ``<collection>``
        with e5's columns (``e5``) or with ``langchain_id`` (``langchain``), a row
        ``<collection>`` in ``langchain_pg_collection`` (``langchain-legacy``), table
        ``data_<collection>`` (``llama-index``); ``None`` when there is none.

        Raises:
            SchemaMismatchError: several of them exist under this name and ``layout=`` does
                not pick one.
        """
        found = self._run("detect_layout", self._found_layouts)
        if len(found) > 1:
            if self.requested_layout in found:
                return self.requested_layout
            raise SchemaMismatchError(
                f"pgvector collection {self.collection!r} at {self.uri} exists in several layouts "
                f"({', '.join(found)}); pass one of them with --layout (layout=) to say which to use"
            )
        return found[0] if found else None

    def _found_layouts(self, conn: _Conn) -> list[str]:
        found = []
        for name in _LAYOUTS:
            shape = self._shape(name)
            if name == "llama-index" and len(shape.table.encode()) > _MAX_IDENTIFIER_BYTES:
                continue
            columns = self._columns_of(conn, shape.schema, shape.table)
            if columns is None:
                continue
            if name == "langchain-legacy":
                if self._legacy_uuid(conn) is not None:
                    found.append(name)
            elif name == "e5":
                if all(c in columns for c in _COLUMNS):
                    found.append(name)
            elif shape.id in columns and shape.metadata in columns:
                found.append(name)
        return found

    def _shape(self, layout: str | None = None) -> _Shape:
        name = layout or self.layout.name
        if name == "langchain":
            return _Shape(
                "public",
                self.collection,
                "langchain_id",
                "content",
                "langchain_metadata",
                "langchain_id",
                "uuid",
            )
        if name == "llama-index":
            return _Shape(
                "public", f"data_{self.collection.lower()}", "node_id", "text", "metadata_", "id", "text"
            )
        if name == "langchain-legacy":
            return _Shape(None, _LEGACY_EMBEDDINGS, "id", "document", "cmetadata", "id", "text")
        return _Shape(None, self.collection, "id", "text", "metadata", "id", "text")

    def _qualified(self, schema: str | None, table: str) -> sql.Identifier:
        from psycopg import sql

        schema = schema or self._schema
        return sql.Identifier(schema, table) if schema else sql.Identifier(table)

    def _fw_table(self) -> sql.Identifier:
        shape = self._shape()
        return self._qualified(shape.schema, shape.table)

    def _columns_of(self, conn: _Conn, schema: str | None, table: str) -> dict[str, tuple[str, int]] | None:
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, NULL), a.atttypmod "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE c.relname = %s AND n.nspname = coalesce(%s, current_schema()) "
            "AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
            (table, schema),
        ).fetchall()
        return {name: (typ, mod) for name, typ, mod in rows} if rows else None

    def _legacy_uuid(self, conn: _Conn) -> str | None:
        """This collection's uuid in ``langchain_pg_collection``, ``None`` if it has none."""
        from psycopg import sql

        if self._columns_of(conn, None, _LEGACY_COLLECTIONS) is None:
            return None
        table = self._qualified(None, _LEGACY_COLLECTIONS)
        # Another role's LangChain tables in the same schema: this role cannot have written a
        # collection there, and reading would fail the whole detection (permission denied).
        readable = conn.execute(
            "SELECT has_table_privilege(%s, 'SELECT')", (table.as_string(conn),)
        ).fetchone()
        if not readable or not readable[0]:
            return None
        row = conn.execute(
            sql.SQL("SELECT uuid FROM {} WHERE name = %s").format(table),
            (self.collection,),
        ).fetchone()
        return None if row is None else str(row[0])

    def _row_id(self, chunk_id: str) -> str:
        """The stored row id of a chunk: :meth:`Layout.row_id`, except in the shared table of
        ``langchain-legacy``, where it is a UUID in this collection's own namespace."""
        if self.layout.name == "langchain-legacy":
            return str(uuid.uuid5(uuid.UUID(uuid_id(self.collection)), chunk_id))
        return self.layout.row_id(chunk_id)

    def _scope(self, conn: _Conn) -> sql.Composable | None:
        """The SQL condition selecting this collection's rows (``TRUE`` but in the shared
        legacy table), or ``None`` when the collection does not exist."""
        from psycopg import sql

        shape = self._shape()
        if self._columns_of(conn, shape.schema, shape.table) is None:
            return None
        if self.layout.name != "langchain-legacy":
            return sql.SQL("TRUE")
        collection = self._legacy_uuid(conn)
        if collection is None:
            return None
        return sql.SQL("collection_id = {}::uuid").format(sql.Literal(collection))

    def _metadata(self) -> sql.Composable:
        """The metadata column as ``jsonb`` (LangChain and LlamaIndex keep ``json``)."""
        from psycopg import sql

        return sql.SQL("{}::jsonb").format(sql.Identifier(self._shape().metadata))

    def _fw_dim(self, conn: _Conn) -> int | None:
        from psycopg import sql

        shape = self._shape()
        columns = self._columns_of(conn, shape.schema, shape.table)
        if columns is None:
            return None
        needed = (shape.id, shape.text, shape.metadata, "embedding")
        typ, dim = columns.get("embedding", ("", -1))
        if any(c not in columns for c in needed) or typ != "vector":
            raise SchemaMismatchError(
                f"table {shape.table!r} at {self.uri} exists but does not follow {self.layout.describe()} "
                f"(columns {sorted(columns)}; embedding type {typ or 'missing'}); expected columns "
                f"{list(needed)} with embedding vector(dim). Use another collection name"
            )
        if self.layout.name != "langchain-legacy":
            return dim if dim >= 1 else None
        scope = self._scope(conn)
        if scope is None:
            return None
        if dim >= 1:
            return dim
        row = conn.execute(
            sql.SQL("SELECT vector_dims(embedding) FROM {} WHERE {} LIMIT 1").format(self._fw_table(), scope)
        ).fetchone()
        return None if row is None else int(row[0])

    def _fw_ensure(self, conn: _Conn, dim: int) -> None:
        shape = self._shape()
        if len(shape.table.encode()) > _MAX_IDENTIFIER_BYTES:
            raise ConfigurationError(
                f"collection {self.collection!r} is too long for {self.layout.describe()}: its table "
                f"{shape.table!r} has more than {_MAX_IDENTIFIER_BYTES} bytes; pass a shorter name"
            )
        existing = self._fw_dim(conn)
        if existing is not None and existing != dim:
            raise SchemaMismatchError(
                f"collection {self.collection!r} at {self.uri} has vector({existing}) embeddings; "
                f"the embeddings are {dim}-dim; {rebuild_hint()}"
            )
        if existing is not None and self.layout.name != "llama-index":
            if not self._register_vector(conn):
                raise StoreError(f"table {shape.table!r} exists but the vector extension is missing")
            return
        self._create(conn, self._fw_create_sql(dim))
        _log.info(
            "ensured pgvector collection %r in the %s layout at %s",
            self.collection,
            self.layout.name,
            self.uri,
        )

    def _fw_create_sql(self, dim: int) -> list[_Statement]:
        """The framework's own DDL (as its class creates the table), ``IF NOT EXISTS``."""
        from psycopg import sql

        table = self._fw_table()
        name = self.layout.name
        if name == "langchain":
            return [
                (
                    sql.SQL(
                        'CREATE TABLE IF NOT EXISTS {} ("langchain_id" UUID PRIMARY KEY, "content" TEXT NOT NULL, '
                        '"embedding" vector({}) NOT NULL, "langchain_metadata" JSON)'
                    ).format(table, sql.Literal(dim)),
                    (),
                )
            ]
        if name == "llama-index":
            shape = self._shape()
            return [
                (
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (id BIGSERIAL NOT NULL, text VARCHAR NOT NULL, "
                        "metadata_ JSON, node_id VARCHAR, embedding VECTOR({}), PRIMARY KEY (id))"
                    ).format(table, sql.Literal(dim)),
                    (),
                ),
                (
                    sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ((metadata_ ->> 'ref_doc_id'))").format(
                        sql.Identifier(_short(f"{self.collection.lower()}_idx_1")), table
                    ),
                    (),
                ),
                (
                    sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (node_id)").format(
                        sql.Identifier(_short(f"{shape.table}_e5_node_id")), table
                    ),
                    (),
                ),
            ]
        collections = self._qualified(None, _LEGACY_COLLECTIONS)
        return [
            (
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (uuid UUID NOT NULL, name VARCHAR NOT NULL, cmetadata JSON, "
                    "PRIMARY KEY (uuid), UNIQUE (name))"
                ).format(collections),
                (),
            ),
            (
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id VARCHAR NOT NULL, collection_id UUID, embedding VECTOR, "
                    "document VARCHAR, cmetadata JSONB, PRIMARY KEY (id), FOREIGN KEY(collection_id) "
                    "REFERENCES {} (uuid) ON DELETE CASCADE)"
                ).format(table, collections),
                (),
            ),
            (
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS ix_cmetadata_gin ON {} USING gin (cmetadata jsonb_path_ops)"
                ).format(table),
                (),
            ),
            (
                sql.SQL(
                    "INSERT INTO {} (uuid, name, cmetadata) VALUES (%s, %s, NULL) ON CONFLICT (name) DO NOTHING"
                ).format(collections),
                (uuid.uuid4(), self.collection),
            ),
        ]

    def _fw_index_name(self) -> str:
        if self.layout.name == "langchain-legacy":
            return _index_name_for(f"{_LEGACY_EMBEDDINGS}_{uuid_id(self.collection)}")
        return _index_name_for(self._shape().table)

    def _fw_finalize(self, conn: _Conn) -> None:
        from psycopg import sql

        dim = self._fw_dim(conn)
        if dim is None:
            return
        if dim > HNSW_MAX_DIM:
            scope = self._scope(conn)
            bits = sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw "
                "((binary_quantize(embedding)::bit({})) bit_hamming_ops)"
            ).format(sql.Identifier(self._fw_index_name()), self._fw_table(), sql.Literal(dim))
            if self.layout.name == "langchain-legacy":
                bits += sql.SQL(" WHERE {}").format(scope)
            self._build_index(conn, bits)
        conn.execute(sql.SQL("ANALYZE {}").format(self._fw_table()))
        self._has_bit_index = dim > HNSW_MAX_DIM

    def _fw_fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        from psycopg import sql

        chunks = {self._row_id(i): i for i in ids}
        shape = self._shape()

        def fetch(conn: _Conn) -> dict[str, str]:
            scope = self._scope(conn)
            if scope is None:
                return {}
            rows = conn.execute(
                sql.SQL(
                    "SELECT {id}::text, {m} ->> %s FROM {t} WHERE {id} = ANY(%s::{typ}[]) AND {scope} "
                    "AND jsonb_typeof({m} -> %s) = 'string'"
                ).format(
                    id=sql.Identifier(shape.id),
                    m=self._metadata(),
                    t=self._fw_table(),
                    typ=sql.SQL(shape.id_type),
                    scope=scope,
                ),
                (CONTENT_HASH_KEY, list(chunks), CONTENT_HASH_KEY),
            ).fetchall()
            return {chunks[i]: h for i, h in rows if h is not None and i in chunks}

        return self._run("fetch_hashes", fetch)

    def _fw_upsert(self, latest: Sequence[Record]) -> None:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        layout = self.layout
        rows = [
            (
                self._row_id(r.id),
                r.text,
                Jsonb(layout.metadata(r, remove_text=True)),
                np.asarray(r.embedding, dtype=np.float32).ravel(),
            )
            for r in latest
        ]
        if not rows:
            return
        shape = self._shape()
        stage = sql.Identifier("pg_temp", _STAGE)
        table = self._fw_table()
        # (statement, parameters); None: this collection's uuid, known inside the transaction
        merge: list[tuple[_Query, tuple[object, ...] | None]]
        if layout.name == "langchain":
            merge = []  # built in the transaction, from the table's metadata columns
        elif layout.name == "llama-index":
            cast = sql.SQL("json") if self._metadata_type() == "json" else sql.SQL("jsonb")
            merge = [
                # no unique node_id: writers of one table take turns to delete and insert
                (sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"), (f"e5:{shape.table}",)),
                (
                    sql.SQL("DELETE FROM {t} WHERE node_id IN (SELECT id FROM {s})").format(t=table, s=stage),
                    (),
                ),
                (
                    sql.SQL(
                        "INSERT INTO {t} (text, metadata_, node_id, embedding) "
                        "SELECT text, metadata::{c}, id, embedding FROM {s}"
                    ).format(t=table, s=stage, c=cast),
                    (),
                ),
            ]
        else:
            merge = [
                (
                    sql.SQL(
                        "INSERT INTO {t} (id, collection_id, embedding, document, cmetadata) "
                        "SELECT id, %s::uuid, embedding, text, metadata FROM {s} "
                        "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, document = EXCLUDED.document, "
                        "cmetadata = EXCLUDED.cmetadata WHERE {t}.collection_id = EXCLUDED.collection_id"
                    ).format(t=table, s=stage),
                    None,
                )
            ]

        def load(conn: _Conn) -> None:
            scope = self._scope(conn)
            if scope is None:
                raise StoreError(
                    f"pgvector collection {self.collection!r} ({layout.describe()}) does not exist at "
                    f"{self.uri}; call ensure_collection(dim) first"
                )
            collection = self._legacy_uuid(conn) if layout.name == "langchain-legacy" else None
            if layout.name == "langchain":
                merge[:] = [self._langchain_merge(conn, latest, table, stage)]
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE {} (id text, text text, metadata jsonb, embedding vector) ON COMMIT DROP"
                    ).format(sql.Identifier(_STAGE))
                )
                copy_sql = sql.SQL(
                    "COPY {} (id, text, metadata, embedding) FROM STDIN WITH (FORMAT BINARY)"
                ).format(stage)
                with cur.copy(copy_sql) as copy:
                    copy.set_types(["text", "text", "jsonb", "vector"])
                    for row in rows:
                        copy.write_row(row)
                for statement, params in merge:
                    cur.execute(statement, (collection,) if params is None else params)

        self._run("upsert", load)
        _log.debug("upserted %d rows into %r at %s", len(rows), self.collection, self.uri)

    def _langchain_merge(
        self, conn: _Conn, latest: Sequence[Record], table: sql.Identifier, stage: sql.Identifier
    ) -> _Statement:
        """The merge into a LangChain ``PGVectorStore`` table: as ``PGVectorStore.add_texts``
        writes, each of its ``metadata_columns`` gets the metadata field of its name, which
        then stays out of ``langchain_metadata`` (e5's own keys stay in it too: they are how
        e5 finds its rows)."""
        from psycopg import sql

        columns = self._metadata_columns(conn)
        for column in columns:
            if not column.required or reserved_metadata_key(column.name):
                continue
            for record in latest:
                if record.metadata.get(column.name) is None:
                    raise SchemaMismatchError(
                        f"chunk {record.id!r} has no {column.name!r} field, and column {column.name!r} of "
                        f"table {self.collection!r} at {self.uri} is NOT NULL (one of the metadata_columns "
                        f"of LangChain's PGVectorStore); nothing of this batch was written. Give every "
                        f"record a {column.name!r} field, or make the column nullable"
                    )
        names = [sql.Identifier(c.name) for c in columns]
        moved = [c.name for c in columns if not reserved_metadata_key(c.name)]
        statement = sql.SQL(
            'INSERT INTO {t} ("langchain_id", "content", "embedding", "langchain_metadata"{names}) '
            "SELECT id::uuid, text, embedding, (metadata - %s::text[])::json{values} FROM {s} "
            'ON CONFLICT ("langchain_id") DO UPDATE SET "content" = EXCLUDED."content", '
            '"embedding" = EXCLUDED."embedding", "langchain_metadata" = EXCLUDED."langchain_metadata"{sets}'
        ).format(
            t=table,
            s=stage,
            names=sql.SQL("").join(sql.SQL(", {}").format(n) for n in names),
            values=sql.SQL("").join(sql.SQL(", {}").format(c.value()) for c in columns),
            sets=sql.SQL("").join(sql.SQL(", {n} = EXCLUDED.{n}").format(n=n) for n in names),
        )
        return statement, (moved,)

    def _metadata_type(self) -> str:
        """``json`` or ``jsonb``: the type of the existing table's metadata column."""
        shape = self._shape()
        columns = self._run("upsert", lambda conn: self._columns_of(conn, shape.schema, shape.table)) or {}
        return columns.get(shape.metadata, ("json", -1))[0]

    def _fw_search(self, conn: _Conn, query: np.ndarray, k: int) -> list[Hit]:
        from psycopg import sql

        dim = self._dim or self._fw_dim(conn)
        scope = self._scope(conn)
        if dim is None or scope is None or k < 1:
            return []
        shape = self._shape()
        metadata: sql.Composable = sql.Identifier(shape.metadata)
        columns = self._metadata_columns(conn) if self.layout.name == "langchain" else ()
        if columns:  # as PGVectorStore reads them: the JSON, then each metadata column's value
            pairs = sql.SQL(", ").join(
                sql.SQL("{}, {}").format(sql.Literal(c.name), sql.Identifier(c.name)) for c in columns
            )
            metadata = sql.SQL(
                "(coalesce({}::jsonb, '{{}}') || jsonb_strip_nulls(jsonb_build_object({})))"
            ).format(metadata, pairs)
        cols = sql.SQL("{}::text, {}, {}").format(
            sql.Identifier(shape.id), sql.Identifier(shape.text), metadata
        )
        with conn.transaction(), conn.cursor() as cur:
            if dim > HNSW_MAX_DIM and self._fw_bit_index_exists(conn):
                candidates = min(max(self.candidate_factor * k, self.min_candidates, k), _MAX_EF_SEARCH)
                cur.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(candidates)))
                cur.execute(
                    sql.SQL(
                        "SELECT r, t, m, 1 - (embedding <=> %(q)s) FROM ("
                        "SELECT {cols}, embedding FROM {table} WHERE {scope} "
                        "ORDER BY binary_quantize(embedding)::bit({dim}) <~> binary_quantize(%(q)s) LIMIT %(n)s"
                        ") AS candidates (r, t, m, embedding) ORDER BY embedding <=> %(q)s LIMIT %(k)s"
                    ).format(cols=cols, table=self._fw_table(), scope=scope, dim=sql.Literal(dim)),
                    {"q": query, "n": candidates, "k": k},
                )
            else:
                cur.execute(
                    sql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                        sql.Literal(min(max(k, 40), _MAX_EF_SEARCH))
                    )
                )
                cur.execute(
                    sql.SQL(
                        "SELECT {cols}, 1 - (embedding <=> %(q)s) FROM {table} WHERE {scope} "
                        "ORDER BY embedding <=> %(q)s LIMIT %(k)s"
                    ).format(cols=cols, table=self._fw_table(), scope=scope),
                    {"q": query, "k": k},
                )
            rows = cur.fetchall()
        return [self.layout.hit(i, float(s), t, m) for i, t, m, s in rows]

    def _fw_bit_index_exists(self, conn: _Conn) -> bool:
        if not self._has_bit_index:
            shape = self._shape()
            row = conn.execute(
                "SELECT 1 FROM pg_indexes WHERE schemaname = coalesce(%s, current_schema()) "
                "AND tablename = %s AND indexname = %s",
                (shape.schema, shape.table, self._fw_index_name()),
            ).fetchone()
            self._has_bit_index = row is not None
        return self._has_bit_index

    def _fw_count(self, conn: _Conn) -> int:
        from psycopg import sql

        scope = self._scope(conn)
        if scope is None:
            return 0
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._fw_table(), scope)
        row = conn.execute(query).fetchone()
        assert row is not None  # count(*) returns one row
        return int(row[0])

    def _fw_scan(self, page_size: int) -> Iterator[list[tuple[str, str | None]]]:
        from psycopg import sql

        shape = self._shape()
        last: object = None  # the key of the page's last row: a uuid, an integer or a string
        while True:

            def page(conn: _Conn, after: object = last) -> list[tuple[object, str, str | None]]:
                scope = self._scope(conn)
                if scope is None:
                    return []
                # the chunk id e5 keeps in the metadata, else the row's own id (an app's row);
                # the document id only of rows e5 wrote (e5_document_id)
                query = sql.SQL(
                    "SELECT {key} AS e5_key, CASE WHEN jsonb_typeof({m} -> %s) = 'string' THEN {m} ->> %s "
                    "ELSE {id}::text END, CASE WHEN jsonb_typeof({m} -> %s) = 'string' "
                    "AND jsonb_typeof({m} -> %s) = 'string' "
                    # LlamaIndex's placeholder "None" (a node without a ref doc) is no document
                    "AND ({m} -> '_node_type' IS NULL OR {m} ->> %s <> 'None') THEN {m} ->> %s END "
                    "FROM {t} WHERE {scope}{after} ORDER BY e5_key LIMIT %s"
                ).format(
                    key=sql.Identifier(shape.key),
                    m=self._metadata(),
                    id=sql.Identifier(shape.id),
                    t=self._fw_table(),
                    scope=scope,
                    after=sql.SQL("")
                    if after is None
                    else sql.SQL(" AND {} > %s").format(sql.Identifier(shape.key)),
                )
                keys = (
                    CHUNK_ID_KEY,
                    CHUNK_ID_KEY,
                    CONTENT_HASH_KEY,
                    DOCUMENT_ID_KEY,
                    DOCUMENT_ID_KEY,
                    DOCUMENT_ID_KEY,
                )
                params = (*keys, page_size) if after is None else (*keys, after, page_size)
                return conn.execute(query, params).fetchall()

            rows = self._run("scan", page)
            if rows:
                yield [(row[1], row[2]) for row in rows]
            if len(rows) < page_size:
                return
            last = rows[-1][0]

    def _fw_delete(self, conn: _Conn, chunk_ids: list[str]) -> None:
        from psycopg import sql

        scope = self._scope(conn)
        if scope is None:  # a missing collection has nothing to delete
            return
        shape = self._shape()
        conn.execute(
            sql.SQL("DELETE FROM {t} WHERE {id} = ANY(%s::{typ}[]) AND {scope}").format(
                t=self._fw_table(), id=sql.Identifier(shape.id), typ=sql.SQL(shape.id_type), scope=scope
            ),
            ([self._row_id(c) for c in chunk_ids],),
        )

    def _fw_drop(self, conn: _Conn) -> None:
        from psycopg import sql

        if self.layout.name != "langchain-legacy":
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._fw_table()))
            return
        if self._columns_of(conn, None, _LEGACY_COLLECTIONS) is None:
            return
        with conn.transaction():
            conn.execute(
                sql.SQL("DROP INDEX IF EXISTS {}").format(self._qualified(None, self._fw_index_name()))
            )
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE name = %s").format(self._qualified(None, _LEGACY_COLLECTIONS)),
                (self.collection,),
            )

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _check_table_name(name: str) -> None:
    if not name or "\x00" in name or len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"collection {name!r} cannot be a PostgreSQL table name: it must be 1 to "
            f"{_MAX_IDENTIFIER_BYTES} bytes without NUL characters; pass a shorter name"
        )


def _short(name: str) -> str:
    """``name``, or a hash-based name when Postgres would truncate it."""
    if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        return f"e5_{hashlib.sha1(name.encode()).hexdigest()[:24]}"
    return name


def _index_name_for(collection: str) -> str:
    """``<collection>_hnsw``, or a hash-based name when that would be truncated by Postgres."""
    name = f"{collection}_hnsw"
    if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        name = f"e5_{hashlib.sha1(collection.encode()).hexdigest()[:24]}_hnsw"
    return name


def is_auth_failure(exc: BaseException) -> bool:
    """Whether a psycopg connection error means the server refused the login (a wrong user or
    password, no ``pg_hba.conf`` entry), as opposed to "cannot reach the server"."""
    if getattr(exc, "sqlstate", None) in _AUTH_FAILED:
        return True
    return _AUTH_FAILED_TEXT.search(str(exc)) is not None


def _password_of(dsn: str) -> str | None:
    """The password in ``dsn``, to scrub it from driver messages (None if there is none)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(dsn).get("password") or None  # type: ignore[return-value]
    except Exception:
        return None
