"""``E5MistralEmbedding``: the LlamaIndex ``BaseEmbedding`` face of :class:`~e5_integrations.E5Encoder`.

A thin adapter: the instruction template, EOS, pooling, token-budget batching and
normalisation all live in the core. Queries go to ``encode_queries(task=...)``, texts
(nodes) to ``encode_documents(task=...)``.

LlamaIndex's optional ``embeddings_cache`` keys every entry by the raw string, for queries
and texts alike. A query and a text with the same string have different model inputs here
(the query carries the instruction), so query embeddings are cached under their own key,
which also names the task.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, cast

from e5_integrations import DEFAULT_MODEL, DEFAULT_TASK, Recipe, resolve_task
from e5_integrations._embedder import AsyncEmbedder, Embedder, adapter_encoder
from e5_integrations._encoder import model_name_from_aliases
from e5_integrations._recipe import get_recipe
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

__all__ = ["E5MistralEmbedding"]

#: LlamaIndex slices inputs into ``embed_batch_size`` lists before calling us; keep that
#: slicing coarse (its maximum) so the core's token budget decides the real GPU batches.
_EMBED_BATCH_SIZE = 2048
_CACHE_COLLECTION = "embeddings"


def _default_model_name() -> str:
    """``$E5_MODEL`` if set, else the public e5-mistral checkpoint."""
    return os.environ.get("E5_MODEL") or DEFAULT_MODEL


class E5MistralEmbedding(BaseEmbedding):
    """e5-mistral-7b-instruct embeddings for LlamaIndex.

    Queries get the task instruction; texts (nodes) are embedded as they are, or with the
    instruction too when the task is symmetric. Instances with the same ``model_name``,
    ``device`` and ``dtype`` share one loaded model.

    Example:
        .. code-block:: python

            from e5_integrations.llama_index import E5MistralEmbedding

            embed_model = E5MistralEmbedding(task="NQ")
            index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)
    """

    model_name: str = Field(
        default_factory=_default_model_name,
        description="Hugging Face model id or local directory; defaults to $E5_MODEL, "
        "else intfloat/e5-mistral-7b-instruct. model= is accepted too, as E5Encoder takes it.",
    )
    embed_batch_size: int = Field(
        default=_EMBED_BATCH_SIZE,
        description="Texts handed to the core per call; the core's token budget decides GPU batches.",
        gt=0,
        le=2048,
    )
    device: str | None = Field(
        default=None, description="Torch device ('cuda', 'cuda:1', 'cpu'); None picks CUDA when available."
    )
    dtype: str = Field(
        default="auto",
        description="Weight dtype: 'auto' (bf16/fp16 on GPU, fp32 on CPU), 'bf16', 'fp16' or 'fp32'.",
    )
    task: str = Field(
        default=DEFAULT_TASK,
        description="Registered task name ('NQ', 'STS' ...) or a one-sentence instruction; applied to "
        "queries, and to texts too when the task is symmetric.",
    )
    max_length: int | None = Field(
        default=None,
        description="Longest input in tokens, special tokens included; None: the recipe's reference "
        "default (4096 for e5-mistral, 512 for GritLM...).",
        gt=0,
    )
    batch_tokens: int = Field(default=16384, description="Token budget of one forward pass.", gt=0)
    show_progress: bool | None = Field(
        default=None, description="Show a progress bar while encoding; None shows one only for large inputs."
    )
    recipe: str | Recipe | None = Field(
        default=None,
        description="How the model embeds: a name from e5_integrations.available_recipes() ('sgpt', "
        "'qwen3-embedding' ...) or a Recipe; None picks the model's preset.",
    )

    base_url: str | None = Field(
        default=None,
        description="URL of an `e5 serve` server: embed there instead of loading the model here "
        "(remote mode; model_name, device, dtype and batching are the server's).",
    )
    api_key: SecretStr | None = Field(
        default=None, description="API key of that server (default $E5_API_KEY); never shown in repr."
    )

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

    @classmethod
    def class_name(cls) -> str:
        """Name LlamaIndex uses when it serialises this component."""
        return "E5MistralEmbedding"

    @property
    def encoder(self) -> Embedder:
        """The encoder this adapter delegates to: an :class:`E5Encoder`, or a
        :class:`~e5_integrations.server.RemoteEncoder` with ``base_url``."""
        return self._encoder

    # -- what LlamaIndex calls -------------------------------------------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        vector: Embedding = self._encoder.encode_queries([query], task=self.task)[0].tolist()
        return vector

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        vectors: list[Embedding] = self._encoder.encode_documents(list(texts), task=self.task).tolist()
        return vectors

    async def _aget_query_embedding(self, query: str) -> Embedding:
        if self.base_url is not None:  # remote mode: async HTTP
            vector: Embedding = (
                await cast(AsyncEmbedder, self._encoder).aencode_queries([query], task=self.task)
            )[0].tolist()
            return vector
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aget_text_embeddings([text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        if self.base_url is not None:
            found = await cast(AsyncEmbedder, self._encoder).aencode_documents(list(texts), task=self.task)
            vectors: list[Embedding] = found.tolist()
            return vectors
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    # -- keep queries and texts apart in the embeddings cache ----------------------------

    def _query_cache_key(self, query: str) -> str:
        return f"e5-query\x1f{self.task}\x1f{query}"

    def _without_cache(self) -> E5MistralEmbedding:
        """A shallow copy (same loaded model, same callbacks) that does not touch the cache."""
        return self.model_copy(update={"embeddings_cache": None})

    def get_query_embedding(self, query: str) -> Embedding:
        """Embed a query; with ``embeddings_cache`` set, under a query-only cache key."""
        cache = self.embeddings_cache
        if cache is None:
            return super().get_query_embedding(query)
        key = self._query_cache_key(query)
        hit = cache.get(key=key, collection=_CACHE_COLLECTION)
        if hit:
            return next(iter(hit.values()))
        vector = self._without_cache().get_query_embedding(query)
        cache.put(key=key, val={"embedding": vector}, collection=_CACHE_COLLECTION)
        return vector

    async def aget_query_embedding(self, query: str) -> Embedding:
        """Async :meth:`get_query_embedding`; the model runs in a worker thread."""
        cache = self.embeddings_cache
        if cache is None:
            return await super().aget_query_embedding(query)
        key = self._query_cache_key(query)
        hit = await cache.aget(key=key, collection=_CACHE_COLLECTION)
        if hit:
            return next(iter(hit.values()))
        vector = await self._without_cache().aget_query_embedding(query)
        await cache.aput(key=key, val={"embedding": vector}, collection=_CACHE_COLLECTION)
        return vector
