"""MilvusSink on a Milvus Lite file and on the C++ Milvus Lite 2.5 server (or $MILVUS_URI).

What every sink must do is in test_sink_contract.py; this file keeps what is Milvus's own.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from e5_integrations import ConfigurationError, SchemaMismatchError, StoreError, StoreUnavailableError
from e5_integrations.ingest import Record
from tests.stores._chroma_server import free_port
from tests.stores._common import DIM, SinkFactory, records
from tests.stores._milvus_server import running_milvus_server

if TYPE_CHECKING:
    from e5_integrations.sinks.milvus import MilvusSink


def _foreign_collection(sink: MilvusSink, dim: int, metric: str) -> None:
    """Create ``sink``'s collection directly with pymilvus (e.g. by another tool)."""
    sink._client.create_collection(
        sink.collection, dimension=dim, metric_type=metric, consistency_level="Strong"
    )


@pytest.mark.integration
def test_schema_and_dimension_mismatch_message(milvus_sink: SinkFactory[MilvusSink]) -> None:
    sink = milvus_sink()
    sink.ensure_collection(DIM)
    fields = {f["name"]: f for f in sink._client.describe_collection(sink.collection)["fields"]}
    assert fields["pk"]["is_primary"] and fields["embedding"]["params"]["dim"] == DIM
    with pytest.raises(SchemaMismatchError, match=r"64-dimensional.*32-dimensional.*collection=.*drop\(\)"):
        milvus_sink(sink.collection).ensure_collection(32)


@pytest.mark.integration
def test_other_metric_is_a_schema_mismatch(milvus_sink: SinkFactory[MilvusSink]) -> None:
    sink = milvus_sink()
    _foreign_collection(sink, DIM, "L2")
    with pytest.raises(SchemaMismatchError, match="fields"):  # also not our schema
        sink.ensure_collection(DIM)


@pytest.mark.integration
def test_other_metric_on_our_schema_is_a_schema_mismatch(milvus_sink: SinkFactory[MilvusSink]) -> None:
    sink = milvus_sink()
    sink.ensure_collection(DIM)
    client, name = sink._client, sink.collection
    client.release_collection(name)
    client.drop_index(name, "embedding")
    index = client.prepare_index_params()
    index.add_index(field_name="embedding", index_type="FLAT", metric_type="L2")
    client.create_index(name, index)
    with pytest.raises(SchemaMismatchError, match="'L2'.*'COSINE'"):
        milvus_sink(name).ensure_collection(DIM)


@pytest.mark.integration
def test_text_over_the_varchar_limit_is_refused_before_writing(milvus_sink: SinkFactory[MilvusSink]) -> None:
    sink = milvus_sink()
    sink.ensure_collection(DIM)
    ok, too_long = records(2)
    too_long = Record(too_long.id, "é" * 40_000, {}, too_long.embedding)  # 80,000 bytes
    with pytest.raises(StoreError, match=r"80000 bytes.*65535"):
        sink.upsert([ok, too_long])
    assert sink.count() == 0
    at_limit = Record(too_long.id, "a" * 65_535, {}, too_long.embedding)
    sink.upsert([at_limit])
    assert sink.search(at_limit.embedding, 1)[0].text == at_limit.text


@pytest.mark.integration
def test_max_batch_records_is_sane_for_e5_mistral(milvus_sink: SinkFactory[MilvusSink]) -> None:
    sink = milvus_sink()
    n = sink.max_batch_records(4096)
    assert n >= 64
    worst_case = n * (4096 * 4 + 65_535 + 4096 + 8192)
    assert worst_case < 48 * 1024 * 1024  # under the 64 MiB gRPC limit, with room


def test_unreachable_server_raises_quickly() -> None:
    from e5_integrations.sinks.milvus import MilvusSink

    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Milvus at {uri}.*retry_seconds="):
        MilvusSink(uri, "e5_test", timeout=2, retry_seconds=0.5)
    assert time.monotonic() - start < 10


