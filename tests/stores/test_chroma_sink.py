"""ChromaSink on an embedded PersistentClient folder and on a real `chroma run` server.

What every sink must do is in test_sink_contract.py; this file keeps what is Chroma's own.
"""

from __future__ import annotations

import time

import pytest

from e5_integrations import ConfigurationError, SchemaMismatchError, StoreUnavailableError
from e5_integrations.ingest import CONTENT_HASH_KEY, Record
from tests.stores._chroma_server import free_port, running_chroma_server
from tests.stores._common import DIM, records


@pytest.mark.integration
def test_dimension_mismatch_message_and_recorded_dimension(chroma_sink) -> None:
    sink = chroma_sink()
    sink.ensure_collection(DIM)
    other = chroma_sink(sink.collection)
    with pytest.raises(SchemaMismatchError, match=r"64-dimensional.*32-dimensional.*collection=.*drop\(\)"):
        other.ensure_collection(32)
    assert other._client.get_collection(sink.collection).metadata == {"e5_dim": DIM}


@pytest.mark.integration
def test_dimension_of_a_foreign_collection_is_read_from_its_vectors(chroma_sink) -> None:
    sink = chroma_sink()
    foreign = sink._client.create_collection(
        sink.collection, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
    )
    foreign.add(ids=["x"], embeddings=[[1.0] * 16])
    with pytest.raises(SchemaMismatchError, match="16-dimensional"):
        sink.ensure_collection(DIM)
    assert sink.count() == 1


@pytest.mark.integration
def test_other_distance_is_a_schema_mismatch(chroma_sink) -> None:
    sink = chroma_sink()
    sink._client.create_collection(sink.collection, embedding_function=None)  # l2 by default
    with pytest.raises(SchemaMismatchError, match="'l2'.*'cosine'"):
        sink.ensure_collection(DIM)


@pytest.mark.integration
def test_replacing_a_record_removes_its_old_metadata_keys(chroma_sink) -> None:
    sink = chroma_sink()
    sink.ensure_collection(DIM)
    vector = records(1)[0].embedding
    sink.upsert([Record("r", "one", {"old": 1, "nested": {"a": 1}, CONTENT_HASH_KEY: "h1"}, vector)])
    sink.upsert([Record("r", "two", {CONTENT_HASH_KEY: "h2"}, vector)])
    [hit] = sink.search(vector, 1)
    assert (hit.text, dict(hit.metadata)) == ("two", {CONTENT_HASH_KEY: "h2"})


@pytest.mark.integration
def test_max_batch_records_is_sane_for_e5_mistral(chroma_sink) -> None:
    sink = chroma_sink()
    n = sink.max_batch_records(4096)
    assert 16 <= n <= sink._client.get_max_batch_size()
    assert n * 4096 * 24 < 64 * 1024 * 1024  # JSON request well under 64 MiB


def test_unreachable_server_raises_quickly() -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Chroma at {uri}.*retry_seconds="):
        ChromaSink(uri, "e5-test", retry_seconds=0.5)
    assert time.monotonic() - start < 5


@pytest.mark.integration
def test_server_that_goes_away_raises_store_unavailable(tmp_path) -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    with running_chroma_server(tmp_path) as url:
        sink = ChromaSink(url, "e5-going-away", retry_seconds=0.5)
        sink.ensure_collection(DIM)
        sink.upsert(records(2))
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Chroma at {url}"):
        sink.count()
    assert time.monotonic() - start < 5
    sink.close()


def test_invalid_collection_name_is_a_configuration_error(tmp_path) -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    with pytest.raises(ConfigurationError, match="a!"):
        ChromaSink(str(tmp_path / "c"), "a!")
