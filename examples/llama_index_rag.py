"""Retrieval for a RAG app with LlamaIndex and e5-mistral-7b-instruct embeddings.

Run it offline on the tiny test model, or on the real model (a GPU helps):

    python -m e5_integrations.testing build-tiny /tmp/e5-tiny
    E5_MODEL=/tmp/e5-tiny python examples/llama_index_rag.py
    python examples/llama_index_rag.py          # intfloat/e5-mistral-7b-instruct

Needs: pip install 'e5-integrations[llama-index]'
"""

from __future__ import annotations

from llama_index.core import Document, VectorStoreIndex

from e5_integrations.llama_index import E5MistralEmbedding

DOCUMENTS = [
    Document(text="The Eiffel Tower was completed in 1889 for the World's Fair in Paris.", doc_id="eiffel"),
    Document(
        text="Mount Everest, at 8,849 metres, is the highest mountain above sea level.", doc_id="everest"
    ),
    Document(text="The Great Barrier Reef is the world's largest coral reef system.", doc_id="reef"),
    Document(text="Marie Curie was the first person to win Nobel Prizes in two sciences.", doc_id="curie"),
    Document(text="The Amazon river carries more water than any other river on Earth.", doc_id="amazon"),
]
QUESTION = "When was the Eiffel Tower built?"


def main() -> None:
    # The model comes from $E5_MODEL, else intfloat/e5-mistral-7b-instruct; GPU if available.
    # Queries get the task instruction; documents are embedded as they are.
    embed_model = E5MistralEmbedding(task="Given a question, retrieve passages that answer the question")
    index = VectorStoreIndex.from_documents(DOCUMENTS, embed_model=embed_model)
    retriever = index.as_retriever(similarity_top_k=3)

    print(f"model: {embed_model.model_name} ({embed_model.encoder.dimension} dimensions)")
    print(f"question: {QUESTION}")
    for rank, hit in enumerate(retriever.retrieve(QUESTION), start=1):
        print(f"{rank}. [{hit.score:.3f}] {hit.node.ref_doc_id}: {hit.node.get_content()}")


if __name__ == "__main__":
    main()
