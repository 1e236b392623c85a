"""pgvector in the langchain, langchain-legacy and llama-index layouts, with the frameworks'
real classes (issue 12).

- ``e5 ingest --layout ...`` writes what ``langchain_postgres.PGVectorStore`` (v2),
  ``langchain_postgres.PGVector`` (the older two-table store) and LlamaIndex's
  ``PGVectorStore`` read with their ordinary arguments (texts, top-level metadata, filters,
  cosine scores equal to ``e5 search``'s, ``delete_ref_doc``);
- a collection the framework class made is detected, written in its layout without
  ``--layout``, searched by ``e5 search``, and its app rows survive re-runs and ``--prune``;
- the README's pgvector snippets run as written.

The frameworks connect through SQLAlchemy (psycopg, psycopg2, asyncpg): their URLs are
derived from the test server's libpq DSN (a unix socket, passed as ``?host=``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest

from e5_integrations.ingest import CHUNK_ID_KEY
from e5_integrations.ingest._layout import uuid_id
from tests.frameworks._common import (
    APP_TEXTS,
    LANGS,
    QUERY,
    RECORD_3,
    assert_llama_index_finds_the_hits,
    corpus,
    e5_ingest,
    e5_ingest_status,
    e5_search,
    user_fields,
)
from tests.frameworks._readme import readme_snippet
from tests.stores._pg_server import pg_dsn  # noqa: F401  (the session's Postgres)

pytestmark = [
    pytest.mark.integration,
    # langchain_postgres.PGVector is deprecated in favour of PGVectorStore; it says so on init
    pytest.mark.filterwarnings("ignore:.*PGVector.*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::langchain_core._api.deprecation.LangChainPendingDeprecationWarning"),
]

LAYOUTS = ("langchain", "langchain-legacy", "llama-index")


def _store(uri: str) -> list[str]:
    return ["--uri", str(uri)]


def _ingest(model: Path, uri: str, collection: str, source: Path, *extra: str) -> dict[str, Any]:
    return e5_ingest(model, _store(uri), collection, source, *extra)


def _ingest_status(model: Path, uri: str, collection: str, source: Path, *extra: str) -> tuple[int, str, str]:
    return e5_ingest_status(model, _store(uri), collection, source, *extra)


def _search(model: Path, uri: str, collection: str, query: str = QUERY, k: int = 100) -> list[dict[str, Any]]:
    return e5_search(model, _store(uri), collection, query, k)


def _url(dsn: str, driver: str) -> str:
    """A SQLAlchemy URL (``postgresql+<driver>://``) for the libpq DSN ``dsn``."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    auth = quote(str(parts.get("user") or ""))
    if parts.get("password"):
        auth += ":" + quote(str(parts["password"]))
    host, port, db = (
        str(parts.get("host") or "localhost"),
        parts.get("port"),
        parts.get("dbname") or "postgres",
    )
    if host.startswith("/"):
        return f"postgresql+{driver}://{auth}@/{db}?host={quote(host)}" + (f"&port={port}" if port else "")
    return f"postgresql+{driver}://{auth}@{host}:{port or 5432}/{db}"


def _count(dsn: str, collection: str) -> int:
    from e5_integrations.sinks.pgvector import PGVectorSink

    with PGVectorSink(dsn, collection) as sink:
        return sink.count()


@contextlib.contextmanager
def _langchain_store(dsn: str, collection: str, embeddings: Any, legacy: bool) -> Iterator[Any]:
    """LangChain's store on ``collection``: ``PGVectorStore`` (v2) or the legacy ``PGVector``."""
    if legacy:
        from langchain_postgres import PGVector

        store = PGVector(embeddings, connection=_url(dsn, "psycopg"), collection_name=collection)
        try:
            yield store
        finally:
            assert store._engine is not None
            store._engine.dispose()
        return
    from langchain_postgres import PGEngine, PGVectorStore

    engine = PGEngine.from_connection_string(_url(dsn, "psycopg"))
    try:
        yield PGVectorStore.create_sync(engine, table_name=collection, embedding_service=embeddings)
    finally:
        engine._run_as_sync(engine.close())


def _llama_store(dsn: str, collection: str, dim: int) -> Any:
    from llama_index.vector_stores.postgres import PGVectorStore

    return PGVectorStore(
        connection_string=_url(dsn, "psycopg2"),
        async_connection_string=_url(dsn, "asyncpg"),
        table_name=collection,
        embed_dim=dim,
    )


# -- e5 ingest --layout ..., read by the framework classes ----------------------------------


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, pg_dsn: str) -> Iterator[Any]:  # noqa: F811
    """``layout -> (collection, e5 search hits of QUERY over the whole collection)``, ingested once."""
    source = corpus(tmp_path_factory.mktemp("pgvector-frameworks") / "corpus")
    made: dict[str, tuple[str, list[dict[str, Any]]]] = {}

    def get(layout: str) -> tuple[str, list[dict[str, Any]]]:
        if layout not in made:
            collection = f"kb_{layout.replace('-', '_')}"
            report = _ingest(tiny_model_dir, pg_dsn, collection, source, "--layout", layout)
            assert report["layout"] == layout and report["embedded"] == report["chunks"] > 25
            made[layout] = (collection, _search(tiny_model_dir, pg_dsn, collection))
        return made[layout]

    yield get


