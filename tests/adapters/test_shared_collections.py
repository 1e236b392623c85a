"""`e5 ingest` and a RAG app's own LangChain / LlamaIndex writes in one collection (issue 12).

Two data-safety promises, checked with the real framework vector store classes:

- ``--prune`` and stale-chunk deletion touch only the rows e5 wrote. LlamaIndex writes a
  ``document_id`` key on every node, and apps put one in their LangChain metadata, so a
  ``document_id`` alone must not make a row e5's.
- ``e5 search`` on a collection in another distance space than cosine (LangChain's Chroma
  default is L2) prints cosine similarities, and ``e5 ingest`` refuses to write into it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from e5_integrations import E5Encoder
from e5_integrations.cli import main
from e5_integrations.langchain import E5MistralEmbeddings

from .conftest import DOCS, QUERY

pytestmark = pytest.mark.integration

#: Qdrant's local mode warns that payload indexes (LlamaIndex makes one on doc_id) do nothing there.
_QDRANT_LOCAL_PAYLOAD_INDEX = pytest.mark.filterwarnings(
    "ignore:Payload indexes have no effect in the local Qdrant"
)

LONG = " ".join(f"Sentence {i} of the long handbook talks about topic number {i}." for i in range(12))
SHORT = "A short handbook."


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """docs/handbook.txt (several chunks at --chunk-tokens 16) and docs/gone.txt."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "handbook.txt").write_text(LONG, encoding="utf-8")
    (folder / "gone.txt").write_text("This file will be deleted before the pruning run.", encoding="utf-8")
    return folder


def _ingest(docs: Path, model: str, store: str, uri: Path, *extra: str) -> dict[str, Any]:
    argv = ["ingest", str(docs), "--id-root", str(docs), "--model", model, "--no-progress", "--json"]
    argv += ["--store", store, "--uri", str(uri), "--collection", "kb_docs", "--chunk-tokens", "16"]
    assert main([*argv, *extra]) == 0
    return {}


