"""Real sample files of each format, built in the test with the format's own writer library
(python-docx, python-pptx, openpyxl) or by writing the zip/XML/JSON ourselves, plus what a
reader must find in them.

``SAMPLES`` maps an extension to a builder ``(tmp_path) -> Sample``; the reader contract
suite runs on every entry. Add a format by adding one builder here.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SAMPLES", "Sample", "docx_bytes", "epub_bytes", "xlsx_bytes"]


@dataclass(frozen=True)
class Sample:
    """A sample file and what reading it must give.

    Attributes:
        path: the file.
        words: phrases that must appear in the text (of all its documents, joined), in this order.
        title: the ``title`` metadata expected (None: no title expected).
        spans: (span metadata that must occur, a phrase inside that span's text).
        corrupt: bytes of a broken file of the same format (the reader must refuse them).
        documents: how many documents the file holds.
    """

    path: Path
    words: tuple[str, ...]
    title: str | None = None
    spans: tuple[tuple[Mapping[str, Any], str], ...] = ()
    corrupt: bytes = b""
    documents: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)


def _truncated(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


# -- DOCX ------------------------------------------------------------------------------------
def docx_bytes() -> bytes:
    """A policy memo made with python-docx: headings, lists, a table between paragraphs."""
    import docx

    document = docx.Document()
    document.core_properties.title = "Travel policy"
    document.add_heading("Booking travel", 1)
    document.add_paragraph("Book flights through the internal portal before the trip.")
    document.add_paragraph("Economy class for flights under six hours", style="List Bullet")
    document.add_paragraph("Trains preferred under four hours", style="List Bullet")
    document.add_paragraph("Collect the receipts", style="List Number")
    document.add_paragraph("Submit the expense report", style="List Number")
    table = document.add_table(rows=3, cols=2)
    for row, (item, limit) in enumerate(
        [("Expense", "Daily limit"), ("Hotel", "180 EUR"), ("Meals", "45 EUR")]
    ):
        table.cell(row, 0).text = item
        table.cell(row, 1).text = limit
    document.add_paragraph("Limits above apply per traveller.")
    document.add_heading("Approvals", 2)
    document.add_paragraph("Managers approve trips longer than three days.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def docx_sample(tmp_path: Path) -> Sample:
    path = tmp_path / "policy.docx"
    path.write_bytes(docx_bytes())
    return Sample(
        path,
        words=(
            "# Booking travel",
            "Book flights through the internal portal",
            "- Economy class for flights under six hours",
            "1. Collect the receipts",
            "2. Submit the expense report",
            "| Expense | Daily limit |",
            "| Hotel | 180 EUR |",
            "Limits above apply per traveller.",
            "## Approvals",
            "Managers approve trips",
        ),
        title="Travel policy",
        spans=(
            ({"section": "Booking travel"}, "| Meals | 45 EUR |"),
            ({"section": "Booking travel > Approvals"}, "Managers approve"),
        ),
        corrupt=_truncated(path),
    )


# -- PPTX ------------------------------------------------------------------------------------
def pptx_sample(tmp_path: Path) -> Sample:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Quarterly review"
    frame = first.placeholders[1].text_frame
    frame.text = "Revenue grew in every region"
    sub = frame.add_paragraph()
    sub.text = "North grew fastest"
    sub.level = 1
    first.notes_slide.notes_text_frame.text = "Thank the sales team."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Sales by region"
    table = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for row, (region, sales) in enumerate([("Region", "Sales"), ("North", "120"), ("South", "95")]):
        table.cell(row, 0).text = region
        table.cell(row, 1).text = sales
    box = second.shapes.add_textbox(Inches(1), Inches(5), Inches(6), Inches(1))
    box.text_frame.text = "Figures in thousands of euros."
    path = tmp_path / "review.pptx"
    deck.save(str(path))
    return Sample(
        path,
        words=(
            "# Quarterly review",
            "- Revenue grew in every region",
            "  - North grew fastest",
            "Notes: Thank the sales team.",
            "# Sales by region",
            "| Region | Sales |",
            "| South | 95 |",
            "Figures in thousands of euros.",
        ),
        title="Quarterly review",
        spans=(({"slide": 1}, "Revenue grew"), ({"slide": 2}, "| North | 120 |")),
        corrupt=_truncated(path),
    )


# -- XLSX ------------------------------------------------------------------------------------
def xlsx_bytes() -> bytes:
    """A two-sheet budget made with openpyxl (a date cell, a number, an empty column between)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Budget"
    sheet.append(["Item", "Cost", "Booked on"])
    sheet.append(["Hotel", 120, datetime.date(2024, 5, 1)])
    sheet.append(["Meals", 30.5, None])
    notes = workbook.create_sheet("Notes")
    notes["A1"] = "Remarks"
    notes["C2"] = "Prices include VAT"
    workbook.properties.title = "Trip budget"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def xlsx_sample(tmp_path: Path) -> Sample:
    path = tmp_path / "budget.xlsx"
    path.write_bytes(xlsx_bytes())
    return Sample(
        path,
        words=(
            "# Budget",
            "| Item | Cost | Booked on |",
            "| Hotel | 120 | 2024-05-01 |",
            "| Meals | 30.5 |  |",
            "# Notes",
            "| Remarks |  |",
            "|  | Prices include VAT |",
        ),
        title="Trip budget",
        spans=(({"sheet": "Budget"}, "Hotel"), ({"sheet": "Notes"}, "VAT")),
        corrupt=_truncated(path),
    )


# -- HTML ------------------------------------------------------------------------------------
HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Billing guide</title>
<style>body { color: STYLEJUNK }</style><script>var tracker = "SCRIPTJUNK";</script></head>
<body><nav><a href="/">Home</a> NAVJUNK</nav>
<h1>Billing</h1>
<p>Invoices are sent <b>monthly</b> &amp; paid by card.</p>
<h2>Plans</h2>
<ul><li>Free plan</li><li>Pro plan<ul><li>Priority support</li></ul></li></ul>
<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Pro</td><td>10 USD</td></tr></table>
<p>Prices exclude tax.</p>
<h2>Refunds</h2><ol><li>Open a ticket</li><li>Wait five days</li></ol>
<pre>curl -X POST /refunds</pre>
</body></html>
"""


def html_sample(tmp_path: Path) -> Sample:
    path = tmp_path / "billing.html"
    path.write_text(HTML_PAGE, encoding="utf-8")
    return Sample(
        path,
        words=(
            "# Billing",
            "Invoices are sent monthly & paid by card.",
            "## Plans",
            "- Free plan",
            "- Pro plan",
            "  - Priority support",
            "| Plan | Price |",
            "| Pro | 10 USD |",
            "Prices exclude tax.",
            "## Refunds",
            "1. Open a ticket",
            "2. Wait five days",
            "```\ncurl -X POST /refunds\n```",
        ),
        title="Billing guide",
        spans=(
            ({"section": "Billing > Plans"}, "Priority support"),
            ({"section": "Billing > Refunds"}, "ticket"),
        ),
        corrupt=b'<html><head><meta charset="utf-8"></head><body><p>caf\xe9</p></body></html>',
    )


# -- EPUB ------------------------------------------------------------------------------------
_CHAPTER = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title></head>
<body>{body}</body></html>
"""


def epub_bytes(chapters: list[tuple[str, str]] | None = None, title: str = "A Small Handbook") -> bytes:
    """An EPUB 3 written by hand: the spine order differs from the manifest's on purpose."""
    chapters = chapters or [
        ("one.xhtml", "<h1>Getting started</h1><p>Install the tool first.</p>"),
        ("two.xhtml", "<h1>Daily use</h1><h2>Searching</h2><p>Search with one command.</p>"),
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        archive.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        manifest = "".join(
            f'<item id="c{i}" href="text/{name}" media-type="application/xhtml+xml"/>'
            for i, (name, _) in reversed(list(enumerate(chapters)))
        )
        spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
        archive.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0" encoding="utf-8"?><package xmlns="http://www.idpf.org/2007/opf" '
            'version="3.0" unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f'<dc:identifier id="id">sample</dc:identifier><dc:title>{title}</dc:title>'
            f"<dc:language>en</dc:language></metadata><manifest>{manifest}</manifest>"
            f"<spine>{spine}</spine></package>",
        )
        for name, body in chapters:
            archive.writestr(f"OEBPS/text/{name}", _CHAPTER.format(title=name, body=body))
    return buffer.getvalue()


def epub_sample(tmp_path: Path) -> Sample:
    path = tmp_path / "handbook.epub"
    path.write_bytes(epub_bytes())
    return Sample(
        path,
        words=(
            "# Getting started",
            "Install the tool first.",
            "# Daily use",
            "## Searching",
            "Search with one",
        ),
        title="A Small Handbook",
        spans=(({"section": "Daily use > Searching"}, "Search with one command."),),
        corrupt=_truncated(path),
    )


# -- IPYNB -----------------------------------------------------------------------------------
def notebook(cells: list[dict[str, Any]]) -> str:
    """An nbformat 4 notebook of ``cells``, as JSON text."""
    return json.dumps(
        {
            "cells": cells,
            "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def ipynb_sample(tmp_path: Path) -> Sample:
    path = tmp_path / "analysis.ipynb"
    path.write_text(
        notebook(
            [
                {
                    "cell_type": "markdown",
                    "metadata": {},
                    "source": ["# Load the data\n", "\n", "We read a CSV."],
                },
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "metadata": {},
                    "outputs": [],
                    "source": ["import csv\n", "rows = list(csv.reader(open('a.csv')))"],
                },
                {"cell_type": "markdown", "metadata": {}, "source": "## Count\nHow many rows?"},
                {
                    "cell_type": "code",
                    "execution_count": 2,
                    "metadata": {},
                    "outputs": [
                        {"output_type": "stream", "name": "stdout", "text": ["42 rows\n"]},
                        {
                            "output_type": "execute_result",
                            "data": {"text/plain": ["'done'"]},
                            "metadata": {},
                            "execution_count": 2,
                        },
                    ],
                    "source": "print(len(rows), 'rows')",
                },
            ]
        ),
        encoding="utf-8",
    )
    return Sample(
        path,
        words=(
            "# Load the data",
            "We read a CSV.",
            "```python\nimport csv",
            "## Count",
            "How many rows?",
            "print(len(rows), 'rows')",
            "```output\n42 rows\n'done'\n```",
        ),
        title="Load the data",
        spans=(({"section": "Load the data > Count"}, "42 rows"),),
        corrupt=_truncated(path),
    )


# -- compressed ------------------------------------------------------------------------------
def jsonl_gz_sample(tmp_path: Path) -> Sample:
    path = tmp_path / "faq.jsonl.gz"
    records = [{"id": "q1", "text": "How do I rotate a key?"}, {"id": "q2", "text": "Where are invoices?"}]
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    return Sample(path, words=("rotate a key", "Where are invoices?"), corrupt=_truncated(path), documents=2)


def csv_gz_sample(tmp_path: Path) -> Sample:
    path = tmp_path / "rows.csv.gz"
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerows([["id", "text"], ["r1", "First row, with a comma"], ["r2", "Second row"]])
    path.write_bytes(gzip.compress(text.getvalue().encode()))
    return Sample(
        path, words=("First row, with a comma", "Second row"), corrupt=_truncated(path), documents=2
    )


def txt_zst_sample(tmp_path: Path) -> Sample:
    import zstandard

    path = tmp_path / "notes.txt.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress("Zstandard compressed notes, café.".encode()))
    return Sample(path, words=("Zstandard compressed notes, café.",), corrupt=_truncated(path))


def txt_gz_sample(tmp_path: Path) -> Sample:
    path = tmp_path / "notes.txt.gz"
    path.write_bytes(gzip.compress(b"Gzip compressed notes.\n" * 50))
    return Sample(
        path, words=("Gzip compressed notes.",), corrupt=b"\x1f\x8b\x08\x00garbage that is not deflate"
    )


def txt_sample(tmp_path: Path) -> Sample:
    path = tmp_path / "plain.txt"
    path.write_text("Plain UTF-8 text, naïve café.", encoding="utf-8")
    return Sample(path, words=("naïve café",), corrupt=b"caf\xe9 in cp1252")


SAMPLES: dict[str, Callable[[Path], Sample]] = {
    ".docx": docx_sample,
    ".pptx": pptx_sample,
    ".xlsx": xlsx_sample,
    ".html": html_sample,
    ".epub": epub_sample,
    ".ipynb": ipynb_sample,
    ".jsonl.gz": jsonl_gz_sample,
    ".csv.gz": csv_gz_sample,
    ".txt.gz": txt_gz_sample,
    ".txt.zst": txt_zst_sample,
    ".txt": txt_sample,
}
