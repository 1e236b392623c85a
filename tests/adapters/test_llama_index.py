"""``E5MistralEmbedding`` (LlamaIndex): parity with the core, the embeddings cache, sharing."""

from __future__ import annotations

import asyncio
import importlib
import sys

import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.storage.kvstore import SimpleKVStore
from pydantic import ValidationError

from e5_integrations import DEFAULT_TASK, E5Encoder
from e5_integrations.langchain import E5MistralEmbeddings
from e5_integrations.llama_index import E5MistralEmbedding

from .conftest import DOCS, MIN_COSINE, QUERY, row_cosines


@pytest.fixture
def embed_model(tiny_model_name: str) -> E5MistralEmbedding:
    return E5MistralEmbedding(model_name=tiny_model_name, device="cpu")


def test_is_a_llama_index_embedding(embed_model: E5MistralEmbedding) -> None:
    assert isinstance(embed_model, BaseEmbedding)
    assert E5MistralEmbedding.class_name() == "E5MistralEmbedding"
    assert embed_model.embed_batch_size >= 1024, "LlamaIndex slicing must not decide GPU batches"


# -- parity with the core -----------------------------------------------------------------


def test_sync_equals_core(embed_model: E5MistralEmbedding, encoder: E5Encoder) -> None:
    docs = encoder.encode_documents(DOCS)
    assert row_cosines(embed_model.get_text_embedding_batch(DOCS), docs).min() >= MIN_COSINE
    assert row_cosines(embed_model.get_text_embedding(DOCS[1]), docs[1]).min() >= MIN_COSINE
    query = embed_model.get_query_embedding(QUERY)
    assert row_cosines(query, encoder.encode_queries([QUERY], task=DEFAULT_TASK)).min() >= MIN_COSINE
    assert all(type(x) is float for x in query)


def test_async_equals_core(embed_model: E5MistralEmbedding, encoder: E5Encoder) -> None:
    async def run() -> tuple[list[list[float]], list[float], list[float]]:
        return (
            await embed_model.aget_text_embedding_batch(DOCS),
            await embed_model.aget_text_embedding(DOCS[1]),
            await embed_model.aget_query_embedding(QUERY),
        )

    batch, single, query = asyncio.run(run())
    docs = encoder.encode_documents(DOCS)
    assert row_cosines(batch, docs).min() >= MIN_COSINE
    assert row_cosines(single, docs[1]).min() >= MIN_COSINE
    assert row_cosines(query, encoder.encode_queries([QUERY])).min() >= MIN_COSINE


def test_task_reaches_queries_and_symmetric_documents(tiny_model_name: str, encoder: E5Encoder) -> None:
    nq = E5MistralEmbedding(model_name=tiny_model_name, device="cpu", task="NQ")
    got = nq.get_query_embedding(QUERY)
    assert row_cosines(got, encoder.encode_queries([QUERY], task="NQ")).min() >= MIN_COSINE
    assert row_cosines(got, encoder.encode_queries([QUERY])).min() < 0.999
    sts = E5MistralEmbedding(model_name=tiny_model_name, device="cpu", task="STS")
    docs = sts.get_text_embedding_batch(DOCS)
    assert row_cosines(docs, encoder.encode_queries(DOCS, task="STS")).min() >= MIN_COSINE


def test_async_batch_leaves_the_event_loop_running(embed_model: E5MistralEmbedding) -> None:
    texts = [f"{doc} ({i})" for i in range(40) for doc in DOCS[:3]]

    async def run() -> int:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        await embed_model.aget_text_embedding_batch(texts)
        done = True
        await task
        return ticks - before

    assert asyncio.run(run()) > 5


# -- the embeddings cache -----------------------------------------------------------------


def test_cache_keeps_query_and_text_of_one_string_apart(tiny_model_name: str, encoder: E5Encoder) -> None:
    text = DOCS[0]
    want_doc = encoder.encode_documents([text])
    want_query = encoder.encode_queries([text])
    for order in ("text-first", "query-first"):
        cache = SimpleKVStore()
        model = E5MistralEmbedding(model_name=tiny_model_name, device="cpu", embeddings_cache=cache)
        if order == "text-first":
            doc, query = model.get_text_embedding(text), model.get_query_embedding(text)
        else:
            query, doc = model.get_query_embedding(text), model.get_text_embedding(text)
        assert row_cosines(doc, want_doc).min() >= MIN_COSINE, order
        assert row_cosines(query, want_query).min() >= MIN_COSINE, order
        assert len(cache.get_all(collection="embeddings")) == 2, order
        # served from the cache the second time, still each from its own entry
        assert model.get_text_embedding_batch([text]) == [doc]
        assert model.get_query_embedding(text) == query


def test_cache_async_paths_keep_query_and_text_apart(tiny_model_name: str, encoder: E5Encoder) -> None:
    text = DOCS[2]
    model = E5MistralEmbedding(model_name=tiny_model_name, device="cpu", embeddings_cache=SimpleKVStore())

    async def run() -> tuple[list[float], list[float], list[list[float]], list[float]]:
        doc = await model.aget_text_embedding(text)
        query = await model.aget_query_embedding(text)
        doc_again = await model.aget_text_embedding_batch([text])
        return doc, query, doc_again, await model.aget_query_embedding(text)

    doc, query, doc_again, query_again = asyncio.run(run())
    assert row_cosines(doc, encoder.encode_documents([text])).min() >= MIN_COSINE
    assert row_cosines(query, encoder.encode_queries([text])).min() >= MIN_COSINE
    assert doc_again == [doc] and query_again == query


