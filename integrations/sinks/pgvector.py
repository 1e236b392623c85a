"""PostgreSQL + pgvector sink.

A collection is a table of that name in the connection's current schema::

    id text PRIMARY KEY, text text NOT NULL, metadata jsonb NOT NULL, embedding vector(dim) NOT NULL

Writes COPY each batch (binary) into a temporary staging table and merge it with
``INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE``, in one transaction per batch.

Indexes. pgvector's HNSW refuses ``vector`` columns above 2000 dimensions (e5-mistral has
4096), so:

- up to 2000 dims: HNSW on ``embedding vector_cosine_ops``, created with the table, except
  when a batch ingestion creates it (:meth:`PGVectorSink.begin_bulk_load`): then
  :meth:`PGVectorSink.finalize` builds it after the load, 4-5x faster than growing it row
  by row; until then searches scan exactly (a writer to the same table waits while an index
  is built, as above 2000 dims: ``CREATE INDEX`` holds a SHARE lock);
- above 2000 dims: HNSW on ``(binary_quantize(embedding)::bit(dim)) bit_hamming_ops``,
  built by :meth:`PGVectorSink.finalize` after the bulk load (building it once is much
  faster than maintaining it row by row). Searches take ``max(candidate_factor * k,
  min_candidates)`` candidates by Hamming distance from that index and re-rank them by
  exact cosine distance. Before ``finalize`` they scan exactly.

Layouts (``layout=``, ``e5 ingest --layout``; detected from the catalog when omitted). Each
is one frozen record in ``_PG_LAYOUTS`` (``_PgLayout``: table and column names, id type,
DDL, staging table, merge kind, collection scoping, indexes, how a hit is decoded), and every
method of :class:`PGVectorSink` has one body that reads the record: a new layout is a record.

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

In the framework layouts row ids are UUIDs (:meth:`~e5_integrations.sinks.Layout.row_id`)
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    layout_names,
    metadata_strings,
    rebuild_hint,
    redact,
    reserved_metadata_key,
    secrets_of,
    uuid_id,
    with_content_hash,
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
#: In a layout whose collections share one table, the column naming a row's collection.
_SCOPE_COLUMN = "collection_id"


@dataclass(frozen=True)
class _Names:
    """What a layout's DDL names: the collection, its table (bare and schema-qualified) and,
    for a layout whose collections share one table, the table listing the collections."""

    collection: str
    table: str
    qualified: sql.Identifier
    registry: sql.Identifier | None


@dataclass(frozen=True)
class _PgLayout:
    """One layout of a pgvector collection, as data: every :class:`PGVectorSink` method reads
    it and has one body for all layouts, so a new layout is one record in :data:`_PG_LAYOUTS`.

    Every layout keeps the vector in a column ``embedding``. Rows are written through a
    staging table ``(id text, text text, metadata jsonb, embedding vector)``: the row id, the
    text, :meth:`Layout.metadata` of the record and its vector.
    """

    name: str
    #: The table's schema (None: the connection's current schema) and name, a template
    #: over ``{collection}`` and ``{lower}`` (the collection lower-cased).
    schema: str | None
    table: str
    #: Columns: the row id (and its SQL type), the text, the metadata (``json`` or ``jsonb``).
    id: str
    id_type: str
    text: str
    metadata: str
    #: A unique column to page through the rows by (the id, or a serial key).
    key: str
    #: The columns that tell an existing table of this layout apart from other layouts'.
    detect: tuple[str, ...]
    #: The table's DDL (``IF NOT EXISTS``), as the layout's own writer creates it.
    ddl: Callable[[_Names, int], list[_Statement]]
    #: The columns of the staging table, a template over ``{table}`` (the collection's table).
    stage: str = "id text, text text, metadata jsonb, embedding vector"
    #: Whether the metadata holds the chunk id (``e5_chunk_id``; row ids are UUIDs), which
    #: :meth:`scan` reads; False: the row id is the chunk id. Every layout's hits are decoded
    #: by its registered :meth:`Layout.hit`.
    chunk_in_metadata: bool = True
    #: Whether rows written by LlamaIndex may be present, whose document id ``"None"`` (with a
    #: ``_node_type``) marks a node without a document: such rows have no document id.
    none_document: bool = True
    #: Whether the id column is unique (merge: ``ON CONFLICT``); False: a node's rows are
    #: deleted and inserted in one transaction, under an advisory lock on the table.
    unique_id: bool = True
    #: Whether every other column holds the metadata field of its name (LangChain's
    #: ``metadata_columns``), written into it and read back from it.
    metadata_columns: bool = False
    #: Up to 2000 dims, whether the table has an HNSW ``vector_cosine_ops`` index, created with
    #: it (and again by ``finalize``); above 2000 dims every layout gets the bit index.
    vector_index: bool = False
    #: Whether a table whose ``embedding`` has no dimension is refused (else: no dimension yet).
    typed_vector: bool = False
    #: Whether ``ensure_collection`` runs the DDL on an existing table too (to add e5's indexes).
    reapply_ddl: bool = False
    #: Collections share the table: the table listing them (``uuid``, ``name``); each row's
    #: collection is in :data:`_SCOPE_COLUMN`, its id a UUID in the collection's namespace.
    registry: str | None = None
    #: How messages name the collection ("table" or "collection"), the collection with its
    #: layout (``{collection!r}``, ``{layout}``), and an existing table that does not match.
    noun: str = "collection"
    named: str = "pgvector collection {collection!r} ({layout})"
    foreign: str = "does not follow {layout}"

    @property
    def direct_copy(self) -> bool:
        """Whether a batch may be COPYed straight into the table: the staging table is the
        table's own columns (``LIKE``), the id is unique, and nothing is added on the way (no
        shared table, no metadata columns). Tried first, in a savepoint; a row already stored
        undoes it and the sink merges through the staging table from then on."""
        return (
            self.stage == "LIKE {table}"
            and self.unique_id
            and self.registry is None
            and not self.metadata_columns
        )

    def table_of(self, collection: str) -> str:
        """The name of ``collection``'s table in this layout."""
        return self.table.format(collection=collection, lower=collection.lower())


