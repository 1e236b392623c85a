"""e5-integrations: exact, fast e5-mistral-7b-instruct embeddings for RAG stacks.

>>> from e5_integrations import E5Encoder
>>> enc = E5Encoder("intfloat/e5-mistral-7b-instruct")          # doctest: +SKIP
>>> enc.encode_queries(["how much protein should a female eat"])  # doctest: +SKIP

Adapters live in ``e5_integrations.langchain`` and ``e5_integrations.llama_index``; batch
ingestion in ``e5_integrations.ingest`` and the ``e5`` command.

The encoder (and with it torch) is imported on first use of one of its names, so that
``import e5_integrations`` and ``e5 --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e5_integrations._embedder import AsyncEmbedder, Embedder
from e5_integrations._errors import (
    ConfigurationError,
    E5Error,
    InputError,
    LayoutMismatchError,
    ModelLoadError,
    OutOfMemoryError,
    SchemaMismatchError,
    SourceError,
    StoreError,
    StoreUnavailableError,
    UnknownTaskError,
)
from e5_integrations._recipe import E5_MISTRAL, Piece, Recipe, Template, available_recipes, last_token_pool
from e5_integrations._tasks import DEFAULT_TASK, Task, available_tasks, resolve_task

if TYPE_CHECKING:
    from e5_integrations._encoder import DEFAULT_MODEL, DeferredEncoder, E5Encoder

__version__ = "0.1.0"

#: Names served by :func:`__getattr__` from a module that imports torch.
_LAZY = {"DEFAULT_MODEL": "_encoder", "DeferredEncoder": "_encoder", "E5Encoder": "_encoder"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'e5_integrations' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"e5_integrations.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AsyncEmbedder",
    "ConfigurationError",
    "DEFAULT_MODEL",
    "DEFAULT_TASK",
    "DeferredEncoder",
    "E5Encoder",
    "E5Error",
    "E5_MISTRAL",
    "Embedder",
    "InputError",
    "LayoutMismatchError",
    "ModelLoadError",
    "OutOfMemoryError",
    "Piece",
    "Recipe",
    "SchemaMismatchError",
    "SourceError",
    "StoreError",
    "StoreUnavailableError",
    "Task",
    "Template",
    "UnknownTaskError",
    "__version__",
    "available_recipes",
    "available_tasks",
    "last_token_pool",
    "resolve_task",
]
