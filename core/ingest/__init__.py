"""Batch ingestion: sources → chunks → embeddings → a vector store sink."""

from e5_integrations.ingest._registry import DEFAULT_STORE_DIR, STORES, infer_store, open_sink
from e5_integrations.ingest._sink import CHUNK_INDEX_KEY, CONTENT_HASH_KEY, SOURCE_KEY, Hit, Record, Sink

__all__ = [
    "CHUNK_INDEX_KEY",
    "CONTENT_HASH_KEY",
    "DEFAULT_STORE_DIR",
    "Hit",
    "Record",
    "SOURCE_KEY",
    "STORES",
    "Sink",
    "infer_store",
    "open_sink",
]