def test_cache_shared_by_two_tasks_keeps_queries_apart(tiny_model_name: str, encoder: E5Encoder) -> None:
    cache = SimpleKVStore()
    web = E5MistralEmbedding(model_name=tiny_model_name, device="cpu", embeddings_cache=cache)
    nq = E5MistralEmbedding(model_name=tiny_model_name, device="cpu", embeddings_cache=cache, task="NQ")
    web.get_query_embedding(QUERY)
    got = nq.get_query_embedding(QUERY)
    assert row_cosines(got, encoder.encode_queries([QUERY], task="NQ")).min() >= MIN_COSINE


# -- one model per process, configuration -------------------------------------------------


def test_shares_the_loaded_model_with_langchain_and_core(tiny_model_name: str, encoder: E5Encoder) -> None:
    first = E5MistralEmbedding(model_name=tiny_model_name, device="cpu")
    second = E5MistralEmbedding(model_name=tiny_model_name, device="cpu", task="NQ", max_length=512)
    langchain = E5MistralEmbeddings(model_name=tiny_model_name, device="cpu")
    model = encoder.loaded_models[0]
    assert isinstance(first.encoder, E5Encoder) and isinstance(second.encoder, E5Encoder)
    assert isinstance(langchain.encoder, E5Encoder)
    assert first.encoder.loaded_models[0] is model
    assert second.encoder.loaded_models[0] is model
    assert langchain.encoder.loaded_models[0] is model


def test_round_trips_through_to_dict(embed_model: E5MistralEmbedding, tiny_model_name: str) -> None:
    data = embed_model.to_dict()
    assert data["class_name"] == "E5MistralEmbedding"
    again = E5MistralEmbedding.from_dict(data)
    assert (again.model_name, again.task, again.device) == (tiny_model_name, DEFAULT_TASK, "cpu")
    assert isinstance(again.encoder, E5Encoder) and isinstance(embed_model.encoder, E5Encoder)
    assert again.encoder.loaded_models[0] is embed_model.encoder.loaded_models[0]


def test_mistyped_task_name_is_rejected(tiny_model_name: str) -> None:
    with pytest.raises(ValidationError, match="NQ"):
        E5MistralEmbedding(model_name=tiny_model_name, task="NQQ")


@pytest.mark.parametrize("field", ["max_length", "batch_tokens", "embed_batch_size"])
def test_sizes_must_be_positive(tiny_model_name: str, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        E5MistralEmbedding(model_name=tiny_model_name, **{field: 0})


def test_defaults(monkeypatch: pytest.MonkeyPatch, tiny_model_name: str) -> None:
    fields = E5MistralEmbedding.model_fields
    monkeypatch.delenv("E5_MODEL", raising=False)
    assert fields["model_name"].default_factory() == "intfloat/e5-mistral-7b-instruct"  # type: ignore[misc,call-arg]
    monkeypatch.setenv("E5_MODEL", tiny_model_name)
    assert E5MistralEmbedding(device="cpu").model_name == tiny_model_name
    assert fields["task"].default == DEFAULT_TASK
    for name in ("model_name", "device", "dtype", "task", "max_length", "batch_tokens", "show_progress"):
        assert fields[name].description, f"{name} is documented"


def test_import_without_llama_index_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("e5_integrations.llama_index")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "llama_index.core", None)
    with pytest.raises(ImportError, match=r"pip install 'e5-integrations\[llama-index\]'"):
        importlib.import_module("e5_integrations.llama_index")


def test_model_is_accepted_like_e5encoder_takes_it(tiny_model_name: str, encoder: E5Encoder) -> None:
    """``E5Encoder(model=...)`` and the adapter's ``model_name=`` name the same thing: both work."""
    by_model = E5MistralEmbedding(model=tiny_model_name, device="cpu")
    assert by_model.model_name == tiny_model_name
    assert isinstance(by_model.encoder, E5Encoder)
    assert by_model.encoder.loaded_models[0] is encoder.loaded_models[0]
    with pytest.raises(ValidationError, match="name different models"):
        E5MistralEmbedding(model=tiny_model_name, model_name="intfloat/e5-mistral-7b-instruct", device="cpu")


def test_recipe_is_passed_to_the_core(tiny_model_name: str) -> None:
    embed_model = E5MistralEmbedding(model_name=tiny_model_name, device="cpu", recipe="echo")
    core = E5Encoder(tiny_model_name, device="cpu", recipe="echo")
    assert embed_model.encoder.recipe is not None and embed_model.encoder.recipe.name == "echo"
    cos = row_cosines(embed_model.get_text_embedding_batch(DOCS), core.encode_documents(DOCS))
    assert cos.min() >= MIN_COSINE
    query = core.encode_queries([QUERY], task=DEFAULT_TASK)
    assert row_cosines(embed_model.get_query_embedding(QUERY), query).min() >= MIN_COSINE


def test_unknown_recipe_is_a_validation_error_listing_the_valid_ones(tiny_model_name: str) -> None:
    with pytest.raises(ValidationError, match="valid recipes: .*sgpt"):
        E5MistralEmbedding(model_name=tiny_model_name, device="cpu", recipe="bert-cls")
