"""LangChain's ``Chroma`` and LlamaIndex's ``ChromaVectorStore`` on collections e5 ingested in
their layouts, and e5 on collections they made (issue 12), on an embedded and a server Chroma.

One ingest per layout and target (module-scoped); the framework classes are opened with their
ordinary constructor arguments and the e5 adapters on the tiny test model.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from e5_integrations.cli import main
from e5_integrations.ingest._layout import CHUNK_ID_KEY, uuid_id
from e5_integrations.sinks.chroma import ChromaSink, _close_client
from tests.frameworks._readme import readme_snippet
from tests.stores._chroma_server import chroma_server_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

LANGS = ("en", "fr", "de")
TOPICS = ["keys", "billing", "export", "password", "latency", "storage", "search", "backup", "teams", "logs"]
#: 30 records: ``rec-{i}`` with a ``lang`` and a ``topic``; rec-0 and rec-1 span several chunks.
RECORDS = [
    {
        "id": f"rec-{i}",
        "text": (f"Note {i} about {TOPICS[i % 10]} in {LANGS[i % 3]}. " * (14 if i < 2 else 1)).strip(),
        "lang": LANGS[i % 3],
        "topic": TOPICS[i % 10],
        "tags": [TOPICS[i % 10], LANGS[i % 3]],
    }
    for i in range(30)
]
QUERY = "How do I export my billing data?"
COLLECTION = "kb_docs"
CHUNK_TOKENS = "24"


@pytest.fixture(scope="module", params=["embedded", "server"])
def chroma_target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh ``PersistentClient`` folder, or the session's Chroma server URL."""
    if request.param == "embedded":
        return str(tmp_path_factory.mktemp("chroma") / "store")
    return str(request.getfixturevalue("chroma_server_url"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    path = folder / "notes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    return path


def _ingest(source: Path, model: Path, uri: str, collection: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """``e5 ingest`` in-process: ``(exit code, --json report or {})``."""
    argv = ["ingest", str(source), "--model", str(model), "--device", "cpu", "--no-progress", "--json"]
    argv += ["--store", "chroma", "--uri", uri, "--collection", collection, "--chunk-tokens", CHUNK_TOKENS]
    return _run([*argv, *extra])


def _run(argv: list[str]) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    lines = out.getvalue().strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 and lines else {})


def _e5_search(model: Path, uri: str, collection: str, k: int) -> list[dict[str, Any]]:
    buffer = io.StringIO()
    argv = ["search", QUERY, "--model", str(model), "--device", "cpu", "--store", "chroma", "--uri", uri]
    with contextlib.redirect_stdout(buffer):
        assert main([*argv, "--collection", collection, "--json", "-k", str(k)]) == 0
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


#: The chromadb clients the tests opened, closed after each test (HTTP sessions left open warn).
_OPENED: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPENED:
        _close_client(_OPENED.pop())


def _client(uri: str) -> Any:
    """A chromadb client on ``uri`` (a folder or a server URL)."""
    import chromadb

    if uri.startswith("http"):
        parts = urlsplit(uri)
        assert parts.hostname is not None and parts.port is not None, uri
        client = chromadb.HttpClient(host=parts.hostname, port=parts.port)
    else:
        client = chromadb.PersistentClient(path=uri)
    _OPENED.append(client)
    return client


def _langchain(uri: str, collection: str, model: Path, **extra: Any) -> Any:
    """LangChain's ``Chroma`` with its ordinary arguments: ``persist_directory`` or host/port."""
    from langchain_chroma import Chroma

    from e5_integrations.langchain import E5MistralEmbeddings

    embeddings = E5MistralEmbeddings(model=str(model), device="cpu")
    if uri.startswith("http"):
        parts = urlsplit(uri)
        where: dict[str, Any] = {"host": parts.hostname, "port": parts.port}
    else:
        where = {"persist_directory": uri}
    return Chroma(collection_name=collection, embedding_function=embeddings, **where, **extra)


def _llama_index(uri: str, collection: str, **collection_kwargs: Any) -> Any:
    """LlamaIndex's ``ChromaVectorStore`` from a chromadb collection (its documented way)."""
    from llama_index.vector_stores.chroma import ChromaVectorStore

    client = _client(uri)
    return ChromaVectorStore(
        chroma_collection=client.get_or_create_collection(collection, **collection_kwargs)
    )


def _close(store: Any) -> None:
    """Close the client (and the HTTP sessions it leaves open) of LangChain's ``Chroma``; a
    ``ChromaVectorStore``'s client is one of :func:`_client`'s, closed after the test."""
    client = getattr(store, "_client", None)
    if client is not None:
        _close_client(client)


def _chunks(collection: Any) -> dict[str, dict[str, Any]]:
    """``{chunk id: stored metadata}`` of e5's rows."""
    got = collection.get(include=["metadatas"])
    return {m[CHUNK_ID_KEY]: m for m in got["metadatas"] if m and CHUNK_ID_KEY in m}


@pytest.fixture(scope="module")
def langchain_collection(chroma_target: str, corpus: Path, tiny_model_dir: Path) -> Iterator[str]:
    name = f"{COLLECTION}_lc"
    code, report = _ingest(corpus, tiny_model_dir, chroma_target, name, "--layout", "langchain")
    assert code == 0 and report["layout"] == "langchain" and report["written"] > len(RECORDS), report
    yield name
    with ChromaSink(chroma_target, name) as sink:
        sink.drop()


@pytest.fixture(scope="module")
def llama_index_collection(chroma_target: str, corpus: Path, tiny_model_dir: Path) -> Iterator[str]:
    name = f"{COLLECTION}_li"
    code, report = _ingest(corpus, tiny_model_dir, chroma_target, name, "--layout", "llama-index")
    assert code == 0 and report["layout"] == "llama-index" and report["written"] > len(RECORDS), report
    yield name
    with ChromaSink(chroma_target, name) as sink:
        sink.drop()


# -- a. LangChain reads what e5 ingested with --layout langchain -----------------------------


def test_langchain_reads_the_langchain_layout(
    chroma_target: str, langchain_collection: str, tiny_model_dir: Path
) -> None:
    expected = _e5_search(tiny_model_dir, chroma_target, langchain_collection, 8)
    store = _langchain(chroma_target, langchain_collection, tiny_model_dir)
    try:
        got = store.similarity_search_with_relevance_scores(QUERY, k=8)
        assert [d.metadata[CHUNK_ID_KEY] for d, _ in got] == [h["id"] for h in expected]
        assert [d.id for d, _ in got] == [uuid_id(h["id"]) for h in expected]
        assert [d.page_content for d, _ in got] == [h["text"] for h in expected]
        np.testing.assert_allclose([s for _, s in got], [h["score"] for h in expected], atol=1e-4)
        by_id = {r["id"]: r for r in RECORDS}
        for document, _ in got:
            record = by_id[document.metadata["document_id"]]
            assert document.page_content in record["text"]
            assert (document.metadata["lang"], document.metadata["topic"]) == (
                record["lang"],
                record["topic"],
            )
            # a list is stored JSON-encoded (Chroma keeps scalars only), named in e5_json_keys
            assert json.loads(document.metadata["tags"]) == record["tags"]
            assert json.loads(document.metadata["e5_json_keys"]) == ["tags"]
        french = store.similarity_search(QUERY, k=50, filter={"lang": "fr"})
        assert french and {d.metadata["lang"] for d in french} == {"fr"}
        assert {d.metadata["document_id"] for d in french} == {r["id"] for r in RECORDS if r["lang"] == "fr"}
    finally:
        _close(store)


# -- b. LlamaIndex reads what e5 ingested with --layout llama-index --------------------------


def test_llama_index_reads_the_llama_index_layout(
    chroma_target: str, llama_index_collection: str, tiny_model_dir: Path
) -> None:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters

    from e5_integrations.llama_index import E5MistralEmbedding

    expected = _e5_search(tiny_model_dir, chroma_target, llama_index_collection, 8)
    store = _llama_index(chroma_target, llama_index_collection)
    try:
        index = VectorStoreIndex.from_vector_store(
            store, embed_model=E5MistralEmbedding(model=str(tiny_model_dir), device="cpu")
        )
        got = index.as_retriever(similarity_top_k=8).retrieve(QUERY)
        assert all(isinstance(n.node, TextNode) for n in got)
        assert [n.node.metadata[CHUNK_ID_KEY] for n in got] == [h["id"] for h in expected]
        assert [n.node.node_id for n in got] == [uuid_id(h["id"]) for h in expected]
        assert [n.node.get_content() for n in got] == [h["text"] for h in expected]
        # ChromaVectorStore reports exp(-distance), the distance being 1 - cosine here
        np.testing.assert_allclose(
            [1 + math.log(n.score or 0.0) for n in got], [h["score"] for h in expected], atol=1e-4
        )
        by_id = {r["id"]: r for r in RECORDS}
        for hit in got:
            node = hit.node
            record = by_id[node.ref_doc_id or ""]
            assert (node.metadata["lang"], node.metadata["topic"]) == (record["lang"], record["topic"])
            assert node.metadata["tags"] == record["tags"]  # rebuilt from _node_content
            assert node.metadata["document_id"] == record["id"]
            assert "e5_content_hash" in node.excluded_embed_metadata_keys
        french = index.as_retriever(
            similarity_top_k=50, filters=MetadataFilters(filters=[ExactMatchFilter(key="lang", value="fr")])
        ).retrieve(QUERY)
        assert french and {n.node.metadata["lang"] for n in french} == {"fr"}
        assert {n.node.ref_doc_id for n in french} == {r["id"] for r in RECORDS if r["lang"] == "fr"}

        collection = store._collection
        before = _chunks(collection)
        doomed = {c for c, m in before.items() if m["document_id"] == "rec-0"}
        assert len(doomed) > 1
        index.delete_ref_doc("rec-0")
        assert set(_chunks(collection)) == set(before) - doomed
    finally:
        _close(store)


# -- c, d. e5 ingests into (and searches) a collection a framework made ----------------------

APP_TEXTS = [
    "Our office in Lyon opens at nine.",
    "Refunds are processed within five business days.",
    "The mobile app supports dark mode.",
]


def _app_langchain(uri: str, name: str, model: Path) -> list[str]:
    from langchain_core.documents import Document

    store = _langchain(uri, name, model, collection_configuration={"hnsw": {"space": "cosine"}})
    try:
        docs = [Document(page_content=t, metadata={"lang": "en", "origin": "app"}) for t in APP_TEXTS]
        return list(store.add_documents(docs, ids=[f"app-{i}" for i in range(len(docs))]))
    finally:
        _close(store)


def _app_llama_index(uri: str, name: str, model: Path) -> list[str]:
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    from e5_integrations.llama_index import E5MistralEmbedding

    embed = E5MistralEmbedding(model=str(model), device="cpu")
    nodes = [
        TextNode(
            id_=f"app-{i}",
            text=text,
            metadata={"lang": "en", "origin": "app"},
            embedding=embed.get_text_embedding(text),
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"app-doc-{i}")},
        )
        for i, text in enumerate(APP_TEXTS)
    ]
    store = _llama_index(uri, name, configuration={"hnsw": {"space": "cosine"}})
    try:
        return list(store.add(nodes))
    finally:
        _close(store)


