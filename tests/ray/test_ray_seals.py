"""File seals on the Ray engine: after a job that wrote every row, the driver seals each file
it read whole (``Sink.set_content_hashes`` on the file's probe chunk), so a re-run with
nothing changed reads none of them, on real stores, with the tiny model.

The seals are the local engine's (one rule, ``e5_integrations.ingest._file_seals``): a file
sealed by one engine is skipped by the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from e5_integrations import SourceError, StoreUnavailableError
from e5_integrations.ingest import ingest, open_sink
from e5_integrations.ingest._file_seals import probe_of, stored_seal
from e5_integrations.ingest._readers._base import Fields
from e5_integrations.ingest._sources import iter_source_files
from tests.ray.conftest import dump_rows, write_corpus
from tests.ray.test_ray_engine import CHUNK, expected_rows, run_ray

pytestmark = pytest.mark.integration


def _seals(target: tuple[str, str, str], corpus: Path) -> dict[str, Any]:
    """``{file name: StoredSeal or None}`` of every file under ``corpus``."""
    sources = list(iter_source_files([corpus]))
    probes = {source.path.name: probe_of(source, Fields(text="text", id=None)) for source in sources}
    with open_sink(*target) as sink:
        stored = sink.fetch_hashes([probe for probe in probes.values() if probe is not None])
    return {name: stored_seal(stored.get(probe)) if probe else None for name, probe in probes.items()}


def _texts(target: tuple[str, str, str]) -> dict[str, str]:
    return {id_: text for id_, (text, _, _) in dump_rows(*target).items()}


@pytest.mark.parametrize("store_target", ["pgvector", "chroma"], indirect=True)
def test_a_rerun_reads_no_sealed_file_and_a_changed_file_is_read_again(
    ray_session: Any, store_target: tuple[str, str, str], tiny_model_dir: Path, encoder: Any, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "docs", documents=60)
    expected = expected_rows(encoder, corpus)
    first = run_ray(store_target, corpus, tiny_model_dir, embed_batch_rows=16)
    assert _texts(store_target) == expected
    assert (first.chunks, first.embedded, first.files_unchanged) == (len(expected), len(expected), 0)

    seals = _seals(store_target, corpus)
    assert len(seals) == 3 and all(seal is not None for seal in seals.values()), seals
    # each seal counts its file's documents and chunks, as the local engine's do
    assert sum(seal.documents for seal in seals.values()) == first.documents == 62
    assert sum(seal.chunks for seal in seals.values()) == first.chunks
    rows = dump_rows(*store_target)

    again = run_ray(store_target, corpus, tiny_model_dir)
    assert again.files_unchanged == 3
    assert (again.documents, again.chunks, again.skipped_unchanged, again.skipped_documents) == (
        first.documents,
        first.chunks,
        first.chunks,
        first.documents,
    )
    assert (again.embedded, again.written, again.deleted_stale) == (0, 0, 0)
    after = dump_rows(*store_target)
    assert sorted(after) == sorted(rows)
    for id_, (text, metadata, _) in rows.items():
        assert (after[id_][0], after[id_][1]) == (text, metadata), id_

    # the local engine skips what the Ray engine sealed
    with open_sink(*store_target) as sink:
        local = ingest([corpus], sink, encoder, **CHUNK)
    assert (local.files_unchanged, local.embedded, local.chunks) == (3, 0, first.chunks)

    # a changed file is read again (the others stay sealed) and sealed anew
    with (corpus / "records.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "doc-new", "text": "A new record about replicas."}) + "\n")
    (corpus / "notes.txt").write_text("Short notes now.", encoding="utf-8")
    changed = run_ray(store_target, corpus, tiny_model_dir)
    now = expected_rows(encoder, corpus)
    assert changed.files_unchanged == 1  # guide.md
    assert changed.embedded == 2  # the new record, notes.txt#0
    assert changed.deleted_stale == len(expected) - len(now) + 1 > 0
    assert _texts(store_target) == now
    assert all(seal is not None for seal in _seals(store_target, corpus).values())
    last = run_ray(store_target, corpus, tiny_model_dir)
    assert (last.files_unchanged, last.embedded, last.chunks) == (3, 0, len(now))


@pytest.mark.parametrize("store_target", ["pgvector"], indirect=True)
def test_no_seal_for_a_file_with_a_problem_nor_after_a_failed_job(
    ray_session: Any, store_target: tuple[str, str, str], tiny_model_dir: Path, encoder: Any, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "docs", documents=20)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7 not a pdf at all")  # fails in its read task
    with pytest.raises(SourceError, match="broken.pdf"):
        run_ray(store_target, corpus, tiny_model_dir)  # on_error="fail": the job stops
    # rows of the other files may have landed (in no set order), but no file is sealed
    assert all(seal is None for seal in _seals(store_target, corpus).values())

    with (corpus / "records.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"text": 42}\n')  # an invalid record, skipped under on_error="skip"
    skipped = run_ray(store_target, corpus, tiny_model_dir, on_error="skip")
    assert skipped.skipped_invalid == 1 and skipped.skipped_unreadable == 1
    seals = _seals(store_target, corpus)
    assert seals["records.jsonl"] is None  # an invalid record: read again next run
    assert seals["broken.pdf"] is None
    assert seals["notes.txt"] is not None and seals["guide.md"] is not None
    again = run_ray(store_target, corpus, tiny_model_dir, on_error="skip")
    assert again.files_unchanged == 2 and again.embedded == 0
    assert _texts(store_target) == expected_rows(encoder, corpus, on_error="skip")


@pytest.mark.parametrize("store_target", ["pgvector"], indirect=True)
@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            StoreUnavailableError("PostgreSQL at postgresql://u:***@db/x is unreachable"),
            "not sealed after the job",
        ),
        (NotImplementedError("no"), "cannot set content hashes"),
    ],
)
def test_a_seal_that_cannot_be_written_is_a_warning_not_a_failed_run(
    store_target: tuple[str, str, str], tmp_path: Path, error: Exception, says: str
) -> None:
    """Sealing comes after every row is written: a store that refuses it (down, or a sink
    without ``set_content_hashes``) leaves the files unsealed, with a warning in the report."""
    from e5_integrations.ingest import IngestReport, Record
    from e5_integrations.ingest._pipeline import LocalSeals
    from e5_integrations.ray._engine import _seal_files

    (tmp_path / "a.txt").write_text("Some text about shards.", encoding="utf-8")
    [source] = iter_source_files([tmp_path])
    fields = Fields(text="text", id=None)
    report = IngestReport()
    seals = LocalSeals(fields, {"model": "m"}, None, report)
    [(source, seal, stored)] = seals.look_up([source])
    assert seal is not None and stored is None
    seals.validated(source, seal, stored)
    with open_sink(*store_target) as sink:
        sink.ensure_collection(4)
        sink.upsert(
            [
                Record(
                    seal.probe,
                    "Some text about shards.",
                    {"e5_content_hash": "h"},
                    np.eye(4, dtype=np.float32)[0],
                )
            ]
        )

        def refuse(values: Any) -> int:
            raise error

        sink.set_content_hashes = refuse  # type: ignore[method-assign]
        files = [{"path": str(source.path), "file_id": source.file_id, "skip": "[]"}]
        _seal_files(sink, seals, files, {source.file_id: [1, 1, 0]}, report)
        assert sink.fetch_hashes([seal.probe]) == {seal.probe: "h"}  # not sealed
    assert len(report.warnings) == 1 and says in report.warnings[0], report.warnings


def test_a_read_task_marks_a_file_changed_since_the_check_pass_unsealed(tmp_path: Path) -> None:
    """The seal must describe the bytes read: a read task hashes its file first, and rows of
    a file whose bytes differ from those the driver checked say ``unsealed`` (so the file's
    tally counts a problem and it is not sealed)."""
    from e5_integrations.ingest._file_seals import file_seal
    from e5_integrations.ray._stages import read_file

    path = tmp_path / "a.txt"
    path.write_text("Some text about shards.", encoding="utf-8")
    [source] = iter_source_files([tmp_path])
    settings = {"model": "m"}
    row = {"path": str(path), "file_id": source.file_id, "skip": "[]", "seal": file_seal(source, settings)}
    options: dict[str, Any] = {"text_field": "text", "id_field": None, "on_error": "fail", "parse_workers": 0}
    [same] = read_file(row, **options, seal_settings=settings)
    assert same["unsealed"] == 0 and same["text"] == "Some text about shards."
    path.write_text("Other text, written after the check pass.", encoding="utf-8")
    [changed] = read_file(row, **options, seal_settings=settings)
    assert changed["unsealed"] == 1 and changed["text"].startswith("Other text")
    [unsealable] = read_file({**row, "seal": ""}, **options, seal_settings=settings)
    assert unsealable["unsealed"] == 0  # nothing to check: the driver does not seal it anyway
