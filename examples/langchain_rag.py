"""Retrieval for a RAG app with LangChain and e5-mistral-7b-instruct embeddings.

Run it offline on the tiny test model, or on the real model (a GPU helps):

    python -m e5_integrations.testing build-tiny /tmp/e5-tiny
    E5_MODEL=/tmp/e5-tiny python examples/langchain_rag.py
    python examples/langchain_rag.py            # intfloat/e5-mistral-7b-instruct

Needs: pip install 'e5-integrations[langchain]'
"""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from e5_integrations.langchain import E5MistralEmbeddings

DOCUMENTS = [
    Document(
        page_content="The Eiffel Tower was completed in 1889 for the World's Fair in Paris.", id="eiffel"
    ),
    Document(
        page_content="Mount Everest, at 8,849 metres, is the highest mountain above sea level.", id="everest"
    ),
    Document(page_content="The Great Barrier Reef is the world's largest coral reef system.", id="reef"),
    Document(
        page_content="Marie Curie was the first person to win Nobel Prizes in two sciences.", id="curie"
    ),
    Document(page_content="The Amazon river carries more water than any other river on Earth.", id="amazon"),
]
QUESTION = "When was the Eiffel Tower built?"


def main() -> None:
    # The model comes from $E5_MODEL, else intfloat/e5-mistral-7b-instruct; GPU if available.
    # Queries get the task instruction; documents are embedded as they are.
    embeddings = E5MistralEmbeddings(task="Given a question, retrieve passages that answer the question")
    store = InMemoryVectorStore(embedding=embeddings)
    store.add_documents(DOCUMENTS)

    print(f"model: {embeddings.model_name} ({embeddings.encoder.dimension} dimensions)")
    print(f"question: {QUESTION}")
    for rank, (doc, score) in enumerate(store.similarity_search_with_score(QUESTION, k=3), start=1):
        print(f"{rank}. [{score:.3f}] {doc.id}: {doc.page_content}")


if __name__ == "__main__":
    main()
