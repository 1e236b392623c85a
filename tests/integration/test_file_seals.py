"""Seals of local files (issue 25): a re-run skips a file sealed with the same bytes and
settings without validating or parsing it, and keeps every guarantee: an edited file, a
changed setting or a reverted file after a run that died midway is read again; ``--prune``
and the duplicate-id check still see the ids of sealed files.

Target: embedded Chroma, with the tiny model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e5_integrations import SourceError
from e5_integrations.ingest import Sink, _sources, open_sink
from e5_integrations.ingest._chunking import chunk_id
from e5_integrations.ingest._file_seals import stored_seal
from e5_integrations.ingest._fingerprint import parse_stored_hash
from e5_integrations.ingest._pipeline import ingest
from tests.integration.test_fingerprint_skip import _DiesBeforeSeals

pytestmark = pytest.mark.integration

CHUNK_TOKENS = 16
LONG = " ".join(f"Sentence {n} of the long note says one more thing about seals." for n in range(12))


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    with open_sink("chroma", str(tmp_path / "chroma"), "seals") as opened:
        yield opened


def _corpus(root: Path) -> dict[str, int]:
    """A folder of one file per kind; returns file name -> documents in it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "note.txt").write_text(LONG, encoding="utf-8")
    (root / "guide.md").write_text("# Guide\n\nA short guide to sealed files.", encoding="utf-8")
    with (root / "own-ids.jsonl").open("w", encoding="utf-8") as out:
        for i in range(5):
            out.write(
                json.dumps({"id": f"rec-{i}", "text": f"record {i} with its own id", "lang": "en"}) + "\n"
            )
    with (root / "numbered.jsonl").open("w", encoding="utf-8") as out:
        for i in range(4):
            out.write(json.dumps({"text": f"line record {i}"}) + "\n")
    (root / "table.csv").write_text("text,lang\nrow one,en\nrow two,fr\n", encoding="utf-8")
    return {"note.txt": 1, "guide.md": 1, "own-ids.jsonl": 5, "numbered.jsonl": 4, "table.csv": 2}


def _run(root: Path, sink: Sink, encoder: Any, **options: Any) -> Any:
    options.setdefault("chunk_tokens", CHUNK_TOKENS)
    return ingest(root, sink, encoder, **options)


def _stored(sink: Sink) -> dict[str, str | None]:
    return {record_id: document_id for page in sink.scan() for record_id, document_id in page}


class _CountingReads:
    """Counts the records built into documents (what validating or loading a file costs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built = 0
        original = _sources._record_to_document

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.built += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(_sources, "_record_to_document", counting)


def test_unchanged_files_are_skipped_unparsed_with_their_counts(
    tmp_path: Path, sink: Sink, encoder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "corpus"
    files = _corpus(root)
    first = _run(root, sink, encoder)
    assert first.files_unchanged == 0 and first.documents == sum(files.values())
    # every file's probe chunk carries its seal, with the file's counts
    note = stored_seal(sink.fetch_hashes([chunk_id(first_id := _note_id(sink), 0)])[chunk_id(first_id, 0)])
    assert note is not None and note.documents == 1 and note.chunks > 1

    reads = _CountingReads(monkeypatch)
    again = _run(root, sink, encoder)
    assert again.files_unchanged == len(files)
    assert (again.embedded, again.written) == (0, 0)
    assert reads.built == 3  # only the first record of each record file, for its probe chunk's id
    assert (again.documents, again.chunks) == (first.documents, first.chunks)
    assert again.skipped_unchanged == first.chunks and again.skipped_documents == first.documents
    assert "unchanged files (not parsed)" in again.skipped


def _note_id(sink: Sink) -> str:
    ids = {
        document_id
        for document_id in _stored(sink).values()
        if document_id and document_id.endswith("note.txt")
    }
    assert len(ids) == 1
    return ids.pop()


def test_an_edited_file_or_a_changed_setting_is_read_again(tmp_path: Path, sink: Sink, encoder: Any) -> None:
    root = tmp_path / "corpus"
    files = _corpus(root)
    first = _run(root, sink, encoder)

    (root / "table.csv").write_text("text,lang\nrow one,en\nrow two edited,fr\n", encoding="utf-8")
    edited = _run(root, sink, encoder)
    assert edited.files_unchanged == len(files) - 1
    # the edited row, and the file's probe chunk: its stale seal is deleted before the file's
    # rows change, so it is embedded again with the new seal
    assert edited.embedded == 2 and edited.documents == first.documents

    other = _run(root, sink, encoder, chunk_tokens=CHUNK_TOKENS * 2)
    assert other.files_unchanged == 0 and other.embedded > 0
    assert _run(root, sink, encoder, chunk_tokens=CHUNK_TOKENS * 2).files_unchanged == len(files)


def test_prune_and_duplicate_ids_see_the_ids_of_sealed_files(
    tmp_path: Path, sink: Sink, encoder: Any
) -> None:
    root = tmp_path / "corpus"
    files = _corpus(root)
    first = _run(root, sink, encoder)
    before = _stored(sink)

    (root / "guide.md").unlink()
    pruned = _run(root, sink, encoder, prune=True)
    assert pruned.files_unchanged == len(files) - 1
    after = _stored(sink)
    assert pruned.pruned == len(before) - len(after) > 0
    assert set(after.values()) == {doc for doc in before.values() if not str(doc).endswith("guide.md")}
    assert {f"rec-{i}" for i in range(5)} <= set(after.values())  # own ids of a sealed file, kept

    # a new file (read after own-ids.jsonl) reusing an id of a sealed file is a duplicate, as
    # before seals
    (root / "zz-late.jsonl").write_text(
        json.dumps({"id": "rec-2", "text": "an impostor"}) + "\n", encoding="utf-8"
    )
    with pytest.raises(SourceError, match="duplicate document id 'rec-2'"):
        _run(root, sink, encoder)
    skipped = _run(root, sink, encoder, on_error="skip")
    assert skipped.skipped_invalid == 1 and skipped.embedded == 0
    assert _stored(sink) == after
    assert first.documents == sum(files.values())


def test_a_run_that_dies_inside_a_changed_file_leaves_no_seal_to_trust(
    tmp_path: Path, sink: Sink, encoder: Any
) -> None:
    """v1 sealed; v2 partly written (the run dies before the file's seal and marks); the file
    goes back to v1 byte for byte: the re-run must read it, not trust v1's seal."""
    root = tmp_path / "corpus"
    root.mkdir()
    note = root / "note.txt"
    note.write_text(LONG, encoding="utf-8")
    first = _run(root, sink, encoder)
    v1 = {
        key: parse_stored_hash(value).content_hash
        for key, value in sink.fetch_hashes(list(_stored(sink))).items()
    }
    assert len(v1) == first.chunks > 1

    note.write_text(LONG.replace("seals", "stamps"), encoding="utf-8")
    with pytest.raises(RuntimeError, match="killed before the marks"):
        _run(root, _DiesBeforeSeals(sink), encoder)
    partly = sink.fetch_hashes(list(v1))
    probe = chunk_id(_note_id(sink), 0)
    assert probe not in partly or stored_seal(partly[probe]) is None  # the stale seal went first

    note.write_text(LONG, encoding="utf-8")  # reverted
    again = _run(root, sink, encoder)
    assert again.files_unchanged == 0 and again.embedded > 0
    now = {key: parse_stored_hash(value).content_hash for key, value in sink.fetch_hashes(list(v1)).items()}
    assert now == v1 and sink.count() == len(v1)
    assert _run(root, sink, encoder).files_unchanged == 1