def _report(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return report


def _shrink_and_prune(
    docs: Path, model: str, store: str, uri: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    (docs / "handbook.txt").write_text(SHORT, encoding="utf-8")
    (docs / "gone.txt").unlink()
    _ingest(docs, model, store, uri, "--prune")
    return _report(capsys)


# -- Chroma: LlamaIndex ChromaVectorStore and LangChain Chroma beside e5 --------------------


def test_prune_and_stale_chunks_leave_framework_rows_in_a_shared_chroma_collection(
    docs: Path, tmp_path: Path, tiny_model_name: str, encoder: E5Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    import chromadb
    from langchain_chroma import Chroma
    from llama_index.core.schema import BaseNode, NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.vector_stores.chroma import ChromaVectorStore

    uri = tmp_path / "chroma"
    _ingest(docs, tiny_model_name, "chroma", uri)
    first = _report(capsys)
    assert first["written"] > 3, "the handbook should make several chunks; lower --chunk-tokens"

    client = chromadb.PersistentClient(path=str(uri))
    collection = client.get_collection("kb_docs")
    e5_before = set(collection.get()["ids"])
    handbook_chunks = sorted(i for i in e5_before if i.startswith("handbook.txt#"))

    # LlamaIndex nodes: their document_id is the ref doc id, one of them "gone.txt" like ours.
    vectors = encoder.encode_documents(DOCS[:3])
    nodes: list[BaseNode] = [
        TextNode(
            text=text,
            id_=f"llama-node-{i}",
            embedding=vector.tolist(),
            metadata={"lang": "en"},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=ref)},
        )
        for i, (text, vector, ref) in enumerate(
            zip(DOCS[:3], vectors, ["llama-doc", "gone.txt", "handbook.txt"], strict=True)
        )
    ]
    ChromaVectorStore(chroma_collection=collection).add(nodes)
    # LangChain documents, with the document_id apps often keep in their metadata, and one
    # whose id looks like a stale e5 chunk id of the handbook.
    lc = Chroma(
        client=client,
        collection_name="kb_docs",
        embedding_function=E5MistralEmbeddings(model_name=tiny_model_name, device="cpu"),
    )
    lc_ids = ["lc-0", "lc-1", f"handbook.txt#{len(handbook_chunks) + 1}"]
    lc.add_texts(
        DOCS[3:6],
        metadatas=[{"document_id": "lc-doc"}, {"document_id": "gone.txt"}, {"document_id": "handbook.txt"}],
        ids=lc_ids,
    )
    framework = {n.node_id for n in nodes} | set(lc_ids)
    framework_rows = collection.get(ids=sorted(framework), include=["documents", "metadatas"])

    report = _shrink_and_prune(docs, tiny_model_name, "chroma", uri, capsys)

    after = collection.get(include=["documents", "metadatas"])
    kept = set(after["ids"])
    assert framework <= kept, f"e5 deleted framework rows: {sorted(framework - kept)}"
    assert collection.get(ids=sorted(framework), include=["documents", "metadatas"]) == framework_rows
    assert kept - framework == {"handbook.txt#0"}, "exactly e5's current chunk should remain"
    assert report["pruned"] == 1  # gone.txt#0
    assert report["deleted_stale"] == len(handbook_chunks) - 1


# -- Qdrant: LangChain QdrantVectorStore and LlamaIndex QdrantVectorStore beside e5 -----------


@pytest.fixture
def qdrant_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "qdrant"


@_QDRANT_LOCAL_PAYLOAD_INDEX
def test_prune_and_stale_chunks_leave_framework_points_in_a_shared_qdrant_collection(
    docs: Path,
    qdrant_path: Path,
    tiny_model_name: str,
    encoder: E5Encoder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from langchain_qdrant import QdrantVectorStore as LangChainQdrant
    from llama_index.core.schema import BaseNode, NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.vector_stores.qdrant import QdrantVectorStore as LlamaQdrant
    from qdrant_client import QdrantClient

    _ingest(docs, tiny_model_name, "qdrant", qdrant_path)
    first = _report(capsys)
    assert first["written"] > 3

    def points(client: Any) -> dict[str, Any]:
        found, _ = client.scroll("kb_docs", limit=1000, with_payload=True)
        return {str(p.id): p.payload for p in found}

    client = QdrantClient(path=str(qdrant_path))  # local mode: one client per folder at a time
    try:
        e5_before = points(client)
        vectors = encoder.encode_documents(DOCS[:2])
        nodes: list[BaseNode] = [
            TextNode(
                text=text,
                id_=node_id,
                embedding=vector.tolist(),
                metadata={"document_id": ref},
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=ref)},
            )
            for text, vector, node_id, ref in zip(
                DOCS[:2],
                vectors,
                ["0d7a6c1e-0000-4000-8000-000000000001", "0d7a6c1e-0000-4000-8000-000000000002"],
                ["llama-doc", "gone.txt"],
                strict=True,
            )
        ]
        LlamaQdrant(collection_name="kb_docs", client=client).add(nodes)
        lc = LangChainQdrant(
            client=client,
            collection_name="kb_docs",
            embedding=E5MistralEmbeddings(model_name=tiny_model_name, device="cpu"),
        )
        lc_ids = lc.add_texts(DOCS[3:5], metadatas=[{"document_id": "lc-doc"}, {"document_id": "gone.txt"}])
        framework = points(client).keys() - e5_before.keys()
        assert len(framework) == 4
        framework_rows = {k: v for k, v in points(client).items() if k in framework}
        assert {str(uuid.UUID(str(i))) for i in lc_ids} <= framework
    finally:
        client.close()

    report = _shrink_and_prune(docs, tiny_model_name, "qdrant", qdrant_path, capsys)

    client = QdrantClient(path=str(qdrant_path))
    try:
        after = points(client)
    finally:
        client.close()
    assert {k: v for k, v in after.items() if k in framework} == framework_rows, "e5 touched framework points"
    e5_after = {payload["id"] for key, payload in after.items() if key not in framework}
    assert e5_after == {"handbook.txt#0"}
    assert report["pruned"] == 1


# -- Distance spaces: LangChain's default L2, plain chromadb with inner product ---------------


def _chroma_collection(uri: Path, name: str, space: str | None, tiny_model_name: str) -> Any:
    """A collection filled by LangChain's Chroma (``space=None``: its default, L2) or by
    plain chromadb with ``hnsw:space`` = ``space``."""
    import chromadb

    client = chromadb.PersistentClient(path=str(uri))
    embeddings = E5MistralEmbeddings(model_name=tiny_model_name, device="cpu")
    if space is None:
        from langchain_chroma import Chroma

        Chroma(client=client, collection_name=name, embedding_function=embeddings).add_texts(
            DOCS, ids=[f"doc-{i}" for i in range(len(DOCS))], metadatas=[{"n": i} for i in range(len(DOCS))]
        )
    else:
        collection = client.create_collection(name, metadata={"hnsw:space": space}, embedding_function=None)
        collection.add(
            ids=[f"doc-{i}" for i in range(len(DOCS))],
            embeddings=np.asarray(embeddings.embed_documents(DOCS), dtype=np.float32),
            documents=DOCS,
            metadatas=[{"n": i} for i in range(len(DOCS))],
        )
    return client.get_collection(name)


