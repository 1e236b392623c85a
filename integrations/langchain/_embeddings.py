"""``E5MistralEmbeddings``: the LangChain ``Embeddings`` face of :class:`~e5_integrations.E5Encoder`.

The class is a thin pydantic model. Everything that decides what a vector is (instruction
template, EOS, last-token pooling, token-budget batching, normalisation) lives in the
core; this module only maps LangChain's two calls onto it:

- ``embed_query``  -> ``E5Encoder.encode_queries(texts, task=task)``
- ``embed_documents`` -> ``E5Encoder.encode_documents(texts, task=task)`` (the core adds the
  instruction to documents only when the task is symmetric, e.g. STS)
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, cast

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from e5_integrations import DEFAULT_MODEL, DEFAULT_TASK, Recipe, resolve_task
from e5_integrations._embedder import AsyncEmbedder, Embedder, adapter_encoder
from e5_integrations._encoder import model_name_from_aliases
from e5_integrations._recipe import get_recipe

__all__ = ["E5MistralEmbeddings"]


def _default_model_name() -> str:
    """``$E5_MODEL`` if set, else the public e5-mistral checkpoint."""
    return os.environ.get("E5_MODEL") or DEFAULT_MODEL


def _to_lists(vectors: np.ndarray) -> list[list[float]]:
    """Rows of a float array as lists of plain Python floats (what LangChain expects)."""
    rows: list[list[float]] = vectors.tolist()
    return rows


class E5MistralEmbeddings(BaseModel, Embeddings):
    """e5-mistral-7b-instruct embeddings for LangChain.

    Queries get the task instruction; documents are embedded as they are (or with the
    instruction too when the task is symmetric). Instances with the same ``model_name``,
    ``device`` and ``dtype`` share one loaded model.

    Example:
        .. code-block:: python

            from e5_integrations.langchain import E5MistralEmbeddings

            embeddings = E5MistralEmbeddings(task="NQ")
            vectors = embeddings.embed_documents(["Paris is the capital of France."])
            query = embeddings.embed_query("capital of France?")

            # or through an `e5 serve` server, with no model in this process:
            remote = E5MistralEmbeddings(base_url="http://127.0.0.1:8080", task="NQ")
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), use_attribute_docstrings=True)

    model_name: str = Field(default_factory=_default_model_name)
    """Hugging Face model id or local directory; default ``$E5_MODEL``, else e5-mistral-7b-instruct.
    ``model=`` is accepted too, as :class:`~e5_integrations.E5Encoder` takes it."""

    device: str | None = None
    """Torch device (``"cuda"``, ``"cuda:1"``, ``"cpu"``); ``None`` picks CUDA when available."""

    dtype: str = "auto"
    """Weight dtype: ``"auto"`` (bf16/fp16 on GPU, fp32 on CPU), ``"bf16"``, ``"fp16"`` or ``"fp32"``."""

    task: str = DEFAULT_TASK
    """Registered task name (``"NQ"``, ``"STS"`` ...) or a one-sentence instruction; applied to queries,
    and to documents too when the task is symmetric."""

    max_length: int | None = Field(default=None, gt=0)
    """Longest input in tokens, special tokens included; longer texts are truncated. ``None``:
    the recipe's reference default (4096 for e5-mistral, 512 for GritLM...)."""

    batch_tokens: int = Field(default=16384, gt=0)
    """Token budget of one forward pass; the core packs batches up to it."""

    show_progress: bool | None = None
    """Show a progress bar while encoding; ``None`` shows one only for large inputs."""

    recipe: str | Recipe | None = None
    """How the model embeds: a name from ``e5_integrations.available_recipes()`` (``"sgpt"``,
    ``"qwen3-embedding"`` ...) or a ``Recipe``; ``None`` picks the model's preset."""

    base_url: str | None = None
    """URL of an ``e5 serve`` server (``http://host:8080``): embed there instead of loading the model
    here (remote mode; ``model_name``, ``device``, ``dtype``, ``recipe`` and the batching options are the
    server's)."""

    api_key: SecretStr | None = None
    """API key of that server (default ``$E5_API_KEY``); never shown in ``repr``."""

    _encoder: Embedder = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _accept_model(cls, data: Any) -> Any:
        return model_name_from_aliases(data)

    @field_validator("task")
    @classmethod
    def _check_task(cls, task: str) -> str:
        resolve_task(task)  # raises UnknownTaskError (a ValueError) for a mistyped task name
        return task

    @field_validator("recipe")
    @classmethod
    def _check_recipe(cls, recipe: str | Recipe | None) -> str | Recipe | None:
        if recipe is not None:
            get_recipe(recipe)  # raises ConfigurationError (a ValueError) listing the valid names
        return recipe

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        key = self.api_key.get_secret_value() if self.api_key is not None else None
        self._encoder = adapter_encoder(
            self.base_url,
            key,
            self.recipe,
            model=self.model_name,
            device=self.device,
            dtype=self.dtype,
            max_length=self.max_length,
            batch_tokens=self.batch_tokens,
            show_progress=self.show_progress,
        )

    @property
    def encoder(self) -> Embedder:
        """The encoder this adapter delegates to: an :class:`E5Encoder`, or a
        :class:`~e5_integrations.server.RemoteEncoder` with ``base_url``."""
        return self._encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (passages) for storage; one list of floats per text."""
        return _to_lists(self._encoder.encode_documents(list(texts), task=self.task))

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query with the task instruction."""
        return _to_lists(self._encoder.encode_queries([text], task=self.task))[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Like :meth:`embed_documents`, run in a worker thread so the event loop keeps running
        (async HTTP in remote mode)."""
        if self.base_url is not None:  # a RemoteEncoder: async HTTP
            return _to_lists(
                await cast(AsyncEmbedder, self._encoder).aencode_documents(list(texts), task=self.task)
            )
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Like :meth:`embed_query`, run in a worker thread so the event loop keeps running
        (async HTTP in remote mode)."""
        if self.base_url is not None:  # a RemoteEncoder: async HTTP
            return _to_lists(
                await cast(AsyncEmbedder, self._encoder).aencode_queries([text], task=self.task)
            )[0]
        return await asyncio.to_thread(self.embed_query, text)