@pytest.mark.parametrize("layout", ["langchain", "langchain-legacy"])
def test_langchain_reads_an_e5_ingest(layout: str, ingested: Any, tiny_model_dir: Path, pg_dsn: str) -> None:  # noqa: F811
    from e5_integrations.langchain import E5MistralEmbeddings

    collection, hits = ingested(layout)
    assert all(h["metadata"]["lang"] in LANGS for h in hits)
    embeddings = E5MistralEmbeddings(model=str(tiny_model_dir))
    with _langchain_store(pg_dsn, collection, embeddings, legacy=layout == "langchain-legacy") as store:
        found = store.similarity_search_with_relevance_scores(QUERY, k=5)
        assert [d.metadata[CHUNK_ID_KEY] for d, _ in found] == [h["id"] for h in hits[:5]]
        for (doc, relevance), hit in zip(found, hits, strict=False):
            assert doc.page_content == hit["text"]
            assert relevance == pytest.approx(hit["score"], abs=1e-4)  # cosine: 1 - distance
            assert user_fields(doc.metadata) == user_fields(hit["metadata"]) and doc.metadata["lang"] in LANGS
            assert doc.metadata["document_id"] == hit["metadata"]["document_id"]
            if layout == "langchain":
                assert doc.id == uuid_id(hit["id"])
        assert [d.page_content for d in store.similarity_search(QUERY, k=5)] == [h["text"] for h in hits[:5]]
        filtered = store.similarity_search(QUERY, k=100, filter={"lang": {"$eq": "de"}})
        expected = [h["id"] for h in hits if h["metadata"]["lang"] == "de"]
        assert [d.metadata[CHUNK_ID_KEY] for d in filtered] == expected and len(expected) == 8


def test_llama_index_reads_an_e5_ingest_and_deletes_a_ref_doc(
    ingested: Any,
    tiny_model_dir: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.vector_stores import VectorStoreQuery

    from e5_integrations.llama_index import E5MistralEmbedding
    from e5_integrations.sinks.pgvector import PGVectorSink

    collection, hits = ingested("llama-index")
    embed_model = E5MistralEmbedding(model_name=str(tiny_model_dir))
    store = _llama_store(pg_dsn, collection, 64)
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
    assert_llama_index_finds_the_hits(index, hits)
    result = store.query(
        VectorStoreQuery(query_embedding=embed_model.get_query_embedding(QUERY), similarity_top_k=3)
    )
    assert result.ids == [uuid_id(h["id"]) for h in hits[:3]]

    with PGVectorSink(pg_dsn, collection) as sink:
        before = {chunk: document for page in sink.scan() for chunk, document in page}
        handbook = {c for c, d in before.items() if d is not None and "handbook" in d}
        assert len(handbook) > 2 and None not in before.values()
        [document] = {before[c] for c in handbook}
        assert document is not None
        index.delete_ref_doc(document)
        after = {chunk: document for page in sink.scan() for chunk, document in page}
        assert after == {c: d for c, d in before.items() if c not in handbook}
        assert sink.layout.name == "llama-index"
    asyncio.run(store.close())


# -- collections the framework classes made: e5 detects, searches and writes them ------------


def _make_app_rows(layout: str, dsn: str, collection: str, model: Path) -> list[dict[str, Any]]:
    """The app's own rows, added with the framework class; their metadata as e5 search reads it."""
    metadata = [{"lang": "en", "app": True, "n": i} for i in range(len(APP_TEXTS))]
    if layout == "llama-index":
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

        from e5_integrations.llama_index import E5MistralEmbedding

        vectors = E5MistralEmbedding(model_name=str(model)).get_text_embedding_batch(APP_TEXTS)
        nodes = [
            TextNode(
                text=text,
                metadata=meta,
                embedding=vector,
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"app-doc-{i}")},
            )
            for i, (text, meta, vector) in enumerate(zip(APP_TEXTS, metadata, vectors, strict=True))
        ]
        store = _llama_store(dsn, collection, 64)
        store.add(nodes)
        asyncio.run(store.close())
        return [{**m, "document_id": f"app-doc-{i}"} for i, m in enumerate(metadata)]
    from e5_integrations.langchain import E5MistralEmbeddings

    embeddings = E5MistralEmbeddings(model=str(model))
    if layout == "langchain":
        from langchain_postgres import PGEngine

        engine = PGEngine.from_connection_string(_url(dsn, "psycopg"))
        engine.init_vectorstore_table(collection, 64)
        engine._run_as_sync(engine.close())
    with _langchain_store(dsn, collection, embeddings, legacy=layout == "langchain-legacy") as store:
        store.add_texts(APP_TEXTS, metadatas=metadata)
    return metadata