@pytest.mark.integration
def test_server_that_goes_away_raises_store_unavailable(tmp_path: Path) -> None:
    from e5_integrations.sinks.milvus import MilvusSink

    with running_milvus_server(tmp_path) as uri:
        sink = MilvusSink(uri, "e5_going_away", timeout=1, retry_seconds=0.5)
        sink.ensure_collection(DIM)
        sink.upsert(records(2))
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Milvus at {uri}"):
        sink.count()
    assert time.monotonic() - start < 10
    sink.close()


def test_invalid_collection_name_is_a_configuration_error(tmp_path: Path) -> None:
    from e5_integrations.sinks.milvus import MilvusSink

    with pytest.raises(ConfigurationError, match="'e5-test'.*'_'"):
        MilvusSink(str(tmp_path / "m.db"), "e5-test")


# -- framework layouts (tests/frameworks/test_milvus_frameworks.py runs the frameworks' classes) --


@pytest.mark.parametrize(
    ("layout", "key"),
    [("langchain", "pk"), ("langchain", "text"), ("langchain", "vector"), ("llama-index", "id"),
     ("llama-index", "embedding"), ("llama-index", "text")],
)  # fmt: skip
def test_metadata_keys_named_like_a_schema_field_are_refused(layout: str, key: str) -> None:
    from e5_integrations.ingest._sources import Document
    from e5_integrations.sinks.milvus import MilvusSink

    document = Document(id="a", text="t", source="a.jsonl", metadata={key: 1})
    assert re.search(
        rf"field {key!r}.*{layout} layout.*rename", MilvusSink.check_document(document, layout) or ""
    )
    assert MilvusSink.check_document(document, "e5") is None  # one JSON field there


@pytest.mark.integration
@pytest.mark.parametrize(
    ("layout", "expected", "metric"),
    [
        ("langchain", {"text": "VARCHAR", "pk": "VARCHAR", "vector": "FLOAT_VECTOR"}, "L2"),
        (
            "llama-index",
            {"id": "VARCHAR", "doc_id": "VARCHAR", "text": "VARCHAR", "embedding": "FLOAT_VECTOR"},
            "COSINE",
        ),
    ],
)
def test_framework_layouts_create_the_classes_schema(
    milvus_sink: SinkFactory[MilvusSink], layout: str, expected: dict, metric: str
) -> None:
    sink = milvus_sink(layout=layout)
    sink.ensure_collection(DIM)
    info = sink._client.describe_collection(sink.collection)
    assert {f["name"]: f["type"].name for f in info["fields"]} == expected
    assert info["enable_dynamic_field"] and not info["auto_id"]
    primary = next(f for f in info["fields"] if f.get("is_primary"))
    assert (primary["name"], primary["params"]["max_length"]) == (
        ("pk" if layout == "langchain" else "id"),
        65535,
    )
    assert sink._metric() == metric
    fresh = milvus_sink(sink.collection)  # found again from the schema
    assert fresh.layout.name == layout


@pytest.mark.integration
def test_a_langchain_collection_without_dynamic_fields_is_refused(
    milvus_sink: SinkFactory[MilvusSink], milvus_uri: str
) -> None:
    """``Milvus(...)`` with default arguments types the first document's metadata keys as
    fields: there is no room for e5's bookkeeping, and ingest says how to make it instead."""
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_milvus import Milvus

    sink = milvus_sink()
    app = Milvus(
        DeterministicFakeEmbedding(size=DIM),
        collection_name=sink.collection,
        connection_args={"uri": milvus_uri},
    )
    app.add_texts(["a", "b"], metadatas=[{"lang": "en"}, {"lang": "de"}], ids=["x", "y"])
    assert sink.layout.name == "langchain"
    with pytest.raises(SchemaMismatchError, match=r"without dynamic fields.*enable_dynamic_field=True"):
        sink.ensure_collection(DIM)
    assert sink.count() == 2


@pytest.mark.integration
def test_an_l2_collection_with_vectors_that_are_not_unit_norm_is_not_searched(
    milvus_sink: SinkFactory[MilvusSink],
) -> None:
    sink = milvus_sink(layout="langchain")
    sink.ensure_collection(DIM)
    rs = records(3)
    sink.upsert([Record(r.id, r.text, r.metadata, 3 * r.embedding) for r in rs])
    with pytest.raises(SchemaMismatchError, match="'L2' metric.*not unit-norm"):
        sink.search(rs[0].embedding, 2)
