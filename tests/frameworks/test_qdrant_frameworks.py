"""Qdrant in the langchain and llama-index layouts, with the frameworks' real classes (issue 12).

- ``e5 ingest --layout langchain|llama-index`` writes what langchain-qdrant's and llama-index's
  ``QdrantVectorStore`` read with their ordinary arguments (texts, top-level metadata, filters,
  cosine scores equal to ``e5 search``'s, ``delete_ref_doc``);
- a collection the framework class made is detected, written in its layout without
  ``--layout``, searched by ``e5 search``, and its app rows survive re-runs and ``--prune``;
- the README's Qdrant snippets run as written.

Local mode: one client per folder, so e5 (the CLI closes its sink) and the framework class
open the folder in turn; in ``:memory:`` the framework class gets the sink's own client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

pytestmark = [
    pytest.mark.integration,
    # llama-index's QdrantVectorStore makes a payload index on doc_id; local mode warns it does nothing
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant"),
]


def _store(uri: Path) -> list[str]:
    return ["--store", "qdrant", "--uri", str(uri)]


def _ingest(model: Path, uri: Path, collection: str, source: Path, *extra: str) -> dict[str, Any]:
    return e5_ingest(model, _store(uri), collection, source, *extra)


def _ingest_status(
    model: Path, uri: Path, collection: str, source: Path, *extra: str
) -> tuple[int, str, str]:
    return e5_ingest_status(model, _store(uri), collection, source, *extra)


def _search(
    model: Path, uri: Path, collection: str, query: str = QUERY, k: int = 100
) -> list[dict[str, Any]]:
    return e5_search(model, _store(uri), collection, query, k)


def _count(uri: Path, collection: str) -> int:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(uri))
    try:
        return int(client.count(collection, exact=True).count)
    finally:
        client.close()


@contextlib.contextmanager
def _client(uri: Path) -> Iterator[Any]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(uri))
    try:
        yield client
    finally:
        client.close()


# -- e5 ingest --layout ..., read by the framework classes ----------------------------------


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Any]:
    """``layout -> (folder, e5 search hits of QUERY over the whole collection)``, ingested once."""
    root = tmp_path_factory.mktemp("qdrant-frameworks")
    source = corpus(root / "corpus")
    made: dict[str, tuple[Path, list[dict[str, Any]]]] = {}

    def get(layout: str) -> tuple[Path, list[dict[str, Any]]]:
        if layout not in made:
            uri = root / layout
            report = _ingest(tiny_model_dir, uri, "kb", source, "--layout", layout)
            assert report["layout"] == layout and report["embedded"] == report["chunks"] > 25
            made[layout] = (uri, _search(tiny_model_dir, uri, "kb"))
        return made[layout]

    yield get


def test_langchain_reads_an_e5_ingest(ingested: Any, tiny_model_dir: Path) -> None:
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import models

    from e5_integrations.langchain import E5MistralEmbeddings

    uri, hits = ingested("langchain")
    assert all(h["metadata"]["lang"] in LANGS for h in hits)
    with _client(uri) as client:
        store = QdrantVectorStore(
            client=client, collection_name="kb", embedding=E5MistralEmbeddings(model=str(tiny_model_dir))
        )
        found = store.similarity_search_with_relevance_scores(QUERY, k=5)
        assert [d.metadata[CHUNK_ID_KEY] for d, _ in found] == [h["id"] for h in hits[:5]]
        for (doc, relevance), hit in zip(found, hits, strict=False):
            assert doc.page_content == hit["text"]
            assert relevance == pytest.approx(
                (hit["score"] + 1) / 2, abs=1e-4
            )  # langchain's cosine relevance
            # the user's fields at the top level; the reader adds its own _id and _collection_name
            assert user_fields(doc.metadata) == user_fields(hit["metadata"]) and doc.metadata["lang"] in LANGS
            assert (doc.metadata["_id"], doc.metadata["_collection_name"]) == (uuid_id(hit["id"]), "kb")
        assert [d.page_content for d in store.similarity_search(QUERY, k=5)] == [h["text"] for h in hits[:5]]

        german = models.Filter(
            must=[models.FieldCondition(key="metadata.lang", match=models.MatchValue(value="de"))]
        )
        filtered = store.similarity_search(QUERY, k=100, filter=german)
        expected = [h["id"] for h in hits if h["metadata"]["lang"] == "de"]
        assert [d.metadata[CHUNK_ID_KEY] for d in filtered] == expected and len(expected) == 8
        [by_id] = store.get_by_ids([uuid_id(hits[0]["id"])])
        assert by_id.page_content == hits[0]["text"]


def test_llama_index_reads_an_e5_ingest(ingested: Any, tiny_model_dir: Path) -> None:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.vector_stores import VectorStoreQuery
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from e5_integrations.llama_index import E5MistralEmbedding

    uri, hits = ingested("llama-index")
    embed_model = E5MistralEmbedding(model_name=str(tiny_model_dir))
    with _client(uri) as client:
        store = QdrantVectorStore(collection_name="kb", client=client)
        index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
        assert_llama_index_finds_the_hits(index, hits)
        query = VectorStoreQuery(query_embedding=embed_model.get_query_embedding(QUERY), similarity_top_k=3)
        result = store.query(query)
        assert result.ids == [uuid_id(h["id"]) for h in hits[:3]]


def test_llama_index_delete_ref_doc_deletes_exactly_that_documents_chunks(
    tmp_path: Path, tiny_model_dir: Path, encoder: Any
) -> None:
    """In ``:memory:``: e5's Python ingest and LlamaIndex share the sink's client."""
    from llama_index.core import VectorStoreIndex
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from e5_integrations.ingest import ingest
    from e5_integrations.llama_index import E5MistralEmbedding
    from e5_integrations.sinks.qdrant import QdrantSink

    with QdrantSink(":memory:", "kb", layout="llama-index") as sink:
        report = ingest(corpus(tmp_path), sink, encoder, chunk_tokens=32)
        assert report.layout == "llama-index"
        before = {chunk: document for page in sink.scan() for chunk, document in page}
        handbook = {
            c for c, d in before.items() if d is not None and c.startswith(f"{d}#") and "handbook" in d
        }
        assert len(handbook) > 2 and None not in before.values()
        [document] = {before[c] for c in handbook}
        assert document is not None
        store = QdrantVectorStore(collection_name="kb", client=sink._client)
        embed_model = E5MistralEmbedding(model_name=str(tiny_model_dir), device="cpu", dtype="fp32")
        VectorStoreIndex.from_vector_store(store, embed_model=embed_model).delete_ref_doc(document)
        after = {chunk: document for page in sink.scan() for chunk, document in page}
        assert after == {c: d for c, d in before.items() if c not in handbook}
        assert sink.layout.name == "llama-index" and sink.count() == len(before) - len(handbook)


def test_langchain_reads_an_in_memory_ingest_through_the_sinks_client(
    tmp_path: Path, tiny_model_dir: Path, encoder: Any
) -> None:
    from langchain_qdrant import QdrantVectorStore

    from e5_integrations.ingest import ingest
    from e5_integrations.langchain import E5MistralEmbeddings
    from e5_integrations.sinks.qdrant import QdrantSink

    with QdrantSink(":memory:", "kb", layout="langchain") as sink:
        ingest(corpus(tmp_path, n=6, handbook=False), sink, encoder, chunk_tokens=32)
        query = encoder.encode_queries([QUERY])[0]
        hits = sink.search(query, 3)
        embeddings = E5MistralEmbeddings(model=str(tiny_model_dir), device="cpu", dtype="fp32")
        store = QdrantVectorStore(client=sink._client, collection_name="kb", embedding=embeddings)
        found = store.similarity_search_with_score(QUERY, k=3)
        assert [(d.metadata[CHUNK_ID_KEY], d.page_content) for d, _ in found] == [
            (h.id, h.text) for h in hits
        ]
        np.testing.assert_allclose([s for _, s in found], [h.score for h in hits], atol=1e-4)


# -- collections the framework classes made: e5 detects, searches and writes them ------------


def _check_e5_search_reads_app_rows(
    model: Path, uri: Path, encoder: Any, metadata: list[dict[str, Any]]
) -> None:
    hits = _search(model, uri, "app", APP_TEXTS[1])
    cosines = encoder.encode_documents(APP_TEXTS) @ encoder.encode_queries([APP_TEXTS[1]])[0]
    assert [h["text"] for h in hits] == [APP_TEXTS[i] for i in np.argsort(-cosines)]
    for hit in hits:
        i = APP_TEXTS.index(hit["text"])
        assert hit["score"] == pytest.approx(float(cosines[i]), abs=1e-4)
        assert hit["metadata"] == metadata[i]


def _check_the_collection_takes_e5_runs(
    model: Path, uri: Path, source: Path, layout: str, other: str
) -> dict[str, Any]:
    """e5 ingest without --layout writes ``layout``; a re-run embeds 0; ``--layout other`` writes nothing."""
    first = _ingest(model, uri, "app", source)
    assert first["layout"] == layout and first["embedded"] == first["chunks"] > 25
    again = _ingest(model, uri, "app", source)
    assert (again["layout"], again["embedded"], again["skipped_unchanged"]) == (layout, 0, first["chunks"])
    count = _count(uri, "app")
    assert count == len(APP_TEXTS) + first["chunks"]
    code, out, err = _ingest_status(model, uri, "app", source, "--layout", other)
    assert code == 2 and out == ""  # LayoutMismatchError: a usage error
    assert f"in the {layout} layout" in err and f"--layout {other}" in err and "nothing was written" in err, (
        err
    )
    assert _count(uri, "app") == count
    return first


def _check_prune_keeps_app_rows(model: Path, uri: Path, tmp_path: Path, first: dict[str, Any]) -> None:
    smaller = corpus(tmp_path / "smaller", n=20, handbook=False)
    report = _ingest(model, uri, "app", smaller, "--prune")
    assert report["pruned"] == first["chunks"] - 20  # the chunks of rec-20 .. rec-23 and the handbook
    assert _count(uri, "app") == len(APP_TEXTS) + 20


def test_a_langchain_made_collection_is_detected_searched_and_kept(
    tmp_path: Path, tiny_model_dir: Path, encoder: Any
) -> None:
    from langchain_qdrant import QdrantVectorStore

    from e5_integrations.langchain import E5MistralEmbeddings

    uri = tmp_path / "qdrant"
    embeddings = E5MistralEmbeddings(model=str(tiny_model_dir))
    metadata = [{"lang": "en", "app": True, "n": i} for i in range(len(APP_TEXTS))]
    made = QdrantVectorStore.from_texts(
        APP_TEXTS, embeddings, metadatas=metadata, path=str(uri), collection_name="app"
    )
    made.client.close()
    _check_e5_search_reads_app_rows(tiny_model_dir, uri, encoder, metadata)

    source = corpus(tmp_path / "corpus")
    first = _check_the_collection_takes_e5_runs(tiny_model_dir, uri, source, "langchain", "llama-index")
    with _client(uri) as client:
        store = QdrantVectorStore(client=client, collection_name="app", embedding=embeddings)
        [app, mine] = [
            store.similarity_search_by_vector(vector, k=1)[0]
            for vector in embeddings.embed_documents([APP_TEXTS[2], RECORD_3])
        ]
        assert app.page_content == APP_TEXTS[2] and app.metadata["app"] is True
        assert (mine.page_content, mine.metadata["lang"]) == (RECORD_3, "en")
        assert mine.metadata[CHUNK_ID_KEY].endswith("rec-3#0")
        assert len(store.similarity_search(QUERY, k=100)) == len(APP_TEXTS) + first["chunks"]
    _check_prune_keeps_app_rows(tiny_model_dir, uri, tmp_path, first)


def test_a_llama_index_made_collection_is_detected_searched_and_kept(
    tmp_path: Path, tiny_model_dir: Path, encoder: Any
) -> None:
    from llama_index.core import QueryBundle, VectorStoreIndex
    from llama_index.core.schema import BaseNode, NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from e5_integrations.llama_index import E5MistralEmbedding

    uri = tmp_path / "qdrant"
    embed_model = E5MistralEmbedding(model_name=str(tiny_model_dir))
    metadata = [{"lang": "en", "app": True, "n": i} for i in range(len(APP_TEXTS))]
    vectors = embed_model.get_text_embedding_batch(APP_TEXTS)
    nodes: list[BaseNode] = [
        TextNode(
            text=text,
            metadata=meta,
            embedding=vector,
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"app-doc-{i}")},
        )
        for i, (text, meta, vector) in enumerate(zip(APP_TEXTS, metadata, vectors, strict=True))
    ]
    with _client(uri) as client:
        QdrantVectorStore(collection_name="app", client=client).add(nodes)
    # e5 search: the node's text, its metadata without LlamaIndex's keys; the ref doc id stays
    expected = [{**m, "document_id": f"app-doc-{i}"} for i, m in enumerate(metadata)]
    _check_e5_search_reads_app_rows(tiny_model_dir, uri, encoder, expected)

    source = corpus(tmp_path / "corpus")
    first = _check_the_collection_takes_e5_runs(tiny_model_dir, uri, source, "llama-index", "langchain")
    with _client(uri) as client:
        index = VectorStoreIndex.from_vector_store(
            QdrantVectorStore(collection_name="app", client=client), embed_model=embed_model
        )
        [app, mine] = [
            index.as_retriever(similarity_top_k=1).retrieve(QueryBundle("", embedding=vector))[0].node
            for vector in embed_model.get_text_embedding_batch([APP_TEXTS[2], RECORD_3])
        ]
        assert app.get_content() == APP_TEXTS[2] and app.metadata["app"] is True
        assert (mine.get_content(), mine.metadata["lang"]) == (RECORD_3, "en")
        assert mine.metadata[CHUNK_ID_KEY].endswith("rec-3#0")
        everything = index.as_retriever(similarity_top_k=100).retrieve(QUERY)
        assert len(everything) == len(APP_TEXTS) + first["chunks"]
    _check_prune_keeps_app_rows(tiny_model_dir, uri, tmp_path, first)


# -- the README's snippets ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["langchain", "llama-index"])
def test_the_readme_snippet_runs(
    layout: str, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = Path(__file__).resolve().parents[2] / "examples" / "docs"
    uri = tmp_path / "qdrant"
    code = readme_snippet(f"qdrant:{layout}")
    assert code.startswith(
        f"# e5 ingest ./docs --store qdrant --uri http://localhost:6333 --collection kb_docs --layout {layout}\n"
    )
    report = _ingest(tiny_model_dir, uri, "kb_docs", docs, "--layout", layout)
    assert report["chunks"] > 3
    monkeypatch.setenv("E5_MODEL", str(tiny_model_dir))
    served = 'url="http://localhost:6333"'
    assert served in code
    namespace: dict[str, Any] = {}
    exec(code.replace(served, f"path={str(uri)!r}"), namespace)
    try:
        if layout == "langchain":
            docs_found = namespace["docs"]
            assert len(docs_found) == 3 and all(d.page_content and d.metadata["source"] for d in docs_found)
        else:
            nodes = namespace["nodes"]
            assert len(nodes) == 3 and all(n.node.get_content() and n.node.metadata["source"] for n in nodes)
    finally:
        namespace["client"].close()
