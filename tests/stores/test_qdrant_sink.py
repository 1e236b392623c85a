"""QdrantSink in local mode (memory and folder) and, with QDRANT_URL, on a real server."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from e5_integrations import ConfigurationError, SchemaMismatchError, StoreUnavailableError
from e5_integrations.ingest import CONTENT_HASH_KEY, Record, open_sink

pytestmark = pytest.mark.integration

DIM = 64


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _records(n: int, dim: int = DIM, seed: int = 0) -> list[Record]:
    vectors = _unit(np.random.default_rng(seed).standard_normal((n, dim)))
    return [
        Record(f"docs/a.txt#{i}", f"text {i}", {CONTENT_HASH_KEY: f"h{i}", "chunk_index": i}, vectors[i])
        for i in range(n)
    ]


def test_create_then_validate_dimension_and_distance(qdrant_sink) -> None:
    sink = qdrant_sink()
    assert sink.count() == 0
    sink.ensure_collection(DIM)
    sink.ensure_collection(DIM)
    with pytest.raises(SchemaMismatchError, match="64-dim Cosine.*32-dim cosine"):
        sink.ensure_collection(32)
    assert sink.count() == 0


def test_other_distance_is_a_schema_mismatch(qdrant_sink) -> None:
    from qdrant_client import models

    sink = qdrant_sink()
    sink._client.create_collection(
        sink.collection, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.EUCLID)
    )
    with pytest.raises(SchemaMismatchError, match="Euclid"):
        sink.ensure_collection(DIM)


def test_upsert_twice_is_idempotent(qdrant_sink) -> None:
    sink = qdrant_sink()
    sink.ensure_collection(DIM)
    records = _records(150)
    sink.upsert(records)
    sink.upsert(records)
    assert sink.count() == 150
    changed = Record(records[7].id, "new", {CONTENT_HASH_KEY: "h-new"}, records[7].embedding)
    sink.upsert([changed])
    assert sink.count() == 150
    assert sink.fetch_hashes([records[7].id]) == {records[7].id: "h-new"}


def test_point_ids_are_uuid5_of_chunk_ids(qdrant_sink) -> None:
    from e5_integrations.sinks.qdrant import POINT_ID_NAMESPACE, point_id

    assert point_id("docs/a.txt#0") == str(uuid.uuid5(POINT_ID_NAMESPACE, "docs/a.txt#0"))
    sink = qdrant_sink()
    sink.ensure_collection(DIM)
    sink.upsert(_records(2))
    stored = sink._client.retrieve(sink.collection, ids=[point_id("docs/a.txt#1")], with_payload=True)
    assert stored[0].payload["id"] == "docs/a.txt#1"


def test_fetch_hashes_returns_only_stored_ids(qdrant_sink) -> None:
    sink = qdrant_sink()
    assert sink.fetch_hashes(["x"]) == {}  # no collection yet
    sink.ensure_collection(DIM)
    records = _records(10)
    sink.upsert(records)
    assert sink.fetch_hashes([records[1].id, records[9].id, "missing"]) == {
        records[1].id: "h1",
        records[9].id: "h9",
    }


def test_search_returns_nearest_first_with_chunk_ids(qdrant_sink) -> None:
    sink = qdrant_sink()
    sink.ensure_collection(DIM)
    records = _records(200)
    sink.upsert(records)
    vectors = np.stack([r.embedding for r in records])
    query = _unit(records[17].embedding + 0.05 * np.random.default_rng(1).standard_normal(DIM))
    hits = sink.search(query, 5)
    expected = np.argsort(-(vectors @ query))[:5]
    assert [h.id for h in hits] == [records[i].id for i in expected]
    assert hits[0].score == pytest.approx(float(vectors[17] @ query), abs=1e-4)
    assert hits[0].text == "text 17"


def test_metadata_round_trip_nested_unicode(qdrant_sink) -> None:
    sink = qdrant_sink()
    sink.ensure_collection(DIM)
    metadata = {
        CONTENT_HASH_KEY: "abc",
        "source": "données/日本語.txt",
        "nested": {"list": [1, 2.5, None, True], "emoji": "🙂"},
    }
    vector = _records(1)[0].embedding
    sink.upsert([Record("ü-1", "Grüße, 世界 🙂", metadata, vector)])
    hit = sink.search(vector, 1)[0]
    assert (hit.id, hit.text, dict(hit.metadata)) == ("ü-1", "Grüße, 世界 🙂", metadata)


def test_delete_and_drop(qdrant_sink) -> None:
    sink = qdrant_sink()
    sink.ensure_collection(DIM)
    records = _records(5)
    sink.upsert(records)
    sink.delete([records[0].id, records[1].id, "missing"])
    assert sink.count() == 3
    sink.drop()
    assert sink.count() == 0


def test_large_vectors_are_split_under_the_request_limit(qdrant_sink) -> None:
    from e5_integrations.sinks import qdrant as module

    sink = qdrant_sink(on_disk=True, quantization="int8")
    per_batch = sink.max_batch_records(4096)
    assert 50 <= per_batch <= 400
    assert per_batch * 4096 * 24 < module.REQUEST_LIMIT_BYTES
    sink.ensure_collection(4096)
    long_text = "x" * 300_000  # far more than the per-record estimate
    records = [Record(f"r{i}", long_text, {}, r.embedding) for i, r in enumerate(_records(100, 4096))]
    chunks = list(module._split_by_size(_points(records)))
    assert len(chunks) > 1 and sum(map(len, chunks)) == 100
    sink.upsert(records)
    assert sink.count() == 100


def _points(records: list[Record]) -> list:
    from qdrant_client import models

    return [
        models.PointStruct(id=str(uuid.uuid4()), vector=r.embedding.tolist(), payload={"text": r.text})
        for r in records
    ]


def test_folder_persists_across_clients(tmp_path) -> None:
    from e5_integrations.sinks.qdrant import QdrantSink

    path = str(tmp_path / "store")
    with QdrantSink(path, "docs") as sink:
        sink.ensure_collection(DIM)
        sink.upsert(_records(7))
    with QdrantSink(path, "docs") as again:
        with pytest.raises(SchemaMismatchError):
            again.ensure_collection(DIM + 1)
        assert again.count() == 7


def test_open_sink_registry_resolves_qdrant() -> None:
    sink = open_sink("qdrant", ":memory:", "c")
    assert sink.name == "qdrant"
    sink.close()
    sink.close()  # safe twice


def test_bad_quantization_is_refused() -> None:
    from e5_integrations.sinks.qdrant import QdrantSink

    with pytest.raises(ConfigurationError, match="int8"):
        QdrantSink(":memory:", "c", quantization="binary")


def test_unreachable_server_fails_fast() -> None:
    from e5_integrations.sinks.qdrant import QdrantSink

    sink = QdrantSink(
        "http://127.0.0.1:1",
        "c",
        retry_attempts=3,
        retry_base_delay=0.01,
        timeout=2,
        check_compatibility=False,  # passed to QdrantClient: its version probe warns from a thread
    )
    started = time.perf_counter()
    with pytest.raises(StoreUnavailableError, match="after 3 attempts"):
        sink.ensure_collection(DIM)
    assert time.perf_counter() - started < 10
    sink.close()
