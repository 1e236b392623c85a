"""pgvector layouts are data: every PGVectorSink method reads the layout's record.

A record with other table and column names, a ``json`` metadata column and no HNSW index is
followed by every method (create, write, read, search, scan, delete, drop) without a line of
the sink changing: adding a pgvector layout is one record.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pytest

from e5_integrations.sinks import CONTENT_HASH_KEY, DOCUMENT_ID_KEY, get_layout, layout_names
from tests.stores._common import DIM, SinkFactory, records

if TYPE_CHECKING:
    from e5_integrations.sinks.pgvector import PGVectorSink, _Names, _Statement

pytestmark = pytest.mark.integration


def _toy_ddl(names: _Names, dim: int) -> list[_Statement]:
    from psycopg import sql

    table = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (doc_key text PRIMARY KEY, body text NOT NULL, attrs json, "
        "embedding vector({}) NOT NULL)"
    ).format(names.qualified, sql.Literal(dim))
    return [(table, ())]


def _columns(sink: PGVectorSink, table: str) -> dict[str, str]:
    rows = (
        sink._connection()
        .execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
        .fetchall()
    )
    return {str(name): str(typ) for name, typ in rows}


def test_a_new_layout_is_one_record(
    monkeypatch: pytest.MonkeyPatch, pg_sink: SinkFactory[PGVectorSink]
) -> None:
    from e5_integrations.sinks import pgvector

    e5 = pgvector._PG_LAYOUTS["e5"]
    toy = dataclasses.replace(
        e5,
        table="toy_{lower}",
        id="doc_key",
        text="body",
        metadata="attrs",
        key="doc_key",
        detect=("doc_key", "body", "attrs", "embedding"),
        ddl=_toy_ddl,
        stage="id text, text text, metadata jsonb, embedding vector",
        vector_index=False,
    )
    monkeypatch.setitem(pgvector._PG_LAYOUTS, "e5", toy)  # the sink's code is unchanged
    sink = pg_sink()
    table = f"toy_{sink.collection.lower()}"

    sink.ensure_collection(DIM)
    assert _columns(sink, table) == {
        "doc_key": "text",
        "body": "text",
        "attrs": "json",
        "embedding": "USER-DEFINED",
    }
    assert _columns(sink, sink.collection) == {}  # nothing in e5's own table name
    batch = [
        dataclasses.replace(r, metadata={**r.metadata, DOCUMENT_ID_KEY: f"doc{i % 2}"})
        for i, r in enumerate(records(5))
    ]
    sink.upsert(batch)
    sink.upsert(batch[:2])  # a re-write merges by id
    assert sink.count() == 5
    assert sink.dimension() == DIM
    assert sink.fetch_hashes([r.id for r in batch] + ["absent#0"]) == {
        r.id: f"h{i}" for i, r in enumerate(batch)
    }
    hits = sink.search(np.asarray(batch[3].embedding), 2)
    assert hits[0].id == batch[3].id and hits[0].text == "text 3"
    assert hits[0].metadata[CONTENT_HASH_KEY] == "h3" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    pages = list(sink.scan(page_size=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(row for page in pages for row in page) == sorted(
        (r.id, r.metadata[DOCUMENT_ID_KEY]) for r in batch
    )
    stored = sink._connection().execute(
        f'SELECT attrs::text FROM "{table}" WHERE doc_key = %s', (batch[0].id,)
    )
    assert '"e5_content_hash": "h0"' in stored.fetchone()[0]  # type: ignore[index]

    sink.delete([batch[0].id, "absent#0"])
    assert sink.count() == 4
    sink.finalize()  # no HNSW index in this record up to 2000 dims: only ANALYZE
    indexes = sink._connection().execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))
    assert [r[0] for r in indexes.fetchall()] == [f"{table}_pkey"]

    again = pg_sink(collection=sink.collection)  # a new sink finds the table by the record
    assert again.detect_layout() == "e5" and again.count() == 4
    sink.drop()
    assert _columns(sink, table) == {} and sink.count() == 0


def test_every_layout_is_a_record() -> None:
    from e5_integrations.sinks import pgvector

    assert pgvector.PGVectorSink.layouts == layout_names("pgvector")  # the registered ones
    assert set(pgvector._PG_LAYOUTS) == set(layout_names("pgvector"))  # each has its record
    assert all(name == record.name for name, record in pgvector._PG_LAYOUTS.items())
    # and each record's layout is the registered one (its row ids and codecs)
    assert all(get_layout(name, layout_names("pgvector")).name == name for name in pgvector._PG_LAYOUTS)
