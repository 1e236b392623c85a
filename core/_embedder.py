"""The public type of an encoder: what the adapters, the ingestion engines and the server use.

Three classes satisfy :class:`Embedder`: :class:`~e5_integrations.E5Encoder` (a model in this
process), :class:`~e5_integrations.DeferredEncoder` (the same, loading its weights on first
use) and :class:`~e5_integrations.server.RemoteEncoder` (an ``e5 serve`` server), which also
satisfies :class:`AsyncEmbedder`. A class of your own that has these members works wherever
an ``Embedder`` is taken (``ingest(..., encoder=...)``).

This module imports neither torch nor any adapter library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from e5_integrations._recipe import Recipe
    from e5_integrations._tasks import Task

__all__ = ["AsyncEmbedder", "Embedder", "adapter_encoder"]


@runtime_checkable
class Embedder(Protocol):
    """An encoder: queries with their task instruction, documents as they are (or as a
    symmetric task makes them), L2-normalised float32 rows."""

    @property
    def model_name(self) -> str:
        """The model's hub id or local folder (what content hashes record)."""
        ...

    @property
    def dimension(self) -> int:
        """The length of a vector."""
        ...

    @property
    def max_length(self) -> int:
        """Tokens per input, special tokens included; longer inputs are truncated."""
        ...

    @property
    def batch_tokens(self) -> int:
        """Padded tokens per forward pass (the ingestion engines group chunks by it)."""
        ...

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (chunking needs a fast one)."""
        ...

    @property
    def recipe(self) -> Recipe | None:
        """How inputs are templated, pooled and normalised (``None``: not known here, as for a
        :class:`~e5_integrations.server.RemoteEncoder` whose server runs a custom recipe)."""
        ...

    def encode_queries(self, texts: Sequence[str], task: str | Task = ...) -> np.ndarray:
        """``(len(texts), dimension)`` vectors of search queries under ``task``."""
        ...

    def encode_documents(self, texts: Sequence[str], task: str | Task | None = None) -> np.ndarray:
        """``(len(texts), dimension)`` vectors of documents (``task`` matters only when symmetric)."""
        ...


@runtime_checkable
class AsyncEmbedder(Embedder, Protocol):
    """An :class:`Embedder` that also embeds without blocking the event loop (a remote one)."""

    async def aencode_queries(self, texts: Sequence[str], task: str | Task = ...) -> np.ndarray:
        """:meth:`encode_queries`, awaited."""
        ...

    async def aencode_documents(self, texts: Sequence[str], task: str | Task | None = None) -> np.ndarray:
        """:meth:`encode_documents`, awaited."""
        ...


def adapter_encoder(
    base_url: str | None, api_key: str | None, recipe: str | Recipe | None, **local: Any
) -> Embedder:
    """The encoder behind the LangChain and LlamaIndex adapters: a
    :class:`~e5_integrations.server.RemoteEncoder` of the ``e5 serve`` server at ``base_url``,
    else the process-wide local :meth:`E5Encoder.shared <e5_integrations.E5Encoder.shared>`
    for ``local`` settings.

    Raises:
        ValueError: a ``recipe`` with ``base_url`` (the server's recipe is the one used).
    """
    if base_url is not None:
        if recipe is not None:
            raise ValueError(
                f"recipe={recipe!r} configures a local model, but base_url={base_url!r} embeds "
                "with the server's model and recipe (e5 serve --recipe); drop one of them"
            )
        from e5_integrations.server._client import RemoteEncoder

        return RemoteEncoder(base_url, api_key=api_key)
    from e5_integrations._encoder import E5Encoder

    options: dict[str, Any] = dict(local)
    if recipe is not None:
        options["recipe"] = recipe
    return E5Encoder.shared(**options)


if TYPE_CHECKING:  # mypy proves the local encoders are Embedders (RemoteEncoder: in its module)
    from e5_integrations._encoder import DeferredEncoder, E5Encoder

    def _local_encoders_are_embedders(a: E5Encoder, b: DeferredEncoder) -> tuple[Embedder, Embedder]:
        return a, b
