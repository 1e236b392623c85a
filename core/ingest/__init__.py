"""Batch ingestion: sources → chunks → embeddings → a vector store sink."""

from e5_integrations.ingest._chunking import (
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_TOKENS,
    Chunk,
    Chunker,
    chunk_id,
    content_hash,
    recipe_key,
)
from e5_integrations.ingest._layout import CHUNK_ID_KEY, LAYOUTS, Layout, get_layout
from e5_integrations.ingest._pipeline import ingest, search
from e5_integrations.ingest._registry import (
    DEFAULT_STORE_DIR,
    STORES,
    StoreEntry,
    infer_store,
    open_sink,
    register_store,
)
from e5_integrations.ingest._report import IngestReport
from e5_integrations.ingest._sink import (
    CHUNK_INDEX_KEY,
    CONTENT_HASH_KEY,
    DEFAULT_RETRY_SECONDS,
    DOCUMENT_ID_KEY,
    SOURCE_KEY,
    Hit,
    Record,
    Sink,
)
from e5_integrations.ingest._sources import SUPPORTED_EXTENSIONS, Document, SourceProblem, iter_documents

__all__ = [
    "CHUNK_ID_KEY",
    "CHUNK_INDEX_KEY",
    "CONTENT_HASH_KEY",
    "Chunk",
    "Chunker",
    "DEFAULT_CHUNK_OVERLAP",
    "DEFAULT_CHUNK_TOKENS",
    "DEFAULT_RETRY_SECONDS",
    "DEFAULT_STORE_DIR",
    "DOCUMENT_ID_KEY",
    "Document",
    "Hit",
    "IngestReport",
    "LAYOUTS",
    "Layout",
    "Record",
    "SOURCE_KEY",
    "STORES",
    "SUPPORTED_EXTENSIONS",
    "Sink",
    "SourceProblem",
    "StoreEntry",
    "chunk_id",
    "content_hash",
    "get_layout",
    "infer_store",
    "ingest",
    "iter_documents",
    "open_sink",
    "recipe_key",
    "register_store",
    "search",
]
