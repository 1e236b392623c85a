"""The Office readers on details the contract suite does not reach: merged cells, tracked
changes, nested tables, shared strings, formulas' cached values, dates, the cell cap."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from e5_integrations import SourceError
from e5_integrations.ingest._readers import Document, SourceFile, xlsx
from e5_integrations.ingest._sources import read_source_file


def _document(path: Path) -> Document:
    (document,) = read_source_file(SourceFile(path, path.name))
    return document


# -- DOCX ------------------------------------------------------------------------------------
def test_docx_title_falls_back_to_the_first_heading_and_merged_cells_keep_columns(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("Preamble before any heading.")
    document.add_heading("Security policy", 1)
    table = document.add_table(rows=2, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 1))
    merged.text = "Wide header"
    table.cell(0, 2).text = "Owner"
    table.cell(1, 0).text = "Keys"
    table.cell(1, 1).text = "Rotate yearly"
    inner = table.cell(1, 2).add_table(rows=1, cols=2)
    inner.cell(0, 0).text = "Ops"
    inner.cell(0, 1).text = "team"
    path = tmp_path / "security.docx"
    document.save(str(path))
    read = _document(path)
    assert read.metadata == {"title": "Security policy"}
    assert read.text.startswith("Preamble before any heading.\n\n# Security policy")
    assert "| Wide header |  | Owner |" in read.text  # the span keeps the columns aligned
    assert "| Keys | Rotate yearly | Ops team |" in read.text  # the nested table flattened into its cell
    assert [dict(span.metadata) for span in read.spans] == [{"section": "Security policy"}]


def test_docx_tracked_deletions_and_field_codes_are_not_text(tmp_path: Path) -> None:
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = (
        "<w:p><w:r><w:t>Kept </w:t></w:r><w:del><w:r><w:delText>DELETED</w:delText></w:r></w:del>"
        "<w:ins><w:r><w:t>inserted</w:t></w:r></w:ins>"
        '<w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText>PAGE \\* MERGEFORMAT</w:instrText></w:r>'
        "<w:r><w:t>, tab</w:t><w:tab/><w:t>end</w:t></w:r></w:p>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            "word/document.xml", f'<w:document xmlns:w="{w}"><w:body>{body}</w:body></w:document>'
        )
    path = tmp_path / "tracked.docx"
    path.write_bytes(out.getvalue())
    assert _document(path).text == "Kept inserted, tab\tend"


# -- PPTX ------------------------------------------------------------------------------------
def test_pptx_group_shapes_are_read_and_an_empty_slide_has_no_span(tmp_path: Path) -> None:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    deck.slides.add_slide(deck.slide_layouts[6])  # blank: no text at all
    slide = deck.slides.add_slide(deck.slide_layouts[6])
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(1), Inches(2), Inches(1)).text_frame.text = "Inside a group"
    path = tmp_path / "groups.pptx"
    deck.save(str(path))
    read = _document(path)
    assert read.text == "Inside a group"
    assert [dict(span.metadata) for span in read.spans] == [{"slide": 2}]
    assert read.metadata == {}


# -- XLSX ------------------------------------------------------------------------------------
_S = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _workbook(sheet_xml: str, date1904: bool = False) -> bytes:
    """An .xlsx written by hand as Excel writes it: shared strings, styles, cached formula values."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            "_rels/.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        )
        archive.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{_S}" xmlns:r="{_R}"><workbookPr date1904="{int(date1904)}"/>'
            '<sheets><sheet name="Costs" sheetId="1" r:id="rId1"/>'
            '<sheet name="Hidden one" sheetId="2" state="hidden" r:id="rId4"/></sheets></workbook>',
        )
        archive.writestr(
            "xl/_rels/workbook.xml.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
            f'<Relationship Id="rId3" Type="{_REL}/styles" Target="styles.xml"/>'
            f'<Relationship Id="rId4" Type="{_REL}/worksheet" Target="worksheets/sheet2.xml"/></Relationships>',
        )
        archive.writestr(
            "xl/sharedStrings.xml",
            f'<sst xmlns="{_S}"><si><t>Item</t></si><si><t>Total</t></si>'
            "<si><r><t>Rich </t></r><r><t>text | pipe</t></r><rPh><t>PHONETIC</t></rPh></si></sst>",
        )
        archive.writestr(
            "xl/styles.xml",
            f'<styleSheet xmlns="{_S}"><numFmts><numFmt numFmtId="164" formatCode="dd/mm/yyyy hh:mm"/>'
            '<numFmt numFmtId="165" formatCode="&quot;EUR&quot; #,##0.00"/></numFmts>'
            '<cellXfs><xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="165"/><xf numFmtId="14"/></cellXfs>'
            "</styleSheet>",
        )
        archive.writestr("xl/worksheets/sheet1.xml", sheet_xml)
        archive.writestr(
            "xl/worksheets/sheet2.xml",
            f'<worksheet xmlns="{_S}"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>secret sheet</t></is></c>'
            "</row></sheetData></worksheet>",
        )
    return out.getvalue()


