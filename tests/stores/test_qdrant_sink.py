"""QdrantSink in local mode (memory and folder) and, with QDRANT_URL, on a real server.

What every sink must do is in test_sink_contract.py; this file keeps what is Qdrant's own.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from e5_integrations import ConfigurationError, SchemaMismatchError, StoreUnavailableError
from e5_integrations.ingest import Record
from tests.stores._common import DIM, SinkFactory, records

if TYPE_CHECKING:
    from e5_integrations.sinks.qdrant import QdrantSink

pytestmark = pytest.mark.integration


def test_dimension_mismatch_names_size_and_distance(qdrant_sink: SinkFactory[QdrantSink]) -> None:
    sink = qdrant_sink()
    sink.ensure_collection(DIM)
    with pytest.raises(SchemaMismatchError, match="64-dim Cosine.*32-dim cosine"):
        sink.ensure_collection(32)


def test_other_distance_is_a_schema_mismatch(qdrant_sink: SinkFactory[QdrantSink]) -> None:
    from qdrant_client import models

    sink = qdrant_sink()
    sink._client.create_collection(
        sink.collection, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.EUCLID)
    )
    with pytest.raises(SchemaMismatchError, match="Euclid"):
        sink.ensure_collection(DIM)


def test_point_ids_are_uuid5_of_chunk_ids(qdrant_sink: SinkFactory[QdrantSink]) -> None:
    from e5_integrations.ingest import get_layout
    from e5_integrations.sinks.qdrant import POINT_ID_NAMESPACE, point_id

    assert point_id("docs/a.txt#0") == str(uuid.uuid5(POINT_ID_NAMESPACE, "docs/a.txt#0"))
    assert uuid.UUID("cee79ab9-b7dd-5233-aed4-74546597854d") == POINT_ID_NAMESPACE  # never changes
    assert point_id("x#0") == get_layout("langchain").row_id("x#0") == get_layout("llama-index").row_id("x#0")
    sink = qdrant_sink()
    sink.ensure_collection(DIM)
    sink.upsert(records(2))
    stored = sink._client.retrieve(sink.collection, ids=[point_id("docs/a.txt#1")], with_payload=True)
    assert stored[0].payload["id"] == "docs/a.txt#1"


def test_large_vectors_are_split_under_the_request_limit(qdrant_sink: SinkFactory[QdrantSink]) -> None:
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


def test_folder_persists_across_clients(tmp_path: Path) -> None:
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


def test_searches_read_the_collection_config_once(qdrant_sink: SinkFactory[QdrantSink]) -> None:
    sink = qdrant_sink()
    sink.ensure_collection(DIM)
    rs = records(5)
    sink.upsert(rs)
    calls: list[tuple[Any, ...]] = []
    real = sink._client.get_collection

    def counted(*a: Any, **k: Any) -> Any:
        calls.append(a)
        return real(*a, **k)

    sink._client.get_collection = counted
    for r in rs:
        assert sink.search(r.embedding, 1)[0].id == r.id
    assert sink.dimension() == DIM
    assert len(calls) <= 1
    sink.drop()  # forgotten with the collection
    sink.ensure_collection(32)
    assert sink.dimension() == 32


@pytest.mark.parametrize(
    ("layout", "keys"),
    [
        ("e5", {"id", "text", "metadata"}),
        ("langchain", {"page_content", "metadata"}),
        (
            "llama-index",
            {"_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id", "e5_chunk_id"},
        ),
    ],
)
def test_each_layout_writes_its_payload_and_is_detected_from_it(
    qdrant_sink: SinkFactory[QdrantSink], layout: str, keys: set[str]
) -> None:
    from e5_integrations.sinks.qdrant import point_id

    sink = qdrant_sink(layout=layout)
    sink.ensure_collection(DIM)
    sink.upsert(records(2))
    [point] = sink._client.retrieve(sink.collection, ids=[point_id("docs/a.txt#1")], with_payload=True)
    assert keys <= set(point.payload)
    sink.forget_layout()
    sink.requested_layout = None
    assert sink.layout.name == layout


def test_the_langchain_layout_refuses_the_fields_its_reader_overwrites() -> None:
    from e5_integrations.ingest._sources import Document
    from e5_integrations.sinks.qdrant import QdrantSink

    for key in ("_id", "_collection_name"):
        document = Document(id="d", text="t", source="s.jsonl", metadata={key: 1})
        assert key in (QdrantSink.check_document(document, layout="langchain") or "")
        assert QdrantSink.check_document(document) is None
