"""QdrantSink in local mode (memory and folder) and, with QDRANT_URL, on a real server.

What every sink must do is in test_sink_contract.py; this file keeps what is Qdrant's own.
"""

from __future__ import annotations

import time
import uuid

import pytest

from e5_integrations import ConfigurationError, SchemaMismatchError, StoreUnavailableError
from e5_integrations.ingest import Record
from tests.stores._common import DIM, records

pytestmark = pytest.mark.integration


def test_dimension_mismatch_names_size_and_distance(qdrant_sink) -> None:
    sink = qdrant_sink()
    sink.ensure_collection(DIM)
    with pytest.raises(SchemaMismatchError, match="64-dim Cosine.*32-dim cosine"):
        sink.ensure_collection(32)


def test_other_distance_is_a_schema_mismatch(qdrant_sink) -> None:
    from qdrant_client import models

    sink = qdrant_sink()
    sink._client.create_collection(
        sink.collection, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.EUCLID)
    )
    with pytest.raises(SchemaMismatchError, match="Euclid"):
        sink.ensure_collection(DIM)


def test_point_ids_are_uuid5_of_chunk_ids(qdrant_sink) -> None:
    from e5_integrations.sinks.qdrant import POINT_ID_NAMESPACE, point_id

    assert point_id("docs/a.txt#0") == str(uuid.uuid5(POINT_ID_NAMESPACE, "docs/a.txt#0"))
    sink = qdrant_sink()
    sink.ensure_collection(DIM)
    sink.upsert(records(2))
    stored = sink._client.retrieve(sink.collection, ids=[point_id("docs/a.txt#1")], with_payload=True)
    assert stored[0].payload["id"] == "docs/a.txt#1"


def test_large_vectors_are_split_under_the_request_limit(qdrant_sink) -> None:
    from e5_integrations.sinks import qdrant as module

    sink = qdrant_sink(on_disk=True, quantization="int8")
    per_batch = sink.max_batch_records(4096)
    assert 50 <= per_batch <= 400
    assert per_batch * 4096 * 24 < module.REQUEST_LIMIT_BYTES
    sink.ensure_collection(4096)
    long_text = "x" * 300_000  # far more than the per-record estimate
    big = [Record(f"r{i}", long_text, {}, r.embedding) for i, r in enumerate(records(100, 4096))]
    chunks = list(module._split_by_size(_points(big)))
    assert len(chunks) > 1 and sum(map(len, chunks)) == 100
    sink.upsert(big)
    assert sink.count() == 100


def _points(rs: list[Record]) -> list:
    from qdrant_client import models

    return [
        models.PointStruct(id=str(uuid.uuid4()), vector=r.embedding.tolist(), payload={"text": r.text})
        for r in rs
    ]


def test_folder_persists_across_clients(tmp_path) -> None:
    from e5_integrations.sinks.qdrant import QdrantSink

    path = str(tmp_path / "store")
    with QdrantSink(path, "docs") as sink:
        sink.ensure_collection(DIM)
        sink.upsert(records(7))
    with QdrantSink(path, "docs") as again:
        with pytest.raises(SchemaMismatchError):
            again.ensure_collection(DIM + 1)
        assert again.count() == 7


def test_bad_quantization_is_refused() -> None:
    from e5_integrations.sinks.qdrant import QdrantSink

    with pytest.raises(ConfigurationError, match="int8"):
        QdrantSink(":memory:", "c", quantization="binary")


def test_unreachable_server_fails_fast() -> None:
    from e5_integrations.sinks.qdrant import QdrantSink

    sink = QdrantSink(
        "http://127.0.0.1:1",
        "c",
        retry_seconds=0.5,
        timeout=2,
        check_compatibility=False,  # passed to QdrantClient (the sink's default too)
    )
    started = time.perf_counter()
    with pytest.raises(StoreUnavailableError, match="retry_seconds="):
        sink.ensure_collection(DIM)
    assert time.perf_counter() - started < 10
    sink.close()
