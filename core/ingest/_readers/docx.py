"""``.docx``: one document per file, the body in reading order as Markdown-like text.

Headings (``Heading N``/``Title`` styles, or an outline level) become ``#`` lines and open a
section span (``{"section": "Intro > Setup"}``); numbered and bulleted paragraphs become
``1.``/``-`` items; tables become pipe tables where they stand between paragraphs. The
title is the core properties' title, else the first heading. Parsed from the OOXML with the
safe XML parser (no third-party library). Not read: images, charts, embedded objects,
headers, footers, footnotes, comments, deleted (tracked) text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from e5_integrations.ingest._readers._base import Document, Fields, Item, SourceFile, register_reader
from e5_integrations.ingest._readers._markdown import TextBuilder, inline
from e5_integrations.ingest._readers._ooxml import MC, W, core_title, main_part
from e5_integrations.ingest._readers._safe import SafeZip, iter_elements

_HEADING_NAME = re.compile(r"heading\s*([1-9])$", re.IGNORECASE)
#: Subtrees whose text is not the paragraph's (properties, deleted text, fallbacks, fields).
_SKIP = {W + "pPr", W + "rPr", W + "del", W + "delText", W + "instrText", MC + "Fallback"}
_CONTAINERS = {W + "sdt", W + "sdtContent", W + "customXml", W + "ins", W + "smartTag"}


@dataclass
class _Style:
    level: int | None
    num: tuple[str, str] | None  # (numId, ilvl)
    based_on: str | None
    name: str


def _val(element: Element | None) -> str | None:
    return None if element is None else element.get(W + "val")


def _styles(archive: SafeZip) -> dict[str, _Style]:
    if not archive.has("word/styles.xml"):
        return {}
    styles: dict[str, _Style] = {}
    for style in archive.xml("word/styles.xml").iter(W + "style"):
        if style.get(W + "type") != "paragraph":
            continue
        name = _val(style.find(W + "name")) or ""
        level: int | None = None
        match = _HEADING_NAME.match(name.strip())
        if match:
            level = int(match.group(1))
        elif name.strip().lower() == "title":
            level = 1
        else:
            outline = _val(style.find(f"{W}pPr/{W}outlineLvl"))
            if outline is not None and outline.isdigit() and int(outline) < 9:
                level = int(outline) + 1
        num_pr = style.find(f"{W}pPr/{W}numPr")
        num = None
        if num_pr is not None:
            num = (_val(num_pr.find(W + "numId")) or "0", _val(num_pr.find(W + "ilvl")) or "0")
        styles[style.get(W + "styleId", "")] = _Style(level, num, _val(style.find(W + "basedOn")), name)
    return styles


def _numbering(archive: SafeZip) -> dict[str, dict[str, tuple[bool, int]]]:
    """numId -> ilvl -> (ordered, start)."""
    if not archive.has("word/numbering.xml"):
        return {}
    root = archive.xml("word/numbering.xml")
    abstract: dict[str, dict[str, tuple[bool, int]]] = {}
    for node in root.iter(W + "abstractNum"):
        levels = {}
        for lvl in node.iter(W + "lvl"):
            fmt = _val(lvl.find(W + "numFmt")) or "decimal"
            start = _val(lvl.find(W + "start")) or "1"
            levels[lvl.get(W + "ilvl", "0")] = (
                fmt not in ("bullet", "none"),
                int(start) if start.isdigit() else 1,
            )
        abstract[node.get(W + "abstractNumId", "")] = levels
    return {
        num.get(W + "numId", ""): abstract.get(_val(num.find(W + "abstractNumId")) or "", {})
        for num in root.iter(W + "num")
    }


def _resolve(styles: dict[str, _Style], style_id: str | None) -> tuple[int | None, tuple[str, str] | None]:
    """A paragraph style's heading level and numbering, following ``basedOn`` (cycles stop)."""
    level: int | None = None
    num: tuple[str, str] | None = None
    seen: set[str] = set()
    while style_id and style_id in styles and style_id not in seen:
        seen.add(style_id)
        style = styles[style_id]
        level = level if level is not None else style.level
        num = num or style.num
        style_id = style.based_on
    return level, num