@pytest.mark.parametrize(("space", "expected"), [(None, "l2"), ("ip", "ip"), ("l2", "l2")])
def test_search_scores_non_cosine_chroma_collections_by_cosine_and_ingest_refuses_them(
    space: str | None,
    expected: str,
    docs: Path,
    tmp_path: Path,
    tiny_model_name: str,
    encoder: E5Encoder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri = tmp_path / "chroma"
    collection = _chroma_collection(uri, "kb_docs", space, tiny_model_name)
    assert collection.configuration_json["hnsw"]["space"] == expected

    argv = ["search", QUERY, "--model", tiny_model_name, "--store", "chroma", "--uri", str(uri)]
    assert main([*argv, "--collection", "kb_docs", "--json", "-k", str(len(DOCS))]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    cosines = encoder.encode_documents(DOCS) @ encoder.encode_queries([QUERY])[0]
    assert [h["id"] for h in hits] == [f"doc-{i}" for i in np.argsort(-cosines, kind="stable")]
    for hit in hits:
        i = int(hit["id"].split("-")[1])
        assert hit["score"] == pytest.approx(float(cosines[i]), abs=1e-4), hit
        assert (hit["text"], hit["metadata"]["n"]) == (DOCS[i], i)

    before = collection.count()
    assert main(["ingest", str(docs), "--model", tiny_model_name, "--no-progress", "--store", "chroma",
                 "--uri", str(uri), "--collection", "kb_docs"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert f"uses the {expected!r} distance" in err and "'cosine'" in err, err
    assert collection.count() == before


def test_search_refuses_an_l2_collection_whose_vectors_are_not_unit_norm(
    tmp_path: Path, tiny_model_name: str, encoder: E5Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    """L2 ranking equals cosine ranking only for unit vectors: scaled ones are refused, not mis-scored."""
    import chromadb

    uri = tmp_path / "chroma"
    client = chromadb.PersistentClient(path=str(uri))
    collection = client.create_collection("kb_docs", embedding_function=None)  # chromadb's default: L2
    scales = np.linspace(0.5, 3.0, len(DOCS), dtype=np.float32)[:, None]
    collection.add(
        ids=[f"doc-{i}" for i in range(len(DOCS))],
        embeddings=encoder.encode_documents(DOCS) * scales,
        documents=DOCS,
    )
    argv = ["search", QUERY, "--model", tiny_model_name, "--store", "chroma", "--uri", str(uri)]
    assert main([*argv, "--collection", "kb_docs", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "'l2'" in captured.err and "unit" in captured.err, captured.err


def _qdrant_collection(path: Path, distance: str, vectors: np.ndarray) -> None:
    """A local Qdrant collection in ``distance`` (Dot, Euclid, Manhattan) holding DOCS in e5's payload."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(path))
    try:
        client.create_collection(
            "kb_docs",
            vectors_config=models.VectorParams(size=vectors.shape[1], distance=models.Distance(distance)),
        )
        client.upsert(
            "kb_docs",
            points=[
                models.PointStruct(
                    id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"doc-{i}")),
                    vector=vectors[i].tolist(),
                    payload={"id": f"doc-{i}", "text": DOCS[i], "metadata": {"n": i}},
                )
                for i in range(len(DOCS))
            ],
        )
    finally:
        client.close()


@pytest.mark.parametrize("distance", ["Euclid", "Dot"])
def test_search_scores_non_cosine_qdrant_collections_by_cosine_and_ingest_refuses_them(
    distance: str,
    docs: Path,
    tmp_path: Path,
    tiny_model_name: str,
    encoder: E5Encoder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "qdrant"
    _qdrant_collection(path, distance, encoder.encode_documents(DOCS))

    argv = ["search", QUERY, "--model", tiny_model_name, "--store", "qdrant", "--uri", str(path)]
    assert main([*argv, "--collection", "kb_docs", "--json", "-k", str(len(DOCS))]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    cosines = encoder.encode_documents(DOCS) @ encoder.encode_queries([QUERY])[0]
    assert [h["id"] for h in hits] == [f"doc-{i}" for i in np.argsort(-cosines, kind="stable")]
    for hit in hits:
        i = int(hit["id"].split("-")[1])
        assert hit["score"] == pytest.approx(float(cosines[i]), abs=1e-4), hit

    assert main(["ingest", str(docs), "--model", tiny_model_name, "--no-progress", "--store", "qdrant",
                 "--uri", str(path), "--collection", "kb_docs"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert f"{distance} vectors" in err and "cosine" in err, err


@pytest.mark.parametrize(("distance", "scale"), [("Euclid", True), ("Dot", True), ("Manhattan", False)])
def test_search_refuses_qdrant_collections_it_cannot_score_by_cosine(
    distance: str,
    scale: bool,
    tmp_path: Path,
    tiny_model_name: str,
    encoder: E5Encoder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vectors = encoder.encode_documents(DOCS)
    if scale:
        vectors = vectors * np.linspace(0.5, 3.0, len(DOCS), dtype=np.float32)[:, None]
    path = tmp_path / "qdrant"
    _qdrant_collection(path, distance, vectors)
    argv = ["search", QUERY, "--model", tiny_model_name, "--store", "qdrant", "--uri", str(path)]
    assert main([*argv, "--collection", "kb_docs", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert repr(distance) in captured.err and ("unit-norm" in captured.err) == scale, captured.err
