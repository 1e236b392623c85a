"""Documents (PDF) through the local engine on embedded Chroma: page metadata, bad files,
a parse failure that keeps its stored chunks, parsing once per run under a time limit."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e5_integrations import SourceError
from e5_integrations.ingest import Sink, open_sink
from e5_integrations.ingest._pipeline import ingest
from e5_integrations.ingest._readers import (
    READERS,
    WHOLE_FILE_EXTENSIONS,
    Document,
    Fields,
    Item,
    SourceFile,
    Span,
    register_reader,
)
from tests.readers.pdfs import rasterize_pdf, write_pdf

pytestmark = pytest.mark.integration
pytest.importorskip("pypdfium2")
pytest.importorskip("reportlab")

CHUNK_TOKENS = 32


def _page(number: int) -> list[str]:
    return [f"Page {number} line {line}: the pump valve {number} needs a check." for line in range(6)]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    opened = open_sink("chroma", str(tmp_path / "chroma"), "documents")
    yield opened
    opened.close()


def _run(root: Path, sink: Sink, encoder: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("id_root", root)
    kwargs.setdefault("parse_workers", 1)
    return ingest(root, sink, encoder, chunk_tokens=CHUNK_TOKENS, **kwargs)


def _stored(sink: Sink, encoder: Any) -> dict[str, Any]:
    hits = sink.search(encoder.encode_documents(["pump valve"])[0], k=max(1, sink.count()))
    return {hit.id: hit for hit in hits}


def test_pdf_chunks_carry_their_pages_and_the_title(tmp_path: Path, sink: Sink, encoder: Any) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    write_pdf(root / "manual.pdf", [_page(1), _page(2), _page(3)], title="Pump manual")
    (root / "note.txt").write_text("A plain note about the pump.", encoding="utf-8")
    report = _run(root, sink, encoder)
    assert (report.documents, report.skipped_unreadable, report.unread_parts) == (2, 0, 0)
    stored = _stored(sink, encoder)
    assert len(stored) == report.chunks == sink.count()
    pdf = sorted(
        (hit for hit in stored.values() if hit.metadata["document_id"] == "manual.pdf"),
        key=lambda hit: hit.metadata["chunk_index"],
    )
    assert len(pdf) >= 6
    assert {hit.metadata["title"] for hit in pdf} == {"Pump manual"}
    pages = [(hit.metadata["page"], hit.metadata["page_end"]) for hit in pdf]
    assert all(isinstance(value, int) for pair in pages for value in pair)
    assert pages[0][0] == 1 and pages[-1] == (3, 3) and pages == sorted(pages)
    for hit in pdf:  # the page numbers are true: the chunk's lines name their page
        named = {
            int(word) for word in hit.text.replace(":", " ").split() if word.isdigit() and len(word) == 1
        }
        assert named & set(range(hit.metadata["page"], hit.metadata["page_end"] + 1))
    assert "page" not in stored["note.txt#0"].metadata
    again = _run(root, sink, encoder)
    assert (again.embedded, again.skipped_unchanged) == (0, report.chunks)


def test_a_parse_failure_keeps_the_stored_chunks_even_with_prune(
    tmp_path: Path, sink: Sink, encoder: Any
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    manual = write_pdf(root / "manual.pdf", [_page(1), _page(2)])
    (root / "gone.txt").write_text("This file will be deleted.", encoding="utf-8")
    first = _run(root, sink, encoder)
    stored = sink.count()
    pdf_chunks = first.chunks - 1
    assert pdf_chunks > 1

    manual.write_bytes(manual.read_bytes()[:400])  # truncated: no longer a readable PDF
    (root / "gone.txt").unlink()
    (root / "new.txt").write_text("A new note.", encoding="utf-8")
    with pytest.raises(SourceError, match=r"manual\.pdf: not a readable PDF \(truncated or corrupt\)"):
        _run(root, sink, encoder)
    assert len(sink.fetch_hashes([f"manual.pdf#{n}" for n in range(pdf_chunks)])) == pdf_chunks

    report = _run(root, sink, encoder, on_error="skip", prune=True)
    assert report.skipped_unreadable == 1
    assert [str(problem) for problem in report.problems] == [
        f"{manual}: unreadable file: not a readable PDF (truncated or corrupt): "
        "Failed to load document (PDFium: Data format error)."
    ]
    assert report.pruned == 1  # gone.txt; the unreadable manual's chunks stay
    assert len(sink.fetch_hashes([f"manual.pdf#{n}" for n in range(pdf_chunks)])) == pdf_chunks
    assert sink.count() == stored - 1 + 1  # gone.txt pruned, new.txt added
    assert "unreadable files" in report.summary() and "manual.pdf" in report.summary()


def test_a_scanned_page_is_reported_with_its_page_and_the_rest_stored(
    tmp_path: Path, sink: Sink, encoder: Any
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    original = write_pdf(tmp_path / "original.pdf", [_page(1), _page(2), _page(3)])
    rasterize_pdf(original, root / "scan.pdf", keep_text_pages=[1, 3], dpi=72)
    report = _run(root, sink, encoder)  # on_error="fail": a missing page is reported, not fatal
    assert (report.documents, report.unread_parts) == (1, 1)
    (problem,) = report.problems
    assert problem.location == f"{root / 'scan.pdf'} (page 2)" and "no text layer" in problem.detail
    pages = {hit.metadata["page"] for hit in _stored(sink, encoder).values()}
    assert pages == {1, 3}


# A whole-file reader that logs each call (to count parses) and sleeps when told to.
def read_logged(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    with open(os.environ["E5_TEST_PARSE_LOG"], "a", encoding="utf-8") as log:
        log.write(source.file_id + "\n")
    with source.open() as handle:
        text = handle.read().decode("utf-8")
    if text.startswith("sleep"):
        time.sleep(600)
    yield (
        0,
        Document(
            source.file_id, text, source.file_id, {"title": "logged"}, (Span(0, len(text), {"slide": 1}),)
        ),
    )


@pytest.fixture
def logged_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "parses.log"
    monkeypatch.setenv("E5_TEST_PARSE_LOG", str(log))
    monkeypatch.setattr("e5_integrations.ingest._readers._base.READERS", dict(READERS))
    monkeypatch.setattr(
        "e5_integrations.ingest._readers._base.WHOLE_FILE_EXTENSIONS", set(WHOLE_FILE_EXTENSIONS)
    )
    register_reader(read_logged, ".logged", whole_file=True)
    return log


def test_whole_files_are_parsed_once_per_run_and_a_hung_parser_is_stopped(
    tmp_path: Path, sink: Sink, encoder: Any, logged_reader: Path
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for index in range(3):
        (root / f"deck{index}.logged").write_text(f"Slide text {index} about pumps.", encoding="utf-8")
    (root / "hangs.logged").write_text("sleep", encoding="utf-8")
    report = _run(root, sink, encoder, on_error="skip", parse_workers=2, parse_timeout=3)
    parses = sorted(logged_reader.read_text(encoding="utf-8").split())
    assert parses == ["deck0.logged", "deck1.logged", "deck2.logged", "hangs.logged"]  # once each
    assert (report.documents, report.skipped_unreadable) == (3, 1)
    (problem,) = report.problems
    assert problem.location.endswith("hangs.logged") and "longer than 3 s" in problem.detail
    stored = _stored(sink, encoder)
    assert {hit.metadata["slide"] for hit in stored.values()} == {1}
    assert {hit.metadata["title"] for hit in stored.values()} == {"logged"}


def test_the_e5_command_fails_then_skips_an_unreadable_pdf_naming_its_flags(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from e5_integrations.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    monkeypatch.chdir(tmp_path)
    original = write_pdf(tmp_path / "original.pdf", [_page(1), _page(2)])
    rasterize_pdf(original, docs / "scan.pdf", keep_text_pages=[2], dpi=72)
    (docs / "liar.pdf").write_text("I am a text file.\n", encoding="utf-8")
    command = ["ingest", "docs", "--model", str(tiny_model_dir), "--no-progress", "--id-root", "docs"]
    command += ["--parse-workers", "1", "--parse-timeout", "60"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "liar.pdf: not a PDF" in err and "--on-error skip" in err and "Traceback" not in err

    assert main([*command, "--on-error", "skip", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["skipped"] == {"unreadable files": 1, "unread pages": 1}
    assert report["documents"] == 1 and report["written"] == report["chunks"] > 0
    problems = "\n".join(report["problems"])
    assert "liar.pdf: unreadable file: not a PDF" in problems
    assert "scan.pdf (page 1): unread part: page 1 of 2 has no text layer" in problems
    assert "pass --ocr" in problems  # the worker process names the command's flags
