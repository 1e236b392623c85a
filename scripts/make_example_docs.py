"""Write the example documents of each format under examples/docs (issue 20).

    python scripts/make_example_docs.py [OUT_DIR]     # default: examples/docs

Every text here was written for this repository (no third-party text), so the files may
ship with it; examples/docs/README.md says which file came from what. Office files are made
with their own writer libraries (python-docx, python-pptx, openpyxl: in the ``test``
extra), the EPUB, notebook and compressed file by hand. Timestamps inside the Office
files make each run's bytes differ; the text does not.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXED = datetime.datetime(2025, 1, 15, 9, 0, 0)

SECURITY_POLICY = [
    ("h1", "API key security policy"),
    ("p", "This policy says how teams create, store, rotate and revoke API keys for the platform."),
    ("h2", "Rotating API keys"),
    (
        "p",
        "Rotate every production API key at least every 90 days, and at once when someone who knew it leaves.",
    ),
    ("n", "Create a new key in the dashboard under Settings > API keys."),
    ("n", "Deploy the new key to every service that uses the old one."),
    ("n", "Watch the old key's last-used time until it stops changing."),
    ("n", "Revoke the old key."),
    (
        "table",
        [
            ["Key kind", "Rotation", "Owner"],
            ["Production", "90 days", "Service team"],
            ["Staging", "180 days", "Service team"],
            ["Personal", "365 days", "Key holder"],
        ],
    ),
    ("p", "A key that leaked is revoked first and rotated afterwards."),
    ("h2", "Storing keys"),
    ("b", "Keep keys in the secret manager, never in source control."),
    ("b", "Never paste a key into a ticket, chat or e-mail."),
    ("b", "Give each service its own key, so one revocation breaks one service."),
]

BILLING_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Billing and invoices</title>
<script>window.analytics = [];</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/docs">Docs</a></nav>
<main>
<h1>Billing and invoices</h1>
<p>Invoices are issued on the first day of each month for the previous month's usage and are
paid by card or bank transfer.</p>
<h2>Plans</h2>
<table>
<tr><th>Plan</th><th>Monthly price</th><th>Included requests</th></tr>
<tr><td>Free</td><td>0 USD</td><td>10,000</td></tr>
<tr><td>Pro</td><td>49 USD</td><td>1,000,000</td></tr>
<tr><td>Team</td><td>199 USD</td><td>5,000,000</td></tr>
</table>
<h2>Refunds</h2>
<ol><li>Open a support ticket within 30 days of the invoice.</li>
<li>Give the invoice number and the reason.</li>
<li>Refunds reach the original payment method within five business days.</li></ol>
<h2>Changing the billing e-mail</h2>
<p>Owners change the billing e-mail under <b>Settings &gt; Billing</b>; invoices go to the new
address from the next month.</p>
</main>
<footer>Questions? Write to the support team.</footer>
</body></html>
"""

SLIDES = [
    (
        "Platform review, fourth quarter",
        [
            "Requests served grew 40% over the quarter",
            "Median search latency fell to 35 ms",
            "Two incidents, both fixed within an hour",
        ],
        "Start with the latency work; it was the team's biggest project.",
    ),
    (
        "Incidents",
        ["Expired TLS certificate on the staging gateway", "A key rotated without redeploying one worker"],
        "The second incident is why the rotation steps now include watching the old key.",
    ),
]
SLIDE_TABLE = [
    ["Metric", "Q3", "Q4"],
    ["Requests (millions)", "410", "575"],
    ["Median latency (ms)", "52", "35"],
    ["Uptime", "99.93%", "99.98%"],
]

LIMITS = [
    ["Plan", "Requests per minute", "Max document size (MB)", "Collections"],
    ["Free", 60, 5, 3],
    ["Pro", 1000, 50, 50],
    ["Team", 5000, 200, 500],
]

HANDBOOK = [
    (
        "welcome.xhtml",
        "<h1>Welcome</h1><p>This handbook is for new members of the platform team. Read the first two chapters in your first week.</p>",
    ),
    (
        "on-call.xhtml",
        "<h1>On call</h1><h2>Before your first shift</h2><p>Shadow one shift, check that paging reaches your phone, and read the incident checklist.</p><h2>During an incident</h2><ul><li>Acknowledge the page within five minutes.</li><li>Open an incident channel and post what you see.</li><li>Ask for help early; nobody is graded on solving it alone.</li></ul>",
    ),
    (
        "reviews.xhtml",
        "<h1>Code review</h1><p>Every change is reviewed by one person who did not write it. Reviews answer within one working day.</p>",
    ),
]

NOTEBOOK_CELLS = [
    (
        "markdown",
        "# Embedding quickstart\n\nEmbed two documents and one query with the tiny test model, then rank the documents.",
    ),
    (
        "code",
        'from e5_integrations import E5Encoder\n\nencoder = E5Encoder(".cache/e5-tiny", device="cpu")\ndocs = ["Rotate API keys every 90 days.", "Invoices are issued monthly."]\ndoc_vectors = encoder.encode_documents(docs)',
    ),
    ("markdown", "## Ranking\n\nVectors are L2-normalised, so a dot product is the cosine similarity."),
    (
        "code",
        'query = encoder.encode_queries(["how often should keys be rotated?"])\nscores = query @ doc_vectors.T\nprint(scores.argmax())',
    ),
]

RELEASE_NOTES = [
    {
        "id": "release-0.1.0",
        "text": "First release: e5 ingest reads text, Markdown, JSON Lines, CSV and Parquet, and writes to Chroma, Milvus, Qdrant and PostgreSQL.",
        "version": "0.1.0",
    },
    {
        "id": "release-0.2.0",
        "text": "Documents: e5 ingest now reads Word, PowerPoint, Excel, HTML, EPUB and Jupyter notebooks, and gzip or Zstandard compressed text files.",
        "version": "0.2.0",
    },
]


