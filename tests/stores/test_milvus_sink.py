"""MilvusSink on a Milvus Lite file and on the C++ Milvus Lite 2.5 server (or $MILVUS_URI)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from e5_integrations import ConfigurationError, SchemaMismatchError, StoreError, StoreUnavailableError
from e5_integrations.ingest import CONTENT_HASH_KEY, Record, open_sink

from tests.stores._chroma_server import free_port
from tests.stores._milvus_server import running_milvus_server

DIM = 64
ODD_IDS = [
    "it's a file.txt#0",
    'say "hi".md#1',
    "back\\slash\\path#2",
    "日本語/ファイル.txt#3",
    "emoji 🙂 and ünïcödé#4",
    "line\nbreak\ttab#5",
    "') or 1=1 --#6",
    "x" * 600 + "#7",  # longer than a 512-byte VARCHAR key
]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _records(n: int, dim: int = DIM, seed: int = 0) -> list[Record]:
    vectors = _unit(np.random.default_rng(seed).standard_normal((n, dim)))
    return [
        Record(f"docs/a.txt#{i}", f"text {i}", {CONTENT_HASH_KEY: f"h{i}", "chunk_index": i}, vectors[i])
        for i in range(n)
    ]


def _foreign_collection(sink, dim: int, metric: str) -> None:
    """Create ``sink``'s collection directly with pymilvus (e.g. by another tool)."""
    sink._client.create_collection(
        sink.collection, dimension=dim, metric_type=metric, consistency_level="Strong"
    )


@pytest.mark.integration
def test_create_then_validate(milvus_sink) -> None:
    sink = milvus_sink()
    assert sink.count() == 0
    sink.ensure_collection(DIM)
    sink.ensure_collection(DIM)
    again = milvus_sink(sink.collection)
    again.ensure_collection(DIM)
    assert again.count() == 0
    fields = {f["name"]: f for f in sink._client.describe_collection(sink.collection)["fields"]}
    assert fields["pk"]["is_primary"] and fields["embedding"]["params"]["dim"] == DIM
    assert sink.name == "milvus"


@pytest.mark.integration
def test_dimension_mismatch_raises_and_writes_nothing(milvus_sink) -> None:
    sink = milvus_sink()
    sink.ensure_collection(DIM)
    sink.upsert(_records(3))
    other = milvus_sink(sink.collection)
    with pytest.raises(SchemaMismatchError, match=r"64-dimensional.*32-dimensional.*--collection"):
        other.ensure_collection(32)
    assert other.count() == 3


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
def test_upsert_twice_is_idempotent(milvus_sink) -> None:
    sink = milvus_sink()
    sink.ensure_collection(DIM)
    records = _records(40)
    sink.upsert(records)
    sink.upsert(records)
    assert sink.count() == 40
    changed = Record(records[7].id, "new", {CONTENT_HASH_KEY: "h-new"}, records[7].embedding)
    sink.upsert([changed])
    assert sink.count() == 40
    assert sink.fetch_hashes([records[7].id]) == {records[7].id: "h-new"}


@pytest.mark.integration
def test_fetch_hashes_returns_only_stored_ids(milvus_sink) -> None:
    sink = milvus_sink()
    assert sink.fetch_hashes(["nothing"]) == {}
    sink.ensure_collection(DIM)
    records = _records(30)
    sink.upsert(records[:20])
    wanted = [r.id for r in records[15:30]] + ["missing#9"]
    assert sink.fetch_hashes(wanted) == {f"docs/a.txt#{i}": f"h{i}" for i in range(15, 20)}


@pytest.mark.integration
def test_search_returns_the_nearest_with_cosine_scores(milvus_sink) -> None:
    sink = milvus_sink()
    sink.ensure_collection(DIM)
    records = _records(60, seed=1)
    sink.upsert(records)
    rng = np.random.default_rng(2)
    query = _unit(records[7].embedding + 0.3 * _unit(rng.standard_normal(DIM)))
    hits = sink.search(query, 5)
    assert hits[0].id == records[7].id
    matrix = np.stack([r.embedding for r in records])
    expected = np.sort(matrix @ query)[::-1][:5]
    np.testing.assert_allclose([h.score for h in hits], expected, atol=1e-4)
    assert hits[0].text == "text 7" and hits[0].metadata["chunk_index"] == 7