def _framework_reads(layout: str, dsn: str, collection: str, model: Path) -> list[tuple[str, dict[str, Any]]]:
    """(text, metadata) of the nearest row to APP_TEXTS[2] and to RECORD_3, and the number of
    rows the framework finds for QUERY with k=100, read with the framework class."""
    if layout == "llama-index":
        from llama_index.core import QueryBundle, VectorStoreIndex

        from e5_integrations.llama_index import E5MistralEmbedding

        embed_model = E5MistralEmbedding(model_name=str(model))
        store = _llama_store(dsn, collection, 64)
        index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
        nodes = [
            index.as_retriever(similarity_top_k=1).retrieve(QueryBundle("", embedding=vector))[0].node
            for vector in embed_model.get_text_embedding_batch([APP_TEXTS[2], RECORD_3])
        ]
        everything = index.as_retriever(similarity_top_k=100).retrieve(QUERY)
        asyncio.run(store.close())
        return [(n.get_content(), dict(n.metadata)) for n in nodes] + [("", {"n": len(everything)})]
    from e5_integrations.langchain import E5MistralEmbeddings

    embeddings = E5MistralEmbeddings(model=str(model))
    with _langchain_store(dsn, collection, embeddings, legacy=layout == "langchain-legacy") as store:
        docs = [
            store.similarity_search_by_vector(vector, k=1)[0]
            for vector in embeddings.embed_documents([APP_TEXTS[2], RECORD_3])
        ]
        everything = store.similarity_search(QUERY, k=100)
    return [(d.page_content, dict(d.metadata)) for d in docs] + [("", {"n": len(everything)})]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_framework_made_collection_is_detected_searched_and_kept(
    layout: str,
    tmp_path: Path,
    tiny_model_dir: Path,
    encoder: Any,
    pg_dsn: str,  # noqa: F811
) -> None:
    collection = f"app_{layout.replace('-', '_')}"
    metadata = _make_app_rows(layout, pg_dsn, collection, tiny_model_dir)

    # e5 search: cosine scores, the app's texts and metadata (without the framework's keys)
    hits = _search(tiny_model_dir, pg_dsn, collection, APP_TEXTS[1])
    cosines = encoder.encode_documents(APP_TEXTS) @ encoder.encode_queries([APP_TEXTS[1]])[0]
    assert [h["text"] for h in hits] == [APP_TEXTS[i] for i in np.argsort(-cosines)]
    for hit in hits:
        i = APP_TEXTS.index(hit["text"])
        assert hit["score"] == pytest.approx(float(cosines[i]), abs=1e-4)
        assert hit["metadata"] == metadata[i]

    # e5 ingest without --layout writes the collection's; a re-run embeds 0; another layout: nothing
    source = corpus(tmp_path / "corpus")
    first = _ingest(tiny_model_dir, pg_dsn, collection, source)
    assert first["layout"] == layout and first["embedded"] == first["chunks"] > 25
    again = _ingest(tiny_model_dir, pg_dsn, collection, source)
    assert (again["layout"], again["embedded"], again["skipped_unchanged"]) == (layout, 0, first["chunks"])
    count = _count(pg_dsn, collection)
    assert count == len(APP_TEXTS) + first["chunks"]
    other = "llama-index" if layout != "llama-index" else "langchain"
    code, out, err = _ingest_status(tiny_model_dir, pg_dsn, collection, source, "--layout", other)
    assert code == 2 and out == ""  # LayoutMismatchError: a usage error
    assert f"in the {layout} layout" in err and f"--layout {other}" in err and "nothing was written" in err, (
        err
    )
    assert _count(pg_dsn, collection) == count

    # the framework class reads its own rows and e5's
    [(app_text, app_meta), (mine_text, mine_meta), (_, everything)] = _framework_reads(
        layout, pg_dsn, collection, tiny_model_dir
    )
    assert app_text == APP_TEXTS[2] and app_meta["app"] is True
    assert (mine_text, mine_meta["lang"]) == (RECORD_3, "en") and mine_meta[CHUNK_ID_KEY].endswith("rec-3#0")
    assert everything["n"] == len(APP_TEXTS) + first["chunks"]

    # --prune deletes the chunks of documents that left the sources, never the app's rows
    smaller = corpus(tmp_path / "smaller", n=20, handbook=False)
    report = _ingest(tiny_model_dir, pg_dsn, collection, smaller, "--prune")
    assert report["pruned"] == first["chunks"] - 20
    assert _count(pg_dsn, collection) == len(APP_TEXTS) + 20


