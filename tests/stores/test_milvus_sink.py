"""MilvusSink on a Milvus Lite file and on the C++ Milvus Lite 2.5 server (or $MILVUS_URI).

What every sink must do is in test_sink_contract.py; this file keeps what is Milvus's own.
"""

from __future__ import annotations

import time

import pytest

from e5_integrations import ConfigurationError, SchemaMismatchError, StoreError, StoreUnavailableError
from e5_integrations.ingest import Record
from tests.stores._chroma_server import free_port
from tests.stores._common import DIM, records
from tests.stores._milvus_server import running_milvus_server


def _foreign_collection(sink, dim: int, metric: str) -> None:
    """Create ``sink``'s collection directly with pymilvus (e.g. by another tool)."""
    sink._client.create_collection(
        sink.collection, dimension=dim, metric_type=metric, consistency_level="Strong"
    )


@pytest.mark.integration
def test_schema_and_dimension_mismatch_message(milvus_sink) -> None:
    sink = milvus_sink()
    sink.ensure_collection(DIM)
    fields = {f["name"]: f for f in sink._client.describe_collection(sink.collection)["fields"]}
    assert fields["pk"]["is_primary"] and fields["embedding"]["params"]["dim"] == DIM
    with pytest.raises(SchemaMismatchError, match=r"64-dimensional.*32-dimensional.*collection=.*drop\(\)"):
        milvus_sink(sink.collection).ensure_collection(32)


@pytest.mark.integration
def test_other_metric_is_a_schema_mismatch(milvus_sink) -> None:
    sink = milvus_sink()
    _foreign_collection(sink, DIM, "L2")
    with pytest.raises(SchemaMismatchError, match="fields"):  # also not our schema
        sink.ensure_collection(DIM)


@pytest.mark.integration
def test_other_metric_on_our_schema_is_a_schema_mismatch(milvus_sink) -> None:
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
def test_text_over_the_varchar_limit_is_refused_before_writing(milvus_sink) -> None:
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
def test_max_batch_records_is_sane_for_e5_mistral(milvus_sink) -> None:
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
def test_server_that_goes_away_raises_store_unavailable(tmp_path) -> None:
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


def test_invalid_collection_name_is_a_configuration_error(tmp_path) -> None:
    from e5_integrations.sinks.milvus import MilvusSink

    with pytest.raises(ConfigurationError, match="'e5-test'.*'_'"):
        MilvusSink(str(tmp_path / "m.db"), "e5-test")