def _children(element: Element) -> Iterator[Element]:
    """Paragraphs and tables under ``element`` in order, looking through content controls."""
    stack = [iter(element)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
        elif child.tag in (W + "p", W + "tbl"):
            yield child
        elif child.tag in _CONTAINERS:
            stack.append(iter(child))


def _paragraph_text(paragraph: Element) -> str:
    parts: list[str] = []
    stack = [iter(paragraph)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        tag = node.tag
        if tag == W + "t":
            parts.append(node.text or "")
        elif tag == W + "tab":
            parts.append("\t")
        elif tag in (W + "br", W + "cr"):
            parts.append("\n")
        elif tag == W + "noBreakHyphen":
            parts.append("-")
        elif tag in _SKIP:
            continue
        else:
            if tag == W + "p":  # a text box's paragraph inside this one
                parts.append("\n")
            stack.append(iter(node))
    return "".join(parts)


def _rows(table: Element) -> list[list[str]]:
    rows: list[list[str]] = []
    for row in table.findall(W + "tr"):
        cells: list[str] = []
        for cell in row.findall(W + "tc"):
            texts = []
            for block in _children(cell):
                if block.tag == W + "p":
                    texts.append(inline(_paragraph_text(block)))
                else:  # a nested table: its words, flattened into this cell
                    texts.append(inline(" ".join(_paragraph_text(p) for p in block.iter(W + "p"))))
            cells.append(" ".join(text for text in texts if text))
            span = _val(cell.find(f"{W}tcPr/{W}gridSpan"))
            if span and span.isdigit():
                cells.extend([""] * (int(span) - 1))
        rows.append(cells)
    return rows


class _Body:
    """Turns the body's paragraphs and tables, one at a time, into the builder's blocks."""

    def __init__(self, styles: dict[str, _Style], numbering: dict[str, dict[str, tuple[bool, int]]]) -> None:
        self.builder = TextBuilder()
        self._styles = styles
        self._numbering = numbering
        self._counters: dict[tuple[str, str], int] = {}
        self._list = ""

    def add(self, block: Element) -> None:
        """A body child: a paragraph, a table, or a container of them (a content control)."""
        for item in (block,) if block.tag in (W + "p", W + "tbl") else _children(block):
            if item.tag == W + "tbl":
                self.builder.table(_rows(item))
            else:
                self._paragraph(item)

    def _paragraph(self, block: Element) -> None:
        properties = block.find(W + "pPr")
        level, num = _resolve(
            self._styles, _val(properties.find(W + "pStyle")) if properties is not None else None
        )
        if properties is not None:
            outline = _val(properties.find(W + "outlineLvl"))
            if outline is not None and outline.isdigit() and int(outline) < 9:
                level = int(outline) + 1
            direct = properties.find(W + "numPr")
            if direct is not None:
                num = (_val(direct.find(W + "numId")) or "0", _val(direct.find(W + "ilvl")) or "0")
        text = _paragraph_text(block)
        if level is not None:
            self.builder.heading(level, text)
        elif num is not None and num[0] != "0":
            if num[0] != self._list:  # another list: a block of its own
                self.builder.end_list()
                self._list = num[0]
                self._counters.clear()
            ordered, start = self._numbering.get(num[0], {}).get(num[1], (False, 1))
            depth = int(num[1]) if num[1].isdigit() else 0
            self._counters[num] = self._counters.get(num, start - 1) + 1
            for deeper in [key for key in self._counters if key[1] > num[1]]:
                del self._counters[deeper]  # a shallower item restarts the deeper levels
            self.builder.list_item(inline(text), ordered=ordered, number=self._counters[num], depth=depth)
        else:
            self.builder.paragraph(text)


def read_docx(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    """The one document of a ``.docx`` file (see the module docs)."""
    with SafeZip(source, "DOCX") as archive:
        part = main_part(archive, "word/document.xml")
        body = _Body(_styles(archive), _numbering(archive))
        title = core_title(archive)
        with archive.open(part) as stream:
            # document > body > paragraphs and tables, streamed one at a time
            for block in iter_elements(stream, f"member {part!r} of the DOCX archive", depth=3):
                body.add(block)
    text, spans = body.builder.finish()
    title = title or body.builder.first_heading
    metadata = {"title": title} if title else {}
    yield 0, Document(id=source.file_id, text=text, source=source.file_id, metadata=metadata, spans=spans)


register_reader(read_docx, ".docx", whole_file=True)