def test_legacy_collections_share_the_tables_but_not_their_rows(
    tmp_path: Path,
    tiny_model_dir: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    """Two langchain-legacy collections of one corpus: their own rows each; dropping one keeps the other."""
    from e5_integrations.sinks.pgvector import PGVectorSink

    source = corpus(tmp_path / "corpus", n=6, handbook=False)
    for name in ("legacy_a", "legacy_b"):
        assert _ingest(tiny_model_dir, pg_dsn, name, source, "--layout", "langchain-legacy")["embedded"] == 6
    assert _count(pg_dsn, "legacy_a") == _count(pg_dsn, "legacy_b") == 6
    assert [h["id"] for h in _search(tiny_model_dir, pg_dsn, "legacy_a", k=3)] == [
        h["id"] for h in _search(tiny_model_dir, pg_dsn, "legacy_b", k=3)
    ]
    with PGVectorSink(pg_dsn, "legacy_a") as sink:
        assert sink.layout.name == "langchain-legacy"
        sink.drop()
    assert (_count(pg_dsn, "legacy_a"), _count(pg_dsn, "legacy_b")) == (0, 6)


# -- the README's snippets ------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_readme_snippet_runs(
    layout: str,
    tiny_model_dir: Path,
    pg_dsn: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = Path(__file__).resolve().parents[2] / "examples" / "docs"
    code = readme_snippet(f"pgvector:{layout}")
    assert code.startswith(
        "# e5 ingest ./docs --uri postgresql://user:password@localhost:5432/rag --collection kb_docs "
        f"--layout {layout}\n"
    )
    collection = f"kb_docs_{layout.replace('-', '_')}"
    report = _ingest(tiny_model_dir, pg_dsn, collection, docs, "--layout", layout)
    assert report["chunks"] > 3
    monkeypatch.setenv("E5_MODEL", str(tiny_model_dir))
    replaced = code.replace('"kb_docs"', repr(collection)).replace("embed_dim=4096", "embed_dim=64")
    for driver in ("psycopg", "psycopg2", "asyncpg"):
        replaced = replaced.replace(
            f'"postgresql+{driver}://user:password@localhost:5432/rag"', repr(_url(pg_dsn, driver))
        )
    assert "localhost" not in replaced.split("\n", 1)[1] and repr(collection) in replaced
    namespace: dict[str, Any] = {}
    exec(replaced, namespace)
    try:
        if layout == "llama-index":
            nodes = namespace["nodes"]
            assert len(nodes) == 3 and all(n.node.get_content() and n.node.metadata["source"] for n in nodes)
        else:
            found = namespace["docs"]
            assert len(found) == 3 and all(d.page_content and d.metadata["source"] for d in found)
    finally:
        if layout == "langchain":
            namespace["engine"]._run_as_sync(namespace["engine"].close())
        elif layout == "langchain-legacy":
            namespace["store"]._engine.dispose()
        else:
            asyncio.run(namespace["store"].close())


# -- PGVectorStore's metadata_columns (issue 24, item 7) -------------------------------------


@contextlib.contextmanager
def _store_with_columns(dsn: str, collection: str, model: Path, nullable: bool = True) -> Iterator[Any]:
    """``PGVectorStore`` made as its docs recommend for filtering: ``lang`` and ``n`` as columns."""
    from langchain_postgres import Column, PGEngine, PGVectorStore

    from e5_integrations.langchain import E5MistralEmbeddings

    engine = PGEngine.from_connection_string(_url(dsn, "psycopg"))
    try:
        engine.init_vectorstore_table(
            collection,
            64,
            metadata_columns=[Column("lang", "TEXT", nullable=nullable), Column("n", "INTEGER")],
        )
        yield PGVectorStore.create_sync(
            engine,
            table_name=collection,
            embedding_service=E5MistralEmbeddings(model=str(model)),
            metadata_columns=["lang", "n"],
        )
    finally:
        engine._run_as_sync(engine.close())


def test_metadata_columns_of_a_pgvectorstore_are_filled(
    tmp_path: Path,
    tiny_model_dir: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    """A filter on a metadata column finds e5's rows as it finds the app's: e5 fills the
    columns from the record's fields and keeps them out of ``langchain_metadata``, as
    ``PGVectorStore.add_texts`` does."""
    collection = "app_metadata_columns"
    source = corpus(tmp_path / "corpus")
    with _store_with_columns(pg_dsn, collection, tiny_model_dir) as store:
        store.add_texts(APP_TEXTS, metadatas=[{"lang": "de", "n": i, "app": True} for i in range(3)])
        report = _ingest(tiny_model_dir, pg_dsn, collection, source)
        assert report["layout"] == "langchain" and report["embedded"] == report["chunks"] > 25
        german = store.similarity_search(QUERY, k=100, filter={"lang": "de"})
        e5_german = [d for d in german if not d.metadata.get("app")]
        assert len(german) - len(e5_german) == len(APP_TEXTS)
        assert len(e5_german) == 8 and all(d.metadata["lang"] == "de" for d in e5_german)
        everything = store.similarity_search(QUERY, k=100)
        assert len(everything) == len(APP_TEXTS) + report["chunks"]
        # the metadata reads back as the record had it (a column and the JSON agree)
        handbook = [d for d in everything if d.metadata.get(CHUNK_ID_KEY, "").endswith("handbook#0")]
        assert handbook and handbook[0].metadata["lang"] == "en" and handbook[0].metadata["topic"] == "manual"
    # e5 search sees the column values too, and a re-run embeds nothing
    hits = _search(tiny_model_dir, pg_dsn, collection)
    assert sum(h["metadata"].get("lang") == "de" for h in hits) == 8 + len(APP_TEXTS)
    again = _ingest(tiny_model_dir, pg_dsn, collection, source)
    assert again["embedded"] == 0 and again["skipped_unchanged"] == report["chunks"]


def test_a_not_null_metadata_column_the_records_cannot_fill_is_refused_before_writing(
    tmp_path: Path,
    tiny_model_dir: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    collection = "app_not_null_column"
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.jsonl").write_text(
        '{"id": "with", "text": "has a language", "lang": "en"}\n{"id": "without", "text": "has none"}\n',
        encoding="utf-8",
    )
    with _store_with_columns(pg_dsn, collection, tiny_model_dir, nullable=False):
        pass
    code, out, err = _ingest_status(tiny_model_dir, pg_dsn, collection, folder)
    assert code != 0 and out == ""
    assert "'lang'" in err and "NOT NULL" in err and "without" in err, err
    assert _count(pg_dsn, collection) == 0
    # under --on-error skip the record that cannot fill it is skipped and reported, the rest written
    report = _ingest(tiny_model_dir, pg_dsn, collection, folder, "--on-error", "skip")
    assert report["embedded"] == 1 and report["skipped_invalid"] == 1
    assert _count(pg_dsn, collection) == 1
