"""The PDF reader on PDFs written by the tests (reportlab), good and bad."""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

from e5_integrations.ingest._parsing import Parsed, parse_file
from e5_integrations.ingest._readers import Document, Fields, SourceFile, Unread, is_whole_file
from e5_integrations.ingest._readers.pdf import read_pdf
from tests.readers.pdfs import rasterize_pdf, write_pdf

pytest.importorskip("pypdfium2")
pytest.importorskip("reportlab")

PAGES = [
    ["Installing the service", "Download the package and unpack it into a folder."],
    ["Configuring the service", "Set the port in the configuration file, then restart."],
    ["Troubleshooting", "When the service does not start, read the log file first."],
]


def _parse(path: Path, ocr: bool = False) -> Parsed:
    return parse_file(read_pdf, SourceFile(path, path.name), Fields("text", None, ocr=ocr))


def _document(parsed: Parsed) -> Document:
    assert parsed.error is None, parsed.error
    documents = [item for _, item in parsed.items if isinstance(item, Document)]
    assert len(documents) == 1
    return documents[0]


def _words(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text.lower()))


def _recall(reference: str, text: str) -> float:
    wanted, got = _words(reference), _words(text)
    return sum(min(count, got[word]) for word, count in wanted.items()) / sum(wanted.values())


def test_pages_in_order_one_span_per_page_and_the_title(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "manual.pdf", PAGES, title="Service manual")
    assert is_whole_file(SourceFile(path, "manual.pdf"))
    document = _document(_parse(path))
    assert document.id == document.source == "manual.pdf"
    assert document.metadata == {"title": "Service manual"}
    assert [span.metadata for span in document.spans] == [{"page": 1}, {"page": 2}, {"page": 3}]
    for span, lines in zip(document.spans, PAGES, strict=True):
        assert document.text[span.start : span.end] == "\n".join(lines)
    positions = [document.text.index(lines[0]) for lines in PAGES]
    assert positions == sorted(positions)
    assert document.text == "\n\n".join("\n".join(lines) for lines in PAGES)


def test_an_encrypted_pdf_is_an_error_that_says_so(tmp_path: Path) -> None:
    parsed = _parse(write_pdf(tmp_path / "secret.pdf", PAGES, password="s3cret"))
    assert parsed.items == [] and parsed.error is not None
    assert "encrypted" in parsed.error and "decrypt" in parsed.error


def test_a_truncated_pdf_is_an_error(tmp_path: Path) -> None:
    data = write_pdf(tmp_path / "whole.pdf", PAGES).read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: len(data) // 2])
    parsed = _parse(cut)
    assert parsed.items == [] and parsed.error is not None
    assert "truncated or corrupt" in parsed.error


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"just a text file\nwith lines\n", "not a PDF.*looks like text"),
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\0\0", "binary"),
    ],
)
def test_a_pdf_whose_bytes_are_not_a_pdf_is_an_error(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "liar.pdf"
    path.write_bytes(content)
    parsed = _parse(path)
    assert parsed.items == [] and parsed.error is not None
    assert re.search(match, parsed.error), parsed.error


def test_a_scanned_page_is_reported_with_its_number_and_the_rest_kept(tmp_path: Path) -> None:
    original = write_pdf(tmp_path / "original.pdf", PAGES)
    scan = rasterize_pdf(original, tmp_path / "scan.pdf", keep_text_pages=[1, 3], dpi=72)
    parsed = _parse(scan)
    unread = [(position, item) for position, item in parsed.items if isinstance(item, Unread)]
    assert [position for position, _ in unread] == [2]
    assert (
        "page 2 of 3 has no text layer" in unread[0][1].detail and "OCR is not enabled" in unread[0][1].detail
    )
    document = _document(parsed)
    assert [span.metadata["page"] for span in document.spans] == [1, 3]
    assert "Installing" in document.text and "Troubleshooting" in document.text
    assert "Configuring" not in document.text


def test_a_pdf_without_any_text_is_an_error_never_an_empty_document(tmp_path: Path) -> None:
    scan = rasterize_pdf(write_pdf(tmp_path / "original.pdf", PAGES), tmp_path / "scan.pdf", dpi=72)
    parsed = _parse(scan)
    assert parsed.items == [] and parsed.error is not None
    assert "no text layer on any of its 3 pages" in parsed.error and "ocr" in parsed.error


def test_ocr_reads_a_page_rasterised_from_a_text_pdf(tmp_path: Path) -> None:
    pytest.importorskip("pytesseract")
    if shutil.which("tesseract") is None:
        pytest.skip("the tesseract program is not installed (Debian: apt-get install tesseract-ocr)")
    lines = [
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "Vector stores keep embeddings of passages for semantic search.",
        "Each chunk records the page it came from and the document title.",
    ]
    original = write_pdf(tmp_path / "original.pdf", [lines], font_size=14)
    scan = rasterize_pdf(original, tmp_path / "scan.pdf", dpi=200)
    assert _parse(scan).error is not None  # without --ocr: no text
    document = _document(_parse(scan, ocr=True))
    assert [span.metadata for span in document.spans] == [{"page": 1}]
    assert _recall(" ".join(lines), document.text) >= 0.9


def test_a_missing_pypdfium2_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_pdf(tmp_path / "manual.pdf", PAGES)
    monkeypatch.setitem(sys.modules, "pypdfium2", None)
    parsed = _parse(path)
    assert parsed.missing is not None and "e5-integrations[documents]" in parsed.missing
