"""LlamaIndex's ``MilvusVectorStore`` on a collection, run by the Milvus framework tests with
the Python of ``$E5_LLAMA_MILVUS_VENV`` (llama-index-vector-stores-milvus needs pymilvus<3,
langchain-milvus pymilvus>=3, so the two cannot share the test venv).

Standard library and llama-index only: no e5 import. The embeddings are computed by the test
with e5's real ``E5MistralEmbedding`` and passed in. Reads a JSON request on stdin::

    {"uri": ..., "collection": ..., "load": bool, "steps": [{"do": ..., ...}, ...]}

and prints one JSON object, ``{"results": [...]}``, one result per step:

- ``create``: ``{"dim", "nodes": [{"id", "text", "metadata", "ref_doc_id", "embedding"}]}``:
  make the collection with the class and add the nodes;
- ``retrieve``: ``{"embedding", "k"}``: ``VectorStoreIndex.from_vector_store(store)``'s
  retriever (its embed model returns ``embedding``);
- ``query``: ``{"embedding", "k", "filters": {key: value}}``: ``store.query`` with
  ``MetadataFilters`` (equality);
- ``delete_ref_doc``: ``{"ref_doc_id"}``: ``index.delete_ref_doc``;
- ``count``: the rows in the collection;
- ``snippet``: ``{"code", "embedding"}``: exec a README snippet with ``e5_integrations.llama_index``
  standing in for e5's module (its ``E5MistralEmbedding`` returns ``embedding``); returns the
  snippet's ``nodes``.

``load``: load the collection first: milvus-lite 3 opens a ``.db`` file with every
collection released, and ``MilvusVectorStore`` never loads an existing one (it fails the
same way on a collection it made itself in another process).
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import NodeRelationship, NodeWithScore, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, VectorStoreQuery
from llama_index.vector_stores.milvus import MilvusVectorStore


def _fixed_embedding(vector: list[float]) -> type[BaseEmbedding]:
    class Fixed(BaseEmbedding):
        """An embed model that returns the vector the test computed with e5."""

        def _get_query_embedding(self, query: str) -> list[float]:
            return vector

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return vector

        def _get_text_embedding(self, text: str) -> list[float]:
            return vector

    return Fixed


def _node(found: Any, score: float | None = None) -> dict[str, Any]:
    node = found.node if isinstance(found, NodeWithScore) else found
    return {
        "id": node.node_id,
        "text": node.get_content(),
        "metadata": node.metadata,
        "ref_doc_id": node.ref_doc_id,
        "type": type(node).__name__,
        "score": found.score if isinstance(found, NodeWithScore) else score,
    }


def _store(request: dict[str, Any], **kwargs: Any) -> MilvusVectorStore:
    store = MilvusVectorStore(
        uri=request["uri"], collection_name=request["collection"], use_async_client=False, **kwargs
    )
    if request.get("load"):
        store.client.load_collection(request["collection"])
    return store


def main() -> None:
    request = json.load(sys.stdin)
    results: list[Any] = []
    store: MilvusVectorStore | None = None
    for step in request["steps"]:
        action = step["do"]
        if action == "create":
            store = _store({**request, "load": False}, dim=step["dim"])
            nodes = []
            for item in step["nodes"]:
                relationships = (
                    {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=item["ref_doc_id"])}
                    if item.get("ref_doc_id")
                    else {}
                )
                nodes.append(
                    TextNode(
                        id_=item["id"],
                        text=item["text"],
                        metadata=item["metadata"],
                        embedding=item["embedding"],
                        relationships=relationships,
                    )
                )
            results.append(store.add(nodes))
            continue
        if action == "snippet":
            module = types.ModuleType("e5_integrations.llama_index")
            module.E5MistralEmbedding = _fixed_embedding(step["embedding"])  # type: ignore[attr-defined]
            sys.modules["e5_integrations"] = types.ModuleType("e5_integrations")
            sys.modules["e5_integrations.llama_index"] = module
            scope: dict[str, Any] = {}
            exec(compile(step["code"], "README.md", "exec"), scope)
            results.append([_node(found) for found in scope["nodes"]])
            continue
        store = store or _store(request)
        if action == "retrieve":
            index = VectorStoreIndex.from_vector_store(
                store, embed_model=_fixed_embedding(step["embedding"])()
            )
            results.append(
                [_node(found) for found in index.as_retriever(similarity_top_k=step["k"]).retrieve("q")]
            )
        elif action == "query":
            filters = MetadataFilters(
                filters=[MetadataFilter(key=k, value=v) for k, v in step["filters"].items()]
            )
            query = VectorStoreQuery(
                query_embedding=step["embedding"], similarity_top_k=step["k"], filters=filters
            )
            found = store.query(query)
            scores = found.similarities or [None] * len(found.nodes or [])
            results.append(
                [_node(node, score) for node, score in zip(found.nodes or [], scores, strict=True)]
            )
        elif action == "delete_ref_doc":
            index = VectorStoreIndex.from_vector_store(store, embed_model=_fixed_embedding([0.0])())
            index.delete_ref_doc(step["ref_doc_id"])
            results.append(None)
        elif action == "count":
            rows = store.client.query(request["collection"], filter="", output_fields=["count(*)"])
            results.append(int(rows[0]["count(*)"]))
        else:
            raise ValueError(f"unknown step {action!r}")
    print(json.dumps({"results": results}, default=str))


if __name__ == "__main__":
    main()
