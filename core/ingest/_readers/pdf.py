"""``.pdf``: one document per file, its pages' text layer in order, one span per page.

Read with pypdfium2 (PDFium; Apache-2.0/BSD-3), chosen on measurement: on 1,550 pages of
real manuals it read about 10x the pages per second of pypdf at a higher word recall
against ``pdftotext -layout`` (see ``benchmarks/README.md``). Pages are joined with a blank
line; each page's stretch of the text is a :class:`Span` ``{"page": n}`` (1-based), so every
chunk knows its pages. Words hyphenated across a line break are joined (PDFium marks
those hyphens).

Nothing is silently lost or silently empty:

- a page without a text layer (a scanned image) is reported as an :class:`Unread` part
  ("no text layer, OCR is not enabled; pass --ocr"), the rest is kept; with ``--ocr`` it is
  read with Tesseract (``pytesseract`` and the system's ``tesseract``);
- a PDF with no text at all, an encrypted PDF, a truncated or corrupt one, and a ``.pdf``
  whose bytes are not a PDF are each a :class:`RecordError` naming what is wrong (and the
  page where it applies).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from e5_integrations._errors import option
from e5_integrations.ingest._readers._base import (
    Document,
    Fields,
    Item,
    RecordError,
    SourceFile,
    Span,
    Unread,
    register_reader,
)

__all__ = ["read_pdf"]

#: Resolution pages are rendered at for OCR.
OCR_DPI = 300
#: Bytes of the file searched for the ``%PDF-`` header (the spec allows junk before it).
HEADER_WINDOW = 1024


def _pdfium() -> Any:
    try:
        import pypdfium2
    except ImportError as exc:
        raise ImportError(
            f"reading .pdf files needs pypdfium2 ({exc}); install it with: pip install 'e5-integrations[documents]'"
        ) from exc
    return pypdfium2


def _check_header(data: bytes) -> None:
    """Refuse bytes that are not a PDF (an extension that lies), saying what they look like."""
    if not data:
        raise RecordError("the file is empty (0 bytes), not a PDF")
    if b"%PDF-" in data[:HEADER_WINDOW]:
        return
    head = data[:HEADER_WINDOW]
    try:
        head.decode("utf-8")
        looks = "text"
    except UnicodeDecodeError:
        looks = "binary data"
    sample = data[:16]
    raise RecordError(
        f"not a PDF: no '%PDF-' header in its first {HEADER_WINDOW} bytes (it starts with {sample!r}, "
        f"which looks like {looks}); rename it to its real extension, or convert it to PDF"
    )


def _open(pdfium: Any, data: bytes) -> Any:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        message = str(exc)
        if "password" in message.lower():
            raise RecordError(
                "the PDF is encrypted (password protected); decrypt it (e.g. qpdf --decrypt) and ingest the copy"
            ) from None
        raise RecordError(f"not a readable PDF (truncated or corrupt): {message}") from None


def _page_text(textpage: Any) -> str:
    text = str(textpage.get_text_bounded())
    # PDFium marks a hyphen at a line break with \x02: join the word it split
    text = text.replace("\x02\r\n", "").replace("\x02\n", "").replace("\x02", "-")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()


def _has_images(page: Any, pdfium: Any) -> bool:
    image = pdfium.raw.FPDF_PAGEOBJ_IMAGE
    return any(obj.type == image for obj in page.get_objects(max_depth=2))


def _ocr(page: Any, number: int) -> str:
    try:
        import pytesseract
    except ImportError as exc:
        raise ImportError(
            f"--ocr needs pytesseract ({exc}); install it with: pip install 'e5-integrations[documents]', "
            "and the tesseract program (Debian: apt-get install tesseract-ocr)"
        ) from exc
    image = page.render(scale=OCR_DPI / 72).to_pil()
    try:
        return str(pytesseract.image_to_string(image)).strip()
    except pytesseract.TesseractNotFoundError as exc:
        raise ImportError(
            "--ocr needs the tesseract program on the PATH (Debian: apt-get install tesseract-ocr)"
        ) from exc
    except pytesseract.TesseractError as exc:
        raise RecordError(f"page {number}: tesseract failed: {exc}") from exc


def read_pdf(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    """The PDF as one document (see the module docs); ``Unread`` items for pages left out."""
    pdfium = _pdfium()
    with source.open() as handle:
        data = handle.read()
    _check_header(data)
    document = _open(pdfium, data)
    parts: list[str] = []
    spans: list[Span] = []
    unread: list[tuple[int, Item]] = []
    offset = 0
    try:
        pages = len(document)
        if pages == 0:
            raise RecordError("the PDF has no pages (truncated or corrupt?)")
        for index in range(pages):
            number = index + 1
            try:
                page = document[index]
            except pdfium.PdfiumError as exc:
                raise RecordError(f"page {number} of {pages}: cannot be loaded (corrupt?): {exc}") from None
            try:
                textpage = page.get_textpage()
                try:
                    text = _page_text(textpage)
                finally:
                    textpage.close()
                if not text and _has_images(page, pdfium):
                    if fields.ocr:
                        text = _ocr(page, number)
                    else:
                        unread.append(
                            (
                                number,
                                Unread(
                                    f"page {number} of {pages} has no text layer (a scanned image?) and OCR is "
                                    f"not enabled; pass {option('ocr')} to read it with Tesseract"
                                ),
                            )
                        )
            finally:
                page.close()
            if not text:
                continue
            if parts:
                offset += 2
            spans.append(Span(offset, offset + len(text), {"page": number}))
            parts.append(text)
            offset += len(text)
        title = _title(document)
    finally:
        document.close()
    yield from unread
    if not parts:
        scanned = len(unread)
        if scanned:
            raise RecordError(
                f"no text layer on any of its {pages} pages ({scanned} are images: a scan?) and OCR is not "
                f"enabled; pass {option('ocr')} to read them with Tesseract"
            )
        raise RecordError(f"no text in any of its {pages} pages; nothing to ingest")
    metadata = {"title": title} if title else {}
    yield (
        0,
        Document(
            id=source.file_id,
            text="\n\n".join(parts),
            source=source.file_id,
            metadata=metadata,
            spans=tuple(spans),
        ),
    )


def _title(document: Any) -> str:
    try:
        value = document.get_metadata_value("Title")
    except Exception:  # a broken info dictionary costs the title, not the document
        return ""
    return str(value or "").replace("\x00", "").strip()


register_reader(read_pdf, ".pdf", whole_file=True)
