"""Our adapters inside real vector stores: LangChain + Chroma, LlamaIndex + Qdrant.

The tiny test model has random weights, so retrieval quality means nothing here. What must
hold is exact: the vectors a store keeps are the core's ``encode_documents`` output, and
the store's ranking for a question is the brute-force cosine ranking of the core's
``encode_queries`` vector against them.

``CHROMA_URL`` / ``QDRANT_URL``, when set, point these tests at running servers; otherwise
Chroma runs in-process (its real engine) and Qdrant in local mode.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

from e5_integrations import E5Encoder
from e5_integrations.langchain import E5MistralEmbeddings
from e5_integrations.llama_index import E5MistralEmbedding

from .conftest import DOCS, MIN_COSINE, QUERY, row_cosines

pytestmark = pytest.mark.integration

#: Qdrant's local mode warns that payload indexes (LlamaIndex makes one on doc_id) do nothing there.
_QDRANT_LOCAL_PAYLOAD_INDEX = pytest.mark.filterwarnings(
    "ignore:Payload indexes have no effect in the local Qdrant"
)


def brute_force_ranking(encoder: E5Encoder, query: str, docs: list[str]) -> tuple[list[int], np.ndarray]:
    """Doc indices by decreasing cosine with the query, and the cosines themselves."""
    scores = encoder.encode_documents(docs) @ encoder.encode_queries([query])[0]
    return [int(i) for i in np.argsort(-scores, kind="stable")], scores


def _assert_clear_ranking(scores: np.ndarray) -> None:
    gaps = np.diff(np.sort(scores))
    assert gaps.min() > 1e-4, "two docs tie for the query; pick other test texts"


# -- LangChain + Chroma -------------------------------------------------------------------


@pytest.fixture
def chroma_client() -> Iterator[Any]:
    import chromadb

    url = os.environ.get("CHROMA_URL")
    if url:
        parsed = urlparse(url)
        yield chromadb.HttpClient(host=parsed.hostname or "localhost", port=parsed.port or 8000)
    else:
        yield chromadb.EphemeralClient()


def test_langchain_chroma_stores_core_vectors_and_ranks_by_cosine(
    chroma_client: Any, tiny_model_name: str, encoder: E5Encoder
) -> None:
    from langchain_chroma import Chroma

    name = f"e5-lc-{uuid.uuid4().hex[:12]}"
    store = Chroma(
        collection_name=name,
        embedding_function=E5MistralEmbeddings(model_name=tiny_model_name, device="cpu"),
        client=chroma_client,
        collection_metadata={"hnsw:space": "cosine"},
    )
    try:
        ids = [f"doc-{i}" for i in range(len(DOCS))]
        store.add_texts(DOCS, ids=ids)

        stored = store.get(ids=ids, include=["embeddings", "documents"])
        by_id = dict(zip(stored["ids"], stored["embeddings"], strict=True))
        assert row_cosines([by_id[i] for i in ids], encoder.encode_documents(DOCS)).min() >= MIN_COSINE

        order, scores = brute_force_ranking(encoder, QUERY, DOCS)
        _assert_clear_ranking(scores)
        hits = store.similarity_search_with_score(QUERY, k=len(DOCS))
        assert [doc.page_content for doc, _ in hits] == [DOCS[i] for i in order]
        # Chroma's cosine distance is 1 - cosine similarity
        assert np.allclose([1.0 - dist for _, dist in hits], scores[order], atol=1e-4)

        # a document's own text, sent as a query, carries the instruction: same ranking rule
        order_self, _ = brute_force_ranking(encoder, DOCS[3], DOCS)
        assert store.similarity_search(DOCS[3], k=1)[0].page_content == DOCS[order_self[0]]
    finally:
        chroma_client.delete_collection(name)


# -- LlamaIndex + Qdrant ------------------------------------------------------------------


@pytest.fixture
def qdrant_client() -> Iterator[Any]:
    from qdrant_client import QdrantClient

    url = os.environ.get("QDRANT_URL")
    client = QdrantClient(url=url) if url else QdrantClient(location=":memory:")
    yield client
    client.close()


@_QDRANT_LOCAL_PAYLOAD_INDEX
def test_llama_index_qdrant_index_stores_core_vectors_and_ranks_by_cosine(
    qdrant_client: Any, tiny_model_name: str, encoder: E5Encoder
) -> None:
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    name = f"e5-li-{uuid.uuid4().hex[:12]}"
    store = QdrantVectorStore(collection_name=name, client=qdrant_client)
    try:
        node_ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"e5-test/{i}")) for i in range(len(DOCS))]
        nodes = [TextNode(text=text, id_=node_id) for text, node_id in zip(DOCS, node_ids, strict=True)]
        index = VectorStoreIndex(
            nodes,
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=E5MistralEmbedding(model_name=tiny_model_name, device="cpu"),
        )

        points = qdrant_client.retrieve(name, ids=node_ids, with_vectors=True)
        by_id = {str(p.id): p.vector for p in points}
        assert row_cosines([by_id[i] for i in node_ids], encoder.encode_documents(DOCS)).min() >= MIN_COSINE

        order, scores = brute_force_ranking(encoder, QUERY, DOCS)
        _assert_clear_ranking(scores)
        hits = index.as_retriever(similarity_top_k=len(DOCS)).retrieve(QUERY)
        assert [hit.node.get_content() for hit in hits] == [DOCS[i] for i in order]
        assert np.allclose(np.array([hit.score for hit in hits], dtype=float), scores[order], atol=1e-4)
    finally:
        qdrant_client.delete_collection(name)


@_QDRANT_LOCAL_PAYLOAD_INDEX
def test_llama_index_async_index_and_retrieve(tiny_model_name: str, encoder: E5Encoder) -> None:
    import asyncio

    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import AsyncQdrantClient

    async def run() -> list[str]:
        url = os.environ.get("QDRANT_URL")
        aclient = AsyncQdrantClient(url=url) if url else AsyncQdrantClient(location=":memory:")
        name = f"e5-li-async-{uuid.uuid4().hex[:12]}"
        store = QdrantVectorStore(collection_name=name, aclient=aclient)
        try:
            index = VectorStoreIndex(
                [],
                storage_context=StorageContext.from_defaults(vector_store=store),
                embed_model=E5MistralEmbedding(model_name=tiny_model_name, device="cpu"),
                use_async=True,
            )
            await index.ainsert_nodes([TextNode(text=text) for text in DOCS])
            hits = await index.as_retriever(similarity_top_k=len(DOCS)).aretrieve(QUERY)
            return [hit.node.get_content() for hit in hits]
        finally:
            await aclient.delete_collection(name)
            await aclient.close()

    order, _ = brute_force_ranking(encoder, QUERY, DOCS)
    assert asyncio.run(run()) == [DOCS[i] for i in order]
