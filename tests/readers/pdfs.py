"""PDFs made for the tests, with reportlab (nothing third-party is committed)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points


def write_pdf(
    path: Path,
    pages: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    password: str | None = None,
    font_size: int = 11,
) -> Path:
    """A PDF with one page per entry of ``pages``, each line of it drawn as text."""
    from reportlab.lib.pdfencrypt import StandardEncryption
    from reportlab.pdfgen import canvas

    encrypt = StandardEncryption(password, canPrint=1) if password is not None else None
    pdf = canvas.Canvas(str(path), pagesize=(PAGE_WIDTH, PAGE_HEIGHT), encrypt=encrypt)
    if title is not None:
        pdf.setTitle(title)
    for lines in pages:
        pdf.setFont("Helvetica", font_size)
        y: float = PAGE_HEIGHT - 72
        for line in lines:
            pdf.drawString(72, y, line)
            y -= font_size * 1.5
        pdf.showPage()
    pdf.save()
    return path


def rasterize_pdf(source: Path, path: Path, *, keep_text_pages: Sequence[int] = (), dpi: int = 200) -> Path:
    """A copy of ``source`` whose pages are images only (a scan), except the 1-based
    ``keep_text_pages``, which are drawn from the original's text again."""
    import pypdfium2
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    original = pypdfium2.PdfDocument(str(source))
    pdf = canvas.Canvas(str(path), pagesize=(PAGE_WIDTH, PAGE_HEIGHT))
    for index in range(len(original)):
        page = original[index]
        if index + 1 in keep_text_pages:
            text = page.get_textpage().get_text_bounded().replace("\r\n", "\n")
            pdf.setFont("Helvetica", 11)
            y = PAGE_HEIGHT - 72
            for line in text.splitlines():
                pdf.drawString(72, y, line)
                y -= 16
        else:
            image = page.render(scale=dpi / 72).to_pil()
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            buffer.seek(0)
            pdf.drawImage(ImageReader(buffer), 0, 0, PAGE_WIDTH, PAGE_HEIGHT)
        pdf.showPage()
    original.close()
    pdf.save()
    return path