def _e5_ddl(names: _Names, dim: int) -> list[_Statement]:
    from psycopg import sql

    table = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, text text NOT NULL, "
        "metadata jsonb NOT NULL DEFAULT '{{}}', embedding vector({}) NOT NULL)"
    ).format(names.qualified, sql.Literal(dim))
    return [(table, ())]


def _langchain_ddl(names: _Names, dim: int) -> list[_Statement]:
    from psycopg import sql

    table = sql.SQL(
        'CREATE TABLE IF NOT EXISTS {} ("langchain_id" UUID PRIMARY KEY, "content" TEXT NOT NULL, '
        '"embedding" vector({}) NOT NULL, "langchain_metadata" JSON)'
    ).format(names.qualified, sql.Literal(dim))
    return [(table, ())]


def _legacy_ddl(names: _Names, dim: int) -> list[_Statement]:
    from psycopg import sql

    assert names.registry is not None  # the layout's record names its registry
    collections, table = names.registry, names.qualified
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
            (uuid.uuid4(), names.collection),
        ),
    ]


def _llama_index_ddl(names: _Names, dim: int) -> list[_Statement]:
    from psycopg import sql

    table = names.qualified
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
                sql.Identifier(_short(f"{names.collection.lower()}_idx_1")), table
            ),
            (),
        ),
        (
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (node_id)").format(
                sql.Identifier(_short(f"{names.table}_e5_node_id")), table
            ),
            (),
        ),
    ]


