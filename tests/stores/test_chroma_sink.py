"""ChromaSink on an embedded PersistentClient folder and on a real `chroma run` server."""

from __future__ import annotations

import time

import numpy as np
import pytest
from e5_integrations import ConfigurationError, SchemaMismatchError, StoreUnavailableError
from e5_integrations.ingest import CONTENT_HASH_KEY, Record, open_sink

from tests.stores._chroma_server import free_port, running_chroma_server

DIM = 64
ODD_IDS = [
    "it's a file.txt#0",
    'say "hi".md#1',
    "back\\slash\\path#2",
    "日本語/ファイル.txt#3",
    "emoji 🙂 and ünïcödé#4",
    "line\nbreak\ttab#5",
]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _records(n: int, dim: int = DIM, seed: int = 0, prefix: str = "docs/a.txt#") -> list[Record]:
    vectors = _unit(np.random.default_rng(seed).standard_normal((n, dim)))
    return [
        Record(f"{prefix}{i}", f"text {i}", {CONTENT_HASH_KEY: f"h{i}", "chunk_index": i}, vectors[i])
        for i in range(n)
    ]


@pytest.mark.integration
def test_create_then_validate(chroma_sink) -> None:
    sink = chroma_sink()
    assert sink.count() == 0
    sink.ensure_collection(DIM)
    sink.ensure_collection(DIM)
    again = chroma_sink(sink.collection)
    again.ensure_collection(DIM)
    assert again.count() == 0
    assert sink.name == "chroma"


@pytest.mark.integration
def test_dimension_mismatch_raises_and_writes_nothing(chroma_sink) -> None:
    sink = chroma_sink()
    sink.ensure_collection(DIM)
    sink.upsert(_records(3))
    other = chroma_sink(sink.collection)
    with pytest.raises(SchemaMismatchError, match=r"64-dimensional.*32-dimensional.*--collection"):
        other.ensure_collection(32)
    assert other.count() == 3
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
def test_upsert_twice_is_idempotent(chroma_sink) -> None:
    sink = chroma_sink()
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
def test_replacing_a_record_removes_its_old_metadata_keys(chroma_sink) -> None:
    sink = chroma_sink()
    sink.ensure_collection(DIM)
    vector = _records(1)[0].embedding
    sink.upsert([Record("r", "one", {"old": 1, "nested": {"a": 1}, CONTENT_HASH_KEY: "h1"}, vector)])
    sink.upsert([Record("r", "two", {CONTENT_HASH_KEY: "h2"}, vector)])
    [hit] = sink.search(vector, 1)
    assert (hit.text, dict(hit.metadata)) == ("two", {CONTENT_HASH_KEY: "h2"})


@pytest.mark.integration
def test_fetch_hashes_returns_only_stored_ids(chroma_sink) -> None:
    sink = chroma_sink()
    assert sink.fetch_hashes(["nothing"]) == {}
    sink.ensure_collection(DIM)
    records = _records(30)
    sink.upsert(records[:20])
    wanted = [r.id for r in records[15:30]] + ["missing#9"]
    assert sink.fetch_hashes(wanted) == {f"docs/a.txt#{i}": f"h{i}" for i in range(15, 20)}


@pytest.mark.integration
def test_search_returns_the_nearest_with_cosine_scores(chroma_sink) -> None:
    sink = chroma_sink()
    sink.ensure_collection(DIM)
    records = _records(60, seed=1)
    sink.upsert(records)
    rng = np.random.default_rng(2)
    query = _unit(records[7].embedding + 0.3 * _unit(rng.standard_normal(DIM)))
    hits = sink.search(query, 5)
    assert [h.id for h in hits][0] == records[7].id
    matrix = np.stack([r.embedding for r in records])
    expected = np.sort(matrix @ query)[::-1][:5]
    np.testing.assert_allclose([h.score for h in hits], expected, atol=1e-4)
    assert hits[0].text == "text 7" and hits[0].metadata["chunk_index"] == 7


@pytest.mark.integration
def test_metadata_round_trips(chroma_sink) -> None:
    sink = chroma_sink()
    sink.ensure_collection(DIM)
    metadata = {
        "source": "docs/ünïcödé 日本.txt",
        "chunk_index": 3,
        "score": 0.25,
        "flag": True,
        "nested": {"authors": ["Zoë", "李"], "year": 2024, "deep": {"x": None}},
        "tags": ["a", "b"],
        "mixed": [1, "two", 3.0],
        "empty": {},
        "nothing": None,
        CONTENT_HASH_KEY: "abc",
    }
    vector = _records(1)[0].embedding
    sink.upsert([Record("m", "text", metadata, vector)])
    [hit] = sink.search(vector, 1)
    assert dict(hit.metadata) == metadata
    assert hit.score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.integration
def test_ids_with_quotes_and_unicode(chroma_sink) -> None:
    sink = chroma_sink()
    sink.ensure_collection(DIM)
    vectors = _unit(np.random.default_rng(3).standard_normal((len(ODD_IDS), DIM)))
    records = [Record(i, f"t{n}", {CONTENT_HASH_KEY: f"h{n}"}, vectors[n]) for n, i in enumerate(ODD_IDS)]
    sink.upsert(records)
    sink.upsert(records)
    assert sink.fetch_hashes(ODD_IDS) == {i: f"h{n}" for n, i in enumerate(ODD_IDS)}
    assert sink.search(vectors[2], 1)[0].id == ODD_IDS[2]
    sink.delete([ODD_IDS[0], ODD_IDS[1], "not there"])
    assert sink.count() == len(ODD_IDS) - 2
    assert ODD_IDS[0] not in sink.fetch_hashes(ODD_IDS)


@pytest.mark.integration
def test_max_batch_records_is_sane_for_e5_mistral(chroma_sink) -> None:
    sink = chroma_sink()
    n = sink.max_batch_records(4096)
    assert 16 <= n <= sink._client.get_max_batch_size()
    assert n * 4096 * 24 < 64 * 1024 * 1024  # JSON request well under 64 MiB
    assert sink.max_batch_records(64) >= n


@pytest.mark.integration
def test_drop_and_count_of_a_missing_collection(chroma_sink) -> None:
    sink = chroma_sink()
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
def test_open_sink_resolves_chroma(chroma_uri: str) -> None:
    with open_sink("chroma", chroma_uri, "e5-open-sink-test") as sink:
        sink.ensure_collection(DIM)
        sink.upsert(_records(2))
        assert sink.count() == 2
        sink.drop()


def test_unreachable_server_raises_quickly() -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Chroma at {uri}.*3 attempts"):
        ChromaSink(uri, "e5-test", retry_attempts=3, retry_base_delay=0.01)
    assert time.monotonic() - start < 5


@pytest.mark.integration
def test_server_that_goes_away_raises_store_unavailable(tmp_path) -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    with running_chroma_server(tmp_path) as url:
        sink = ChromaSink(url, "e5-going-away", retry_attempts=2, retry_base_delay=0.01)
        sink.ensure_collection(DIM)
        sink.upsert(_records(2))
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Chroma at {url}"):
        sink.count()
    assert time.monotonic() - start < 5
    sink.close()


def test_invalid_collection_name_is_a_configuration_error(tmp_path) -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    with pytest.raises(ConfigurationError, match="a!"):
        ChromaSink(str(tmp_path / "c"), "a!")