def write_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    properties = document.core_properties
    properties.title, properties.author, properties.created, properties.modified = (
        "API key security policy", "e5-integrations", FIXED, FIXED,
    )  # fmt: skip
    for kind, value in SECURITY_POLICY:
        if kind == "h1":
            document.add_heading(value, 1)
        elif kind == "h2":
            document.add_heading(value, 2)
        elif kind == "p":
            document.add_paragraph(value)
        elif kind == "n":
            document.add_paragraph(value, style="List Number")
        elif kind == "b":
            document.add_paragraph(value, style="List Bullet")
        else:
            table = document.add_table(rows=len(value), cols=len(value[0]))
            for r, row in enumerate(value):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
    document.save(str(path))


def write_pptx(path: Path) -> None:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    deck.core_properties.title = "Platform review, fourth quarter"
    deck.core_properties.created = deck.core_properties.modified = FIXED
    for title, bullets, notes in SLIDES:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        frame = slide.placeholders[1].text_frame
        frame.text = bullets[0]
        for bullet in bullets[1:]:
            frame.add_paragraph().text = bullet
        slide.notes_slide.notes_text_frame.text = notes
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Numbers"
    table = slide.shapes.add_table(
        len(SLIDE_TABLE), 3, Inches(0.5), Inches(1.8), Inches(9), Inches(2.5)
    ).table
    for r, row in enumerate(SLIDE_TABLE):
        for c, cell in enumerate(row):
            table.cell(r, c).text = cell
    deck.save(str(path))


def write_xlsx(path: Path) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.properties.title = "Plan limits"
    workbook.properties.created = workbook.properties.modified = FIXED
    sheet = workbook.active
    sheet.title = "Limits"
    for row in LIMITS:
        sheet.append(row)
    notes = workbook.create_sheet("Notes")
    notes.append(["Note"])
    notes.append(["Limits apply per organisation, not per user."])
    notes.append(["Ask support for a temporary raise before a large import."])
    workbook.save(path)


def epub_bytes(title: str, chapters: list[tuple[str, str]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype", FIXED.timetuple()[:6]), "application/epub+zip")
        archive.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?>\n<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>\n",
        )
        manifest = "".join(
            f'<item id="c{n}" href="{name}" media-type="application/xhtml+xml"/>'
            for n, (name, _) in enumerate(chapters)
        )
        spine = "".join(f'<itemref idref="c{n}"/>' for n in range(len(chapters)))
        archive.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0" encoding="utf-8"?>\n<package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
            'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f'<dc:identifier id="id">e5-integrations-handbook</dc:identifier><dc:title>{title}</dc:title>'
            f"<dc:language>en</dc:language></metadata><manifest>{manifest}</manifest><spine>{spine}</spine></package>\n",
        )
        for name, body in chapters:
            archive.writestr(
                f"OEBPS/{name}",
                '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml">'
                f"<head><title>{name}</title></head><body>{body}</body></html>\n",
            )
    return out.getvalue()


def notebook_json() -> str:
    cells = []
    for kind, source in NOTEBOOK_CELLS:
        cell: dict[str, object] = {
            "cell_type": kind,
            "metadata": {},
            "source": source.splitlines(keepends=True),
        }
        if kind == "code":
            cell.update(execution_count=None, outputs=[])  # unexecuted: read all the same
        cells.append(cell)
    metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    return (
        json.dumps({"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}, indent=1)
        + "\n"
    )


#: A two-page operations manual (the PDF example), page by page, line by line.
OPERATIONS_MANUAL = [
    [
        "Ingestion service operations manual",
        "",
        "1. Nightly runs",
        "The ingestion job runs every night at 02:00 and reads the exported documents.",
        "A re-run skips every chunk the vector store already holds unchanged,",
        "so a night with few edits finishes in minutes.",
        "",
        "2. When a run fails",
        "Start the same command again: it resumes where the failed run stopped.",
    ],
    [
        "3. Scanned pages",
        "A page without a text layer is reported with its page number, never stored empty.",
        "Pass --ocr to read such pages with Tesseract.",
        "",
        "4. Contacts",
        "The platform team answers pages about the ingestion service within one hour.",
    ],
]


def write_pdf(path: Path) -> None:
    """The PDF example, drawn with reportlab (BSD; in the ``test`` extra): text pages, a title."""
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=(612, 792), invariant=True)
    pdf.setTitle("Ingestion service operations manual")
    for lines in OPERATIONS_MANUAL:
        pdf.setFont("Helvetica", 11)
        y = 720.0
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 16.5
        pdf.showPage()
    pdf.save()


def main(out: Path) -> None:
    for folder in ("policies", "guides", "slides", "sheets", "books", "notebooks", "releases", "manuals"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    write_docx(out / "policies" / "api-key-security.docx")
    (out / "guides" / "billing.html").write_text(BILLING_PAGE, encoding="utf-8")
    write_pptx(out / "slides" / "platform-review.pptx")
    write_xlsx(out / "sheets" / "plan-limits.xlsx")
    (out / "books" / "team-handbook.epub").write_bytes(epub_bytes("Platform team handbook", HANDBOOK))
    (out / "notebooks" / "embedding-quickstart.ipynb").write_text(notebook_json(), encoding="utf-8")
    lines = "".join(json.dumps(record) + "\n" for record in RELEASE_NOTES).encode()
    (out / "releases" / "release-notes.jsonl.gz").write_bytes(gzip.compress(lines, mtime=0))
    write_pdf(out / "manuals" / "operations-manual.pdf")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "examples" / "docs")