#: The pgvector layouts, by name (in the order detection tries them).
_PG_LAYOUTS: dict[str, _PgLayout] = {
    record.name: record
    for record in (
        _PgLayout(
            name="e5",
            schema=None,
            table="{collection}",
            id="id",
            id_type="text",
            text="text",
            metadata="metadata",
            key="id",
            detect=("id", "text", "metadata", "embedding"),
            ddl=_e5_ddl,
            stage="LIKE {table}",
            chunk_in_metadata=False,
            none_document=False,
            vector_index=True,
            typed_vector=True,
            noun="table",
            named="pgvector table {collection!r}",
            foreign="is not an e5 collection",
        ),
        _PgLayout(
            name="langchain",
            schema="public",
            table="{collection}",
            id="langchain_id",
            id_type="uuid",
            text="content",
            metadata="langchain_metadata",
            key="langchain_id",
            detect=("langchain_id", "langchain_metadata"),
            ddl=_langchain_ddl,
            metadata_columns=True,
        ),
        _PgLayout(
            name="langchain-legacy",
            schema=None,
            table=_LEGACY_EMBEDDINGS,
            id="id",
            id_type="text",
            text="document",
            metadata="cmetadata",
            key="id",
            detect=(),
            ddl=_legacy_ddl,
            registry=_LEGACY_COLLECTIONS,
        ),
        _PgLayout(
            name="llama-index",
            schema="public",
            table="data_{lower}",
            id="node_id",
            id_type="text",
            text="text",
            metadata="metadata_",
            key="id",
            detect=("node_id", "metadata_"),
            ddl=_llama_index_ddl,
            unique_id=False,
            reapply_ddl=True,
        ),
    )
}


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
    function as :func:`e5_integrations.sinks.redact`."""
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
    #: The registered layouts (:func:`layout_names`) that this store has a record for in
    #: :data:`_PG_LAYOUTS`, in the registry's order; the registered :class:`Layout` gives their
    #: row ids and metadata and hit codecs.
    layouts: ClassVar[tuple[str, ...]] = tuple(n for n in layout_names("pgvector") if n in _PG_LAYOUTS)

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
        self._defer_index = False
        self._index_pending = False  # this sink created the table without its index, not yet built
        self._copy_direct = True  # until a batch meets a stored row (see _PgLayout.direct_copy)

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

    # -- the layout's record and its table ----------------------------------------------------

    @property
    def _record(self) -> _PgLayout:
        """This collection's layout, as data (resolved from the catalog if not given)."""
        return _PG_LAYOUTS[self.layout.name]

    def _qualified(self, schema: str | None, table: str) -> sql.Identifier:
        from psycopg import sql

        schema = schema or self._schema
        return sql.Identifier(schema, table) if schema else sql.Identifier(table)

    def _table(self) -> sql.Identifier:
        """The collection's table, always schema-qualified (with the connection's current
        schema where the record names none) so that it never resolves to a temporary table."""
        record = self._record
        return self._qualified(record.schema, record.table_of(self.collection))

    def _columns_of(self, conn: _Conn, schema: str | None, table: str) -> dict[str, tuple[str, int]] | None:
        """``{column: (type, typmod)}`` of a table, or None if it does not exist."""
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, NULL), a.atttypmod "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE c.relname = %s AND n.nspname = coalesce(%s, current_schema()) "
            "AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
            (table, schema),
        ).fetchall()
        return {name: (typ, mod) for name, typ, mod in rows} if rows else None

    def _columns(self, conn: _Conn) -> dict[str, tuple[str, int]] | None:
        """The columns of the collection's table, or None if it does not exist."""
        record = self._record
        return self._columns_of(conn, record.schema, record.table_of(self.collection))

    def _registered(self, conn: _Conn, registry: str) -> str | None:
        """This collection's uuid in the table ``registry`` (in a layout whose collections
        share one table), ``None`` if it has none."""
        from psycopg import sql

        if self._columns_of(conn, None, registry) is None:
            return None
        table = self._qualified(None, registry)
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

    def _scope(self, conn: _Conn) -> sql.Composable | None:
        """The SQL condition selecting this collection's rows (``TRUE`` but in a shared
        table), or ``None`` when the collection does not exist."""
        return self._scope_of(conn, self._columns(conn))

    def _scope_of(self, conn: _Conn, columns: dict[str, tuple[str, int]] | None) -> sql.Composable | None:
        """:meth:`_scope`, given the columns of the collection's table (None: no table)."""
        from psycopg import sql

        record = self._record
        if columns is None:
            return None
        if record.registry is None:
            return sql.SQL("TRUE")
        collection = self._registered(conn, record.registry)
        if collection is None:
            return None
        return sql.SQL("{} = {}::uuid").format(sql.Identifier(_SCOPE_COLUMN), sql.Literal(collection))

    def _metadata(self) -> sql.Composable:
        """The metadata column as ``jsonb`` (LangChain and LlamaIndex keep ``json``)."""
        from psycopg import sql

        return sql.SQL("{}::jsonb").format(sql.Identifier(self._record.metadata))

    def _row_id(self, chunk_id: str) -> str:
        """The stored row id of a chunk: :meth:`Layout.row_id`, except in a table that
        collections share, where it is a UUID in this collection's own namespace."""
        if self._record.registry is not None:
            return str(uuid.uuid5(uuid.UUID(uuid_id(self.collection)), chunk_id))
        return self.layout.row_id(chunk_id)

    def _dim_of(self, conn: _Conn) -> int | None:
        """The collection's vector dimension (in a shared table with an untyped ``vector``:
        that of its rows); ``None`` if it does not exist (or has no dimension yet).

        Raises:
            SchemaMismatchError: the table exists but lacks the layout's columns.
        """
        from psycopg import sql

        record = self._record
        table = record.table_of(self.collection)
        columns = self._columns_of(conn, record.schema, table)
        if columns is None:
            return None
        needed = (record.id, record.text, record.metadata, "embedding")
        typ, dim = columns.get("embedding", ("", -1))
        if any(c not in columns for c in needed) or typ != "vector" or (record.typed_vector and dim < 1):
            raise SchemaMismatchError(
                f"table {table!r} at {self.uri} exists but "
                f"{record.foreign.format(layout=self.layout.describe())} "
                f"(columns {sorted(columns)}; embedding type {typ or 'missing'}); expected columns "
                f"{list(needed)} with embedding vector(dim). Use another collection name"
            )
        if record.registry is None:
            return dim if dim >= 1 else None
        scope = self._scope(conn)
        if scope is None:
            return None
        if dim >= 1:
            return dim
        row = conn.execute(
            sql.SQL("SELECT vector_dims(embedding) FROM {} WHERE {} LIMIT 1").format(self._table(), scope)
        ).fetchone()
        return None if row is None else int(row[0])

    def _own_index_name(self) -> str:
        """The name of e5's HNSW index on the collection's table (one per collection in a
        shared table)."""
        record = self._record
        table = record.table_of(self.collection)
        if record.registry is not None:
            return _index_name_for(f"{table}_{uuid_id(self.collection)}")
        return _index_name_for(table)

    _fw_index_name = _own_index_name  # its name before layouts were records

    def _index_sql(self, dim: int, scope: sql.Composable | None) -> sql.Composed | None:
        """e5's HNSW index on the table: up to 2000 dims on the vectors (in layouts that
        have one, else ``None``), above 2000 dims on their binary quantisation (partial,
        on ``scope``, in a shared table)."""
        from psycopg import sql

        record = self._record
        create = sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ").format(
            sql.Identifier(self._own_index_name()), self._table()
        )
        if dim <= HNSW_MAX_DIM:
            return create + sql.SQL("(embedding vector_cosine_ops)") if record.vector_index else None
        bits = create + sql.SQL("((binary_quantize(embedding)::bit({})) bit_hamming_ops)").format(
            sql.Literal(dim)
        )
        if record.registry is not None and scope is not None:
            bits += sql.SQL(" WHERE {}").format(scope)
        return bits

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
        if not self._record.metadata_columns:
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
        """The columns of this collection's table that hold metadata fields (LangChain's
        ``metadata_columns``; none in other layouts, or if the table does not exist yet)."""
        record = self._record
        if not record.metadata_columns:
            return ()
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull AND NOT a.atthasdef "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE c.relname = %s AND n.nspname = coalesce(%s, current_schema()) "
            "AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (record.table_of(self.collection), record.schema),
        ).fetchall()
        own = (record.id, record.text, "embedding", record.metadata)
        return tuple(
            _MetadataColumn(str(name), str(typ), bool(required))
            for name, typ, required in rows
            if name not in own
        )

    def begin_bulk_load(self) -> None:
        """A table ``ensure_collection`` creates from now on gets its HNSW index from
        :meth:`finalize`, built once after the load, not with the table (an index that exists
        is kept and grows with the rows). If the run stops before ``finalize``, the table has
        no index until a later run's ``finalize``; searches scan exactly meanwhile."""
        self._defer_index = True

    def ensure_collection(self, dim: int) -> None:
        """Create the table as the layout's writer does (in the e5 layout up to 2000 dims
        with its HNSW index, unless :meth:`begin_bulk_load` deferred it to ``finalize``) or
        check the existing table's vector dimension (``SchemaMismatchError``; nothing is
        written)."""
        record = self._record  # first: a disagreeing layout= fails before anything is created
        if not 1 <= dim <= VECTOR_MAX_DIM:
            raise ConfigurationError(f"dim={dim} is outside pgvector's 1..{VECTOR_MAX_DIM} range")
        self._run("ensure_collection", lambda conn: self._ensure(conn, record, dim))
        self._dim = dim

    def _ensure(self, conn: _Conn, record: _PgLayout, dim: int) -> None:
        table = record.table_of(self.collection)
        if len(table.encode()) > _MAX_IDENTIFIER_BYTES:
            raise ConfigurationError(
                f"collection {self.collection!r} is too long for {self.layout.describe()}: its table "
                f"{table!r} has more than {_MAX_IDENTIFIER_BYTES} bytes; pass a shorter name"
            )
        existing = self._dim_of(conn)
        if existing is not None and existing != dim:
            raise SchemaMismatchError(
                f"{record.noun} {self.collection!r} at {self.uri} has vector({existing}) embeddings; "
                f"the embeddings are {dim}-dim; {rebuild_hint()}"
            )
        if existing is not None and not record.reapply_ddl:
            if not self._register_vector(conn):
                raise StoreError(f"table {table!r} exists but the vector extension is missing")
            return
        registry = None if record.registry is None else self._qualified(None, record.registry)
        statements = record.ddl(_Names(self.collection, table, self._table(), registry), dim)
        index = self._index_sql(dim, None) if dim <= HNSW_MAX_DIM and not self._defer_index else None
        self._create(conn, statements + ([(index, ())] if index is not None else []))
        self._index_pending = (
            self._defer_index and existing is None and dim <= HNSW_MAX_DIM and record.vector_index
        )
        _log.info(
            "ensured pgvector %s %r (vector(%d)) in the %s layout at %s%s",
            record.noun,
            self.collection,
            dim,
            record.name,
            self.uri,
            "; its index is built after the load" if self._index_pending else "",
        )

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
        dims, in the e5 layout, it creates the HNSW index that :meth:`begin_bulk_load`
        deferred (or finds it). Call it at the end of an ingestion run.
        """
        from psycopg import sql

        record = self._record

        def build(conn: _Conn) -> None:
            dim = self._dim_of(conn)
            if dim is None:
                return
            index = self._index_sql(dim, self._scope(conn))
            if index is not None:
                self._build_index(conn, index)
            conn.execute(sql.SQL("ANALYZE {}").format(self._table()))
            self._has_bit_index = dim > HNSW_MAX_DIM

        self._run("finalize", build)
        self._defer_index = self._index_pending = False  # a later table gets its index at once
        _log.info("indexed pgvector %s %r at %s", record.noun, self.collection, self.uri)

    def max_batch_records(self, dim: int) -> int:
        """COPY streams, so only memory bounds a batch: about 32 MB of vectors per batch."""
        return max(1, min(4096, (32 * 1024 * 1024) // (4 * dim + 4096)))

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """``{id: content hash}`` for the given ids that are stored."""
        from psycopg import sql

        if not ids:
            return {}
        record = self._record
        chunks = {self._row_id(i): i for i in ids}

        def fetch(conn: _Conn) -> dict[str, str]:
            scope = self._scope(conn)
            if scope is None:
                return {}
            rows = conn.execute(
                sql.SQL(
                    "SELECT {id}::text, {m} ->> %s FROM {t} WHERE {id} = ANY(%s::{typ}[]) AND {scope} "
                    "AND jsonb_typeof({m} -> %s) = 'string'"
                ).format(
                    id=sql.Identifier(record.id),
                    m=self._metadata(),
                    t=self._table(),
                    typ=sql.SQL(record.id_type),
                    scope=scope,
                ),
                (CONTENT_HASH_KEY, list(chunks), CONTENT_HASH_KEY),
            ).fetchall()
            return {chunks[i]: h for i, h in rows if h is not None and i in chunks}

        return self._run("fetch_hashes", fetch)

    def set_content_hashes(self, values: Mapping[str, str]) -> int:
        """Set the ``e5_content_hash`` of stored rows (``{chunk id: value}``) in their metadata
        column, in ``_node_content`` too in LlamaIndex's layout (:func:`with_content_hash`);
        the rest of each row is untouched. One transaction per call; returns the rows changed."""
        from psycopg import sql
        from psycopg.types.json import Jsonb

        record = self._record
        wanted = {self._row_id(chunk): value for chunk, value in values.items()}
        if not wanted:
            return 0

        def apply(conn: _Conn) -> int:
            scope = self._scope(conn)
            columns = self._columns(conn)
            if scope is None or columns is None:
                return 0
            names = {
                "id": sql.Identifier(record.id),
                "m": sql.Identifier(record.metadata),
                "t": self._table(),
                "typ": sql.SQL(record.id_type),
                "scope": scope,
                "mtype": sql.SQL(columns.get(record.metadata, ("jsonb", -1))[0]),
            }
            with conn.transaction():
                found = conn.execute(
                    sql.SQL(
                        "SELECT {id}::text, {m}::jsonb FROM {t} WHERE {id} = ANY(%s::{typ}[]) AND {scope} "
                        "AND jsonb_typeof({m}::jsonb -> %s) = 'string' FOR UPDATE"
                    ).format(**names),
                    (list(wanted), CONTENT_HASH_KEY),
                ).fetchall()
                changed = [
                    (row_id, Jsonb(with_content_hash(metadata, wanted[row_id])))
                    for row_id, metadata in found
                    if row_id in wanted and metadata.get(CONTENT_HASH_KEY) != wanted[row_id]
                ]
                if changed:
                    conn.execute(
                        sql.SQL(
                            "UPDATE {t} SET {m} = u.m::{mtype} FROM unnest(%s::text[], %s::jsonb[]) AS u(id, m) "
                            "WHERE {t}.{id} = u.id::{typ} AND {scope}"
                        ).format(**names),
                        ([row_id for row_id, _ in changed], [value for _, value in changed]),
                    )
            return len(changed)

        return self._run("set_content_hashes", apply)

    def upsert(self, records: Sequence[Record]) -> None:
        """COPY the batch into a staging table and merge it into the collection's table, in
        one transaction (see the module docs). In the e5 layout a batch is first COPYed
        straight into the table, in a savepoint (a first run's batches are new rows, and COPY
        is about twice as fast as staging and merging them); once a batch meets a stored row,
        that COPY is undone and this sink stages and merges from then on."""
        import psycopg
        from psycopg import sql
        from psycopg.types.json import Jsonb

        layout, record = self.layout, self._record
        latest = last_per_id(records)  # ON CONFLICT cannot update one row twice
        if not latest:
            return
        rows = [
            (
                self._row_id(r.id),
                r.text,
                Jsonb(layout.metadata(r, remove_text=True)),
                np.asarray(r.embedding, dtype=np.float32).ravel(),  # a wrong size: Postgres names both
            )
            for r in latest
        ]
        stage = sql.Identifier("pg_temp", _STAGE)

        def copy_into(cur: psycopg.Cursor[TupleRow], table: sql.Composable) -> None:
            copy_sql = sql.SQL(
                "COPY {} (id, text, metadata, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ).format(table)
            with cur.copy(copy_sql) as copy:
                copy.set_types(["text", "text", "jsonb", "vector"])
                for row in rows:
                    copy.write_row(row)

        def load(conn: _Conn) -> None:
            columns = self._columns(conn)
            scope = self._scope_of(conn, columns)
            if scope is None or columns is None:
                named = record.named.format(collection=self.collection, layout=layout.describe())
                raise StoreError(f"{named} does not exist at {self.uri}; call ensure_collection(dim) first")
            with conn.transaction(), conn.cursor() as cur:
                if record.direct_copy and self._copy_direct:
                    try:
                        with conn.transaction():  # a savepoint: a stored row undoes only this COPY
                            copy_into(cur, self._table())
                        return
                    except psycopg.errors.UniqueViolation:
                        self._copy_direct = False
                        _log.debug("%r holds rows of this batch: merging from now on", self.collection)
                merge = self._merge(conn, latest, stage, columns.get(record.metadata, ("json", -1))[0])
                cur.execute(
                    sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
                        sql.Identifier(_STAGE), sql.SQL(record.stage).format(table=self._table())
                    )
                )
                copy_into(cur, stage)
                for statement, params in merge:
                    cur.execute(statement, params)

        self._run("upsert", load)
        _log.debug("upserted %d rows into %r at %s", len(rows), self.collection, self.uri)

    def _merge(
        self, conn: _Conn, latest: Sequence[Record], stage: sql.Identifier, metadata_type: str
    ) -> list[_Statement]:
        """The statements merging the staged rows into the collection's table: ``INSERT ...
        ON CONFLICT`` on the id (scoped to the collection in a shared table), or, without a
        unique id, delete and insert a node's rows under an advisory lock. The metadata goes
        in as the column's type (``json`` or ``jsonb``); with ``metadata_columns`` each of
        them gets the metadata field of its name, which then stays out of the JSON, as
        LangChain's ``PGVectorStore.add_texts`` writes (e5's own keys stay in it: they are how
        e5 finds its rows)."""
        from psycopg import sql

        record = self._record
        table = self._table()
        columns = self._metadata_columns(conn)
        for column in columns:
            if not column.required or reserved_metadata_key(column.name):
                continue
            for r in latest:
                if r.metadata.get(column.name) is None:
                    raise SchemaMismatchError(
                        f"chunk {r.id!r} has no {column.name!r} field, and column {column.name!r} of "
                        f"table {self.collection!r} at {self.uri} is NOT NULL (one of the metadata_columns "
                        f"of LangChain's PGVectorStore); nothing of this batch was written. Give every "
                        f"record a {column.name!r} field, or make the column nullable"
                    )
        moved = [c.name for c in columns if not reserved_metadata_key(c.name)]
        metadata = sql.SQL("(metadata - %s::text[])::{}").format(
            sql.SQL("json" if metadata_type == "json" else "jsonb")
        )
        id_, text, meta = (sql.Identifier(c) for c in (record.id, record.text, record.metadata))
        if not record.unique_id:  # writers of one table take turns to delete and insert
            return [
                (
                    sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"),
                    (f"e5:{record.table_of(self.collection)}",),
                ),
                (
                    sql.SQL("DELETE FROM {t} WHERE {id} IN (SELECT id FROM {s})").format(
                        t=table, id=id_, s=stage
                    ),
                    (),
                ),
                (
                    sql.SQL(
                        "INSERT INTO {t} ({text}, {meta}, {id}, embedding) "
                        "SELECT text, {metadata}, id::{typ}, embedding FROM {s}"
                    ).format(
                        t=table,
                        s=stage,
                        text=text,
                        meta=meta,
                        id=id_,
                        metadata=metadata,
                        typ=sql.SQL(record.id_type),
                    ),
                    (moved,),
                ),
            ]
        names = [sql.Identifier(c.name) for c in columns]
        values = [c.value() for c in columns]
        params: tuple[object, ...] = (moved,)
        guard: sql.Composable = sql.SQL("")
        if record.registry is not None:  # a shared table: the row's collection, never another's row
            scope = sql.Identifier(_SCOPE_COLUMN)
            names.append(scope)
            values.append(sql.SQL("%s::uuid"))
            params = (moved, self._registered(conn, record.registry))
            guard = sql.SQL(" WHERE {t}.{c} = EXCLUDED.{c}").format(t=table, c=scope)
        statement = sql.SQL(
            "INSERT INTO {t} ({id}, {text}, embedding, {meta}{names}) "
            "SELECT id::{typ}, text, embedding, {metadata}{values} FROM {s} "
            "ON CONFLICT ({id}) DO UPDATE SET {text} = EXCLUDED.{text}, embedding = EXCLUDED.embedding, "
            "{meta} = EXCLUDED.{meta}{sets}{guard}"
        ).format(
            t=table,
            s=stage,
            id=id_,
            text=text,
            meta=meta,
            typ=sql.SQL(record.id_type),
            metadata=metadata,
            names=sql.SQL("").join(sql.SQL(", {}").format(n) for n in names),
            values=sql.SQL("").join(sql.SQL(", {}").format(v) for v in values),
            sets=sql.SQL("").join(sql.SQL(", {n} = EXCLUDED.{n}").format(n=n) for n in names[: len(columns)]),
            guard=guard,
        )
        return [(statement, params)]

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` nearest rows by cosine similarity, best first (see the module docs)."""
        from psycopg import sql

        query = np.asarray(vector, dtype=np.float32).ravel()
        layout = self.layout  # resolved before the retry loop

        def run(conn: _Conn) -> list[Hit]:
            dim = self._dim or self._dim_of(conn)
            scope = self._scope(conn)
            if dim is None or scope is None or k < 1:
                return []
            with conn.transaction(), conn.cursor() as cur:
                if dim > HNSW_MAX_DIM and self._bit_index_exists(conn):
                    candidates = min(max(self.candidate_factor * k, self.min_candidates, k), _MAX_EF_SEARCH)
                    cur.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(candidates)))
                    cur.execute(self._bits_query(dim, scope, conn), {"q": query, "n": candidates, "k": k})
                else:
                    ef_search = min(max(k, 40), _MAX_EF_SEARCH)
                    cur.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef_search)))
                    cur.execute(
                        sql.SQL(
                            "SELECT {cols}, 1 - (embedding <=> %(q)s) FROM {table} WHERE {scope} "
                            "ORDER BY embedding <=> %(q)s LIMIT %(k)s"
                        ).format(cols=self._hit_columns(conn), table=self._table(), scope=scope),
                        {"q": query, "k": k},
                    )
                rows = cur.fetchall()
            return [layout.hit(i, float(s), t, m) for i, t, m, s in rows]

        return self._run("search", run)

    def _hit_columns(self, conn: _Conn) -> sql.Composed:
        """The row id, text and metadata of a hit; with ``metadata_columns``, as
        ``PGVectorStore`` reads them: the JSON, then each metadata column's value."""
        from psycopg import sql

        record = self._record
        metadata: sql.Composable = sql.Identifier(record.metadata)
        columns = self._metadata_columns(conn)
        if columns:
            pairs = sql.SQL(", ").join(
                sql.SQL("{}, {}").format(sql.Literal(c.name), sql.Identifier(c.name)) for c in columns
            )
            metadata = sql.SQL(
                "(coalesce({}::jsonb, '{{}}') || jsonb_strip_nulls(jsonb_build_object({})))"
            ).format(metadata, pairs)
        return sql.SQL("{}::text, {}, {}").format(
            sql.Identifier(record.id), sql.Identifier(record.text), metadata
        )

    def _bits_query(
        self, dim: int, scope: sql.Composable | None = None, conn: _Conn | None = None
    ) -> sql.Composed:
        """``n`` candidates by Hamming distance (from the bit index) among ``scope``'s rows
        (default: all), re-ranked by ``<=>``."""
        from psycopg import sql

        return sql.SQL(
            "SELECT r, t, m, 1 - (embedding <=> %(q)s) FROM ("
            "SELECT {cols}, embedding FROM {table} WHERE {scope} "
            "ORDER BY binary_quantize(embedding)::bit({dim}) <~> binary_quantize(%(q)s) LIMIT %(n)s"
            ") AS candidates (r, t, m, embedding) ORDER BY embedding <=> %(q)s LIMIT %(k)s"
        ).format(
            cols=self._hit_columns(conn or self._connection()),
            table=self._table(),
            scope=sql.SQL("TRUE") if scope is None else scope,
            dim=sql.Literal(dim),
        )

    def _bit_index_exists(self, conn: _Conn) -> bool:
        if not self._has_bit_index:
            record = self._record
            row = conn.execute(
                "SELECT 1 FROM pg_indexes WHERE schemaname = coalesce(%s, current_schema()) "
                "AND tablename = %s AND indexname = %s",
                (record.schema, record.table_of(self.collection), self._own_index_name()),
            ).fetchone()
            self._has_bit_index = row is not None
        return self._has_bit_index

    def dimension(self) -> int | None:
        """The table's ``vector(dim)`` (``langchain-legacy``: that of the collection's rows);
        ``None`` if the table (collection) does not exist."""
        self._record  # noqa: B018  (resolved first: detection runs its own query)
        return self._run("dimension", self._dim_of)

    def count(self) -> int:
        """Number of the collection's rows; 0 if it does not exist."""
        from psycopg import sql

        self._record  # noqa: B018  (resolved first: detection runs its own query)

        def run(conn: _Conn) -> int:
            scope = self._scope(conn)
            if scope is None:
                return 0
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._table(), scope)
            ).fetchone()
            assert row is not None  # count(*) returns one row
            return int(row[0])

        return self._run("count", run)

    def scan(self, page_size: int = 1000) -> Iterator[list[tuple[str, str | None]]]:
        """Pages of ``(chunk id, document id)`` in the order of the table's key (keyset
        pagination); the chunk id is the row's own id in rows e5 did not write, the document
        id ``None`` (:func:`e5_document_id`)."""
        from psycopg import sql

        record = self._record
        m = self._metadata()
        chunk: sql.Composable = sql.SQL("{}::text").format(sql.Identifier(record.id))
        chunk_keys: tuple[str, ...] = ()
        if record.chunk_in_metadata:  # the chunk id e5 keeps in the metadata, else the row's own id
            chunk = sql.SQL(
                "CASE WHEN jsonb_typeof({m} -> %s) = 'string' THEN {m} ->> %s ELSE {c} END"
            ).format(m=m, c=chunk)
            chunk_keys = (CHUNK_ID_KEY, CHUNK_ID_KEY)
        # the document id only of rows e5 wrote (e5_document_id): a document_id without e5's
        # content hash is another writer's, e.g. a LangChain or LlamaIndex row, and reads as NULL
        ours = sql.SQL("jsonb_typeof({m} -> %s) = 'string' AND jsonb_typeof({m} -> %s) = 'string'").format(
            m=m
        )
        ours_keys: tuple[str, ...] = (CONTENT_HASH_KEY, DOCUMENT_ID_KEY)
        if record.none_document:  # LlamaIndex's placeholder "None" (a node without a ref doc) is no document
            ours += sql.SQL(" AND ({m} -> '_node_type' IS NULL OR {m} ->> %s <> 'None')").format(m=m)
            ours_keys += (DOCUMENT_ID_KEY,)
        keys = (*chunk_keys, *ours_keys, DOCUMENT_ID_KEY)
        key = sql.Identifier(record.key)
        last: object = None  # the key of the page's last row: a uuid, an integer or a string
        while True:

            def page(conn: _Conn, after: object = last) -> list[tuple[object, str, str | None]]:
                scope = self._scope(conn)
                if scope is None:
                    return []
                query = sql.SQL(
                    "SELECT {key} AS e5_key, {chunk}, CASE WHEN {ours} THEN {m} ->> %s END "
                    "FROM {t} WHERE {scope}{after} ORDER BY e5_key LIMIT %s"
                ).format(
                    key=key,
                    chunk=chunk,
                    ours=ours,
                    m=m,
                    t=self._table(),
                    scope=scope,
                    after=sql.SQL("") if after is None else sql.SQL(" AND {} > %s").format(key),
                )
                params = (*keys, page_size) if after is None else (*keys, after, page_size)
                return conn.execute(query, params).fetchall()

            rows = self._run("scan", page)
            if rows:
                yield [(row[1], row[2]) for row in rows]
            if len(rows) < page_size:
                return
            last = rows[-1][0]

    def delete(self, ids: Iterable[str]) -> None:
        """Delete the collection's rows by chunk id (missing ids are ignored)."""
        from psycopg import sql

        record = self._record
        wanted = [self._row_id(c) for c in ids]
        if not wanted:
            return

        def delete(conn: _Conn) -> None:
            scope = self._scope(conn)
            if scope is None:  # a missing collection has nothing to delete
                return
            conn.execute(
                sql.SQL("DELETE FROM {t} WHERE {id} = ANY(%s::{typ}[]) AND {scope}").format(
                    t=self._table(), id=sql.Identifier(record.id), typ=sql.SQL(record.id_type), scope=scope
                ),
                (wanted,),
            )

        self._run("delete", delete)

    def drop(self) -> None:
        """Drop the table and its indexes (no error if it does not exist); in a table that
        collections share (``langchain-legacy``): delete this collection's row in the table
        listing them (``langchain_pg_collection``; its rows cascade) and its index, leaving
        the shared tables and other collections."""
        from psycopg import sql

        record = self._record

        def drop(conn: _Conn) -> None:
            if record.registry is None:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table()))
                return
            if self._columns_of(conn, None, record.registry) is None:
                return
            with conn.transaction():
                conn.execute(
                    sql.SQL("DROP INDEX IF EXISTS {}").format(self._qualified(None, self._own_index_name()))
                )
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE name = %s").format(self._qualified(None, record.registry)),
                    (self.collection,),
                )

        self._run("drop", drop)
        self._dim = None
        self._has_bit_index = False
        self._defer_index = self._index_pending = False
        self._copy_direct = True
        self.forget_layout()

    # -- layouts -----------------------------------------------------------------------------

    def detect_layout(self) -> str | None:
        """The layout of the existing collection, from the catalog: the first of
        :data:`_PG_LAYOUTS` whose table exists with its ``detect`` columns (and, where
        collections share a table, a row ``<collection>`` in the table listing them): table
        ``<collection>`` with e5's columns (``e5``) or with ``langchain_id`` (``langchain``),
        a row ``<collection>`` in ``langchain_pg_collection`` (``langchain-legacy``), table
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
        for record in _PG_LAYOUTS.values():
            table = record.table_of(self.collection)
            if len(table.encode()) > _MAX_IDENTIFIER_BYTES:
                continue
            columns = self._columns_of(conn, record.schema, table)
            if columns is None or any(c not in columns for c in record.detect):
                continue
            if record.registry is not None and self._registered(conn, record.registry) is None:
                continue
            found.append(record.name)
        return found

    def close(self) -> None:
        """Close the connection. Safe to call twice. Warns when this sink created its table
        for a bulk load (:meth:`begin_bulk_load`) and ``finalize`` did not run: the table has
        no HNSW index until a later run's ``finalize``."""
        if self._index_pending:
            self._index_pending = False
            _log.warning(
                "pgvector %s %r at %s has no HNSW index yet: the run that created it ended before "
                "finalize(), so searches scan every row until a run ends (e5 ingest builds it at its "
                "end), or until PGVectorSink.finalize() is called",
                self._record.noun,
                self.collection,
                self.uri,
            )
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