def _sheet(rows: str) -> str:
    return f'<worksheet xmlns="{_S}"><sheetData>{rows}</sheetData></worksheet>'


def test_xlsx_shared_strings_cached_formula_values_dates_and_hidden_sheets(tmp_path: Path) -> None:
    rows = (
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>2</v></c><c r="C1" s="1"><v>45413.5</v></c></row>'
        '<row r="3"><c r="A3" t="s"><v>1</v></c><c r="B3" s="2"><f>SUM(B1:B2)</f><v>150.5</v></c>'
        '<c r="C3" t="b"><v>1</v></c><c r="D3" s="3"><v>45413</v></c><c r="E3" t="str"><f>"a"&amp;"b"</f><v>ab</v></c>'
        '<c r="F3" t="e"><v>#DIV/0!</v></c></row>'
    )
    path = tmp_path / "costs.xlsx"
    path.write_bytes(_workbook(_sheet(rows)))
    read = _document(path)
    costs, hidden = read.text.split("\n\n# Hidden one\n\n")
    assert costs.splitlines() == [
        "# Costs",
        "",
        "| Item | Rich text \\| pipe | 2024-05-01 12:00:00 |  |  |  |",
        "| --- | --- | --- | --- | --- | --- |",
        "| Total | 150.5 | TRUE | 2024-05-01 | ab | #DIV/0! |",
    ]
    assert hidden == "| secret sheet |\n| --- |"
    assert "PHONETIC" not in read.text
    assert [dict(span.metadata) for span in read.spans if "sheet" in span.metadata] == [
        {"sheet": "Costs"},
        {"sheet": "Hidden one"},
    ]


def test_xlsx_1904_dates(tmp_path: Path) -> None:
    path = tmp_path / "mac.xlsx"
    path.write_bytes(_workbook(_sheet('<row r="1"><c r="A1" s="3"><v>0</v></c></row>'), date1904=True))
    assert "| 1904-01-01 |" in _document(path).text


def test_xlsx_past_the_cell_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx, "MAX_CELLS", 10)
    rows = "".join(f'<row r="{n}"><c r="A{n}"><v>{n}</v></c></row>' for n in range(1, 12))
    path = tmp_path / "huge.xlsx"
    path.write_bytes(_workbook(_sheet(rows)))
    with pytest.raises(SourceError, match="more than 10 non-empty cells; export its sheets to CSV"):
        _document(path)


def test_xlsx_a_corrupt_sheet_names_the_sheet(tmp_path: Path) -> None:
    path = tmp_path / "cut.xlsx"
    path.write_bytes(_workbook(_sheet('<row r="1"><c r="A1"><v>1</v></c>')[:-20]))
    with pytest.raises(SourceError, match="sheet 'Costs'.*not well-formed XML"):
        _document(path)


def test_docx_body_is_streamed_not_held_as_one_tree(tmp_path: Path) -> None:
    """10,000 paragraphs: reading the file peaks under half of what parsing its body as one
    tree takes (a million tiny paragraphs must not take a tree of millions of elements)."""
    import tracemalloc

    from e5_integrations.ingest._readers import _safe

    w = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    paragraphs = b"".join(b"<w:p><w:r><w:t>p%d</w:t></w:r></w:p>" % n for n in range(10_000))
    xml = b"<w:document " + w + b"><w:body>" + paragraphs + b"</w:body></w:document>"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", xml)  # no styles part: only the body weighs
    path = tmp_path / "many.docx"
    path.write_bytes(out.getvalue())
    tracemalloc.start()
    try:
        tree = _safe.parse_xml(xml, "body")
        tree_peak = tracemalloc.get_traced_memory()[1]
        del tree
        tracemalloc.reset_peak()
        read = _document(path)
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read.text.startswith("p0\n\np1\n\n") and read.text.endswith("p9999")
    assert read_peak < tree_peak / 2, (read_peak, tree_peak)