@pytest.mark.parametrize("framework", ["langchain", "llama-index"])
def test_e5_ingests_into_and_searches_a_collection_the_framework_made(
    framework: str,
    chroma_target: str,
    tiny_model_dir: Path,
    encoder: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"app_{framework.replace('-', '_')}_{os.getpid()}"
    make = _app_langchain if framework == "langchain" else _app_llama_index
    app_ids = make(chroma_target, name, tiny_model_dir)
    try:
        with ChromaSink(chroma_target, name) as sink:
            assert sink.layout.name == framework  # detected from the app's rows
        small = tmp_path / "notes.jsonl"
        small.write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:8]), encoding="utf-8")

        other = "llama-index" if framework == "langchain" else "langchain"
        code, _ = _ingest(small, tiny_model_dir, chroma_target, name, "--layout", other)
        assert code == 2  # LayoutMismatchError: a usage error, nothing written
        assert f"is in the {framework} layout" in capsys.readouterr().err
        with ChromaSink(chroma_target, name) as sink:
            assert sink.count() == len(APP_TEXTS)

        code, report = _ingest(small, tiny_model_dir, chroma_target, name)
        assert code == 0 and report["layout"] == framework and report["embedded"] > 8, report
        code, again = _ingest(small, tiny_model_dir, chroma_target, name)
        assert code == 0 and again["embedded"] == 0 and again["written"] == 0, again

        # the framework reads both its own rows and e5's
        if framework == "langchain":
            store = _langchain(chroma_target, name, tiny_model_dir)
            try:
                hits = store.similarity_search(QUERY, k=50)
            finally:
                _close(store)
            texts = {d.page_content for d in hits}
            assert set(APP_TEXTS) <= texts and {d.metadata.get("document_id") for d in hits} >= {"rec-3"}
        else:
            from llama_index.core.vector_stores import VectorStoreQuery

            from e5_integrations.llama_index import E5MistralEmbedding

            vector = E5MistralEmbedding(model=str(tiny_model_dir), device="cpu").get_query_embedding(QUERY)
            li = _llama_index(chroma_target, name)
            try:
                result = li.query(VectorStoreQuery(query_embedding=vector, similarity_top_k=50))
            finally:
                _close(li)
            assert set(APP_TEXTS) <= {n.get_content() for n in result.nodes}
            assert {n.ref_doc_id for n in result.nodes} >= {"rec-3", "app-doc-0"}

        # d. e5 search: cosine scores, texts and metadata of the app's rows and e5's
        hits = _e5_search(tiny_model_dir, chroma_target, name, 50)
        assert {h["id"] for h in hits} >= set(app_ids)
        query = encoder.encode_queries([QUERY])[0]
        for hit in hits:
            if hit["id"] in app_ids:
                assert hit["text"] in APP_TEXTS and hit["metadata"]["origin"] == "app"
                expected = float(encoder.encode_documents([hit["text"]])[0] @ query)
                assert hit["score"] == pytest.approx(expected, abs=1e-4)
            else:
                assert re.fullmatch(r"rec-\d#\d+", hit["id"]) and hit["metadata"]["lang"] in LANGS

        # --prune after a record left the sources: e5's chunks of it go, the app's rows stay
        small.write_text("".join(json.dumps(r) + "\n" for r in RECORDS[1:8]), encoding="utf-8")
        code, pruned = _ingest(small, tiny_model_dir, chroma_target, name, "--prune")
        assert code == 0 and pruned["pruned"] > 1, pruned
        collection = _client(chroma_target).get_collection(name)
        assert set(app_ids) <= set(collection.get(ids=app_ids)["ids"])
        assert not [c for c in _chunks(collection) if c.startswith("rec-0#")]
    finally:
        with ChromaSink(chroma_target, name) as sink:
            sink.drop()


# -- e. the README snippets run as written --------------------------------------------------


@pytest.mark.parametrize("layout", ["langchain", "llama-index"])
def test_readme_snippet(
    layout: str, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = readme_snippet(f"chroma:{layout}")
    first = code.splitlines()[0]
    assert first == f"# e5 ingest ./docs --collection kb_docs --layout {layout}", first
    uri = str(tmp_path / "store")
    docs = Path(__file__).resolve().parents[2] / "examples" / "docs"
    status, report = _ingest(docs, tiny_model_dir, uri, "kb_docs", "--layout", layout)
    assert status == 0 and report["written"] > 3, report
    monkeypatch.setenv("E5_MODEL", str(tiny_model_dir))
    assert code.count('"./.e5-store/chroma"') == 1
    namespace: dict[str, Any] = {}
    exec(
        compile(code.replace('"./.e5-store/chroma"', repr(uri)), f"README:chroma:{layout}", "exec"), namespace
    )
    if layout == "langchain":
        results = namespace["docs"]
        assert len(results) == 3 and all(d.page_content and CHUNK_ID_KEY in d.metadata for d in results)
    else:
        results = namespace["nodes"]
        assert len(results) == 3 and all(n.node.get_content() and n.node.ref_doc_id for n in results)