@pytest.mark.integration
def test_metadata_round_trips(milvus_sink) -> None:
    sink = milvus_sink()
    sink.ensure_collection(DIM)
    metadata = {
        "source": "docs/ünïcödé 日本.txt",
        "chunk_index": 3,
        "score": 0.25,
        "flag": True,
        "nested": {"authors": ["Zoë", "李"], "year": 2024, "deep": {"x": None}},
        "mixed": [1, "two", 3.5],
        "empty": {},
        "nothing": None,
        CONTENT_HASH_KEY: "abc",
    }
    vector = _records(1)[0].embedding
    sink.upsert([Record("m", "text 🙂", metadata, vector)])
    [hit] = sink.search(vector, 1)
    assert (hit.id, hit.text, dict(hit.metadata)) == ("m", "text 🙂", metadata)
    assert hit.score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.integration
def test_ids_with_quotes_and_unicode(milvus_sink) -> None:
    sink = milvus_sink()
    sink.ensure_collection(DIM)
    vectors = _unit(np.random.default_rng(3).standard_normal((len(ODD_IDS), DIM)))
    records = [Record(i, f"t{n}", {CONTENT_HASH_KEY: f"h{n}"}, vectors[n]) for n, i in enumerate(ODD_IDS)]
    sink.upsert(records)
    sink.upsert(records)
    assert sink.count() == len(ODD_IDS)
    assert sink.fetch_hashes(ODD_IDS) == {i: f"h{n}" for n, i in enumerate(ODD_IDS)}
    assert sink.search(vectors[2], 1)[0].id == ODD_IDS[2]
    sink.delete([ODD_IDS[0], ODD_IDS[1], "not there"])
    assert sink.count() == len(ODD_IDS) - 2
    assert ODD_IDS[0] not in sink.fetch_hashes(ODD_IDS)


@pytest.mark.integration
def test_text_over_the_varchar_limit_is_refused_before_writing(milvus_sink) -> None:
    sink = milvus_sink()
    sink.ensure_collection(DIM)
    ok, too_long = _records(2)
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
    assert sink.max_batch_records(64) >= n


@pytest.mark.integration
def test_drop_and_count_of_a_missing_collection(milvus_sink) -> None:
    sink = milvus_sink()
    assert sink.count() == 0
    assert sink.search(_records(1)[0].embedding, 3) == []
    sink.ensure_collection(DIM)
    sink.upsert(_records(5))
    sink.drop()
    assert sink.count() == 0
    sink.drop()
    sink.close()
    sink.close()


@pytest.mark.integration
def test_open_sink_resolves_milvus(milvus_uri: str) -> None:
    with open_sink("milvus", milvus_uri, "e5_open_sink_test") as sink:
        sink.ensure_collection(DIM)
        sink.upsert(_records(2))
        assert sink.count() == 2
        sink.drop()


def test_unreachable_server_raises_quickly() -> None:
    from e5_integrations.sinks.milvus import MilvusSink

    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Milvus at {uri}.*3 attempts"):
        MilvusSink(uri, "e5_test", timeout=2, retry_attempts=3, retry_base_delay=0.01)
    assert time.monotonic() - start < 10


@pytest.mark.integration
def test_server_that_goes_away_raises_store_unavailable(tmp_path) -> None:
    from e5_integrations.sinks.milvus import MilvusSink

    with running_milvus_server(tmp_path) as uri:
        sink = MilvusSink(uri, "e5_going_away", timeout=1, retry_attempts=2, retry_base_delay=0.01)
        sink.ensure_collection(DIM)
        sink.upsert(_records(2))
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Milvus at {uri}"):
        sink.count()
    assert time.monotonic() - start < 10
    sink.close()


def test_invalid_collection_name_is_a_configuration_error(tmp_path) -> None:
    from e5_integrations.sinks.milvus import MilvusSink

    with pytest.raises(ConfigurationError, match="'e5-test'.*'_'"):
        MilvusSink(str(tmp_path / "m.db"), "e5-test")
