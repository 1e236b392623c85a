"""``E5MistralEmbeddings`` (LangChain): standard suites, parity with the core, sharing, async."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from pydantic import ValidationError

from e5_integrations import DEFAULT_TASK, E5Encoder
from e5_integrations.langchain import E5MistralEmbeddings

from .conftest import DOCS, MIN_COSINE, QUERY, row_cosines


class _OnTinyModel:
    """Points LangChain's standard suites at the tiny test model.

    The suites read ``embedding_model_params`` as a property; the autouse fixture runs
    before their ``model`` fixture and records the session's tiny model directory.
    """

    _model_dir: Path

    @pytest.fixture(autouse=True)
    def _use_tiny_model(self, tiny_model_dir: Path) -> None:
        self._model_dir = tiny_model_dir

    @property
    def embeddings_class(self) -> type[E5MistralEmbeddings]:
        return E5MistralEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_name": str(self._model_dir), "device": "cpu"}


class TestStandardUnit(_OnTinyModel, EmbeddingsUnitTests):
    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return {"E5_MODEL": str(self._model_dir)}, {"device": "cpu"}, {"model_name": str(self._model_dir)}


# The suite's async tests need pytest-asyncio's mark; the class-level mark also reaches the
# suite's sync tests, and pytest-asyncio warns about those.
@pytest.mark.asyncio
@pytest.mark.filterwarnings(r"ignore:The test <Function test_\w+> is marked with '@pytest.mark.asyncio' but")
class TestStandardIntegration(_OnTinyModel, EmbeddingsIntegrationTests):
    pass


@pytest.fixture
def embeddings(tiny_model_name: str) -> E5MistralEmbeddings:
    return E5MistralEmbeddings(model_name=tiny_model_name, device="cpu")


# -- parity with the core -----------------------------------------------------------------


def test_documents_equal_core_encode_documents(embeddings: E5MistralEmbeddings, encoder: E5Encoder) -> None:
    got = embeddings.embed_documents(DOCS)
    assert row_cosines(got, encoder.encode_documents(DOCS)).min() >= MIN_COSINE


def test_query_equals_core_encode_queries(embeddings: E5MistralEmbeddings, encoder: E5Encoder) -> None:
    got = embeddings.embed_query(QUERY)
    assert row_cosines(got, encoder.encode_queries([QUERY], task=DEFAULT_TASK)).min() >= MIN_COSINE
    # the instruction makes a query differ from the same string embedded as a document
    assert row_cosines(got, encoder.encode_documents([QUERY])).min() < 0.999


def test_async_equals_core(embeddings: E5MistralEmbeddings, encoder: E5Encoder) -> None:
    async def both() -> tuple[list[list[float]], list[float]]:
        return await embeddings.aembed_documents(DOCS), await embeddings.aembed_query(QUERY)

    docs, query = asyncio.run(both())
    assert row_cosines(docs, encoder.encode_documents(DOCS)).min() >= MIN_COSINE
    assert row_cosines(query, encoder.encode_queries([QUERY])).min() >= MIN_COSINE


def test_task_name_reaches_queries(tiny_model_name: str, encoder: E5Encoder) -> None:
    nq = E5MistralEmbeddings(model_name=tiny_model_name, device="cpu", task="NQ")
    got = nq.embed_query(QUERY)
    assert row_cosines(got, encoder.encode_queries([QUERY], task="NQ")).min() >= MIN_COSINE
    assert row_cosines(got, encoder.encode_queries([QUERY])).min() < 0.999
    # retrieval is asymmetric: documents stay instruction-free
    assert row_cosines(nq.embed_documents(DOCS), encoder.encode_documents(DOCS)).min() >= MIN_COSINE


def test_symmetric_task_instructs_documents_too(tiny_model_name: str, encoder: E5Encoder) -> None:
    sts = E5MistralEmbeddings(model_name=tiny_model_name, device="cpu", task="STS")
    docs = sts.embed_documents(DOCS)
    assert row_cosines(docs, encoder.encode_queries(DOCS, task="STS")).min() >= MIN_COSINE
    assert row_cosines(docs, encoder.encode_documents(DOCS)).max() < 0.999


def test_returns_plain_python_floats(embeddings: E5MistralEmbeddings) -> None:
    docs = embeddings.embed_documents(DOCS[:2])
    query = embeddings.embed_query(QUERY)
    assert all(type(x) is float for row in docs for x in row)
    assert all(type(x) is float for x in query)
    assert len(query) == embeddings.encoder.dimension == 64


def test_keeps_newlines(embeddings: E5MistralEmbeddings, encoder: E5Encoder) -> None:
    text = "line one\nline two"
    got = embeddings.embed_documents([text])
    assert row_cosines(got, encoder.encode_documents([text])).min() >= MIN_COSINE
    assert row_cosines(got, encoder.encode_documents(["line one line two"])).min() < 0.999


# -- one model per process ----------------------------------------------------------------


def test_instances_share_one_loaded_model(tiny_model_name: str, encoder: E5Encoder) -> None:
    first = E5MistralEmbeddings(model_name=tiny_model_name, device="cpu")
    second = E5MistralEmbeddings(model_name=tiny_model_name, device="cpu", task="NQ", show_progress=False)
    assert isinstance(first.encoder, E5Encoder) and isinstance(second.encoder, E5Encoder)
    assert first.encoder.loaded_models[0] is second.encoder.loaded_models[0]
    assert first.encoder.loaded_models[0] is encoder.loaded_models[0]


# -- async does not block -----------------------------------------------------------------


def test_aembed_documents_leaves_the_event_loop_running(embeddings: E5MistralEmbeddings) -> None:
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
        await asyncio.sleep(0)  # let the ticker start
        ticks_before = ticks
        await embeddings.aembed_documents(texts)
        done = True
        await task
        return ticks - ticks_before

    # A blocking implementation would let the ticker run at most once while encoding.
    assert asyncio.run(run()) > 5


# -- configuration ------------------------------------------------------------------------


def test_unknown_field_is_rejected(tiny_model_name: str) -> None:
    with pytest.raises(ValidationError, match="model_kwargs"):
        E5MistralEmbeddings(model_name=tiny_model_name, model_kwargs={"device": "cpu"})


def test_mistyped_task_name_is_rejected_with_suggestions(tiny_model_name: str) -> None:
    with pytest.raises(ValidationError, match="NQ"):
        E5MistralEmbeddings(model_name=tiny_model_name, task="NQQ")


@pytest.mark.parametrize("field", ["max_length", "batch_tokens"])
def test_sizes_must_be_positive(tiny_model_name: str, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        E5MistralEmbeddings(model_name=tiny_model_name, **{field: 0})


def test_defaults(monkeypatch: pytest.MonkeyPatch, tiny_model_name: str) -> None:
    monkeypatch.delenv("E5_MODEL", raising=False)
    fields = E5MistralEmbeddings.model_fields
    assert fields["model_name"].default_factory() == "intfloat/e5-mistral-7b-instruct"  # type: ignore[misc,call-arg]
    assert fields["task"].default == DEFAULT_TASK
    assert "web search query" in DEFAULT_TASK
    assert all(field.description for field in fields.values()), "every field is documented"


def test_import_without_langchain_core_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("e5_integrations.langchain")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "langchain_core", None)
    with pytest.raises(ImportError, match=r"pip install 'e5-integrations\[langchain\]'"):
        importlib.import_module("e5_integrations.langchain")


def test_embed_no_documents(embeddings: E5MistralEmbeddings) -> None:
    assert embeddings.embed_documents([]) == []


def test_model_is_accepted_like_e5encoder_takes_it(tiny_model_name: str, encoder: E5Encoder) -> None:
    """``E5Encoder(model=...)`` and the adapter's ``model_name=`` name the same thing: both work."""
    by_model = E5MistralEmbeddings(model=tiny_model_name, device="cpu")
    assert by_model.model_name == tiny_model_name
    assert isinstance(by_model.encoder, E5Encoder)
    assert by_model.encoder.loaded_models[0] is encoder.loaded_models[0]
    same = E5MistralEmbeddings(model=tiny_model_name, model_name=tiny_model_name, device="cpu")
    assert same.model_name == tiny_model_name
    with pytest.raises(ValidationError, match="name different models"):
        E5MistralEmbeddings(model=tiny_model_name, model_name="intfloat/e5-mistral-7b-instruct", device="cpu")


def test_recipe_is_passed_to_the_core(tiny_model_name: str) -> None:
    embeddings = E5MistralEmbeddings(model_name=tiny_model_name, device="cpu", recipe="prompteol")
    core = E5Encoder(tiny_model_name, device="cpu", recipe="prompteol")
    assert embeddings.encoder.recipe is not None and embeddings.encoder.recipe.name == "prompteol"
    assert row_cosines(embeddings.embed_documents(DOCS), core.encode_documents(DOCS)).min() >= MIN_COSINE
    assert row_cosines(embeddings.embed_query(QUERY), core.encode_queries([QUERY])).min() >= MIN_COSINE
    e5 = E5Encoder(tiny_model_name, device="cpu").encode_documents(DOCS)
    assert row_cosines(embeddings.embed_documents(DOCS), e5).min() < 0.999  # PromptEOL's template was applied


def test_unknown_recipe_is_a_validation_error_listing_the_valid_ones(tiny_model_name: str) -> None:
    with pytest.raises(ValidationError, match="valid recipes: .*sgpt"):
        E5MistralEmbeddings(model_name=tiny_model_name, device="cpu", recipe="bert-cls")
