"""``.html``/``.htm``: one document per page, its visible text as Markdown-like text.

Headings ``h1``-``h6`` become ``#`` lines and open a section span (``{"section": "A > B"}``);
``ul``/``ol`` items become ``-``/``1.`` lines; tables become pipe tables; ``pre`` becomes a
fenced block; ``<title>`` is the ``title`` metadata (else the first heading). Not read:
``script``, ``style``, ``noscript``, ``template``, ``svg``, ``nav`` (and ``role="navigation"``),
elements marked ``hidden``, forms' controls, images (their ``alt`` text is not kept).

Parsed with the standard library's event parser (no tree, no recursion), so deeply nested
markup cannot exhaust the stack: past :data:`MAX_DEPTH` open elements, deeper elements
are flattened into their ancestor (their text is kept, their structure is not).

Encoding: a byte-order mark, else a ``<meta charset>`` (or ``http-equiv``) or XML
declaration in the first 4 KiB, else UTF-8; a page that declares nothing and is not valid
UTF-8 is read as windows-1252 (what browsers assume), and the document says so in its
``encoding`` metadata. A declared charset that does not decode is refused with the byte
offset.

:class:`HtmlConverter` is shared with the ``.epub`` reader (one converter for a whole book).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from html.parser import HTMLParser

from e5_integrations.ingest._readers._base import (
    Document,
    Fields,
    Item,
    RecordError,
    SourceFile,
    register_reader,
)
from e5_integrations.ingest._readers._markdown import TextBuilder, inline

__all__ = ["MAX_DEPTH", "HtmlConverter", "decode_html", "read_html"]

#: Most open elements tracked; deeper ones are flattened into their ancestor.
MAX_DEPTH = 256

_SKIP = {"script", "style", "noscript", "template", "svg", "nav", "select", "button", "iframe", "object"}
_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr",
}  # fmt: skip
_BLOCKS = {
    "address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "header", "main", "p", "section", "summary", "caption",
    "body", "html", "center", "hgroup",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
#: Stands for a ``<br>`` in collected text until the block is written (then a line break).
_BR = "\x0b"
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""")


def decode_html(data: bytes) -> tuple[str, str | None]:
    """The page's text and the encoding to report (None when it is declared or UTF-8)."""
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return _decode(data[len(bom) :], name, "its byte-order mark"), None
    head = data[:4096]
    match = _XML_ENCODING.match(head.lstrip()) or _CHARSET.search(head)
    if match:
        declared = match.group(1).decode("ascii").lower()
        try:
            name = codecs.lookup(declared).name
        except LookupError:
            raise RecordError(
                f"the page declares the charset {declared!r}, which Python does not know; "
                "convert the file to UTF-8 and fix its <meta charset>"
            ) from None
        if name in ("latin-1", "iso8859-1", "ascii"):
            name = "cp1252"  # what browsers read these labels as
        return _decode(data, name, f"its declared charset {declared!r}"), None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return data.decode(
            "cp1252", errors="replace"
        ), "windows-1252 (assumed: no charset declared, not UTF-8)"


def _decode(data: bytes, name: str, why: str) -> str:
    try:
        return data.decode(name)
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"not valid {name} ({why}) at byte {exc.start}; convert the file to UTF-8 "
            'and declare <meta charset="utf-8">'
        ) from exc


class _List:
    def __init__(self, ordered: bool, start: int) -> None:
        self.ordered = ordered
        self.number = start - 1


class HtmlConverter(HTMLParser):
    """Feeds HTML (one page, or an EPUB's chapters one after another) into a :class:`TextBuilder`."""

    def __init__(self, builder: TextBuilder | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = builder or TextBuilder()
        self.title: str | None = None
        self._stack: list[str] = []  # open elements, at most MAX_DEPTH
        self._skip = 0  # depth inside skipped elements
        self._skip_tag: list[str] = []
        self._text: list[str] = []  # the paragraph, heading or list item being collected
        self._heading: int | None = None
        self._lists: list[_List] = []
        self._item_open = False
        self._pre = 0
        self._tables = 0  # open tables; only the outermost keeps its structure
        self._rows: list[list[str]] = []  # the outermost table's rows
        self._cell: list[str] | None = None
        self._in_title = False
        self._title_text: list[str] = []

    # -- text flow ------------------------------------------------------------------------
    def _flush(self) -> None:
        """Write the text collected so far as the block it belongs to."""
        if not self._text:
            return
        raw = "".join(self._text)
        self._text = []
        if self._tables:
            return
        if self._pre:
            return
        text = "\n".join(line for line in map(inline, raw.split(_BR)) if line)
        if not text:
            return
        if self._heading is not None:
            self.builder.heading(self._heading, text)
        elif self._lists and self._item_open:
            current = self._lists[-1]
            self.builder.list_item(
                text, ordered=current.ordered, number=current.number, depth=len(self._lists) - 1
            )
            self._item_open = False
        elif self._lists:  # more text of the same item, after a nested block
            self.builder.list_item(text, depth=len(self._lists) - 1, continued=True)
        else:
            self.builder.paragraph(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip:
            if tag not in _VOID:
                self._skip += 1
            return
        attributes = dict(attrs)
        if tag in _SKIP or attributes.get("role") == "navigation" or "hidden" in attributes:
            if tag not in _VOID:
                self._skip = 1
                self._skip_tag.append(tag)
            return
        if tag == "title":
            self._in_title = True
            return
        if tag not in _VOID:
            if len(self._stack) >= MAX_DEPTH:
                return  # flattened: its text goes to the open ancestor
            self._stack.append(tag)
        self._open(tag, attributes)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            self.handle_starttag(tag, attrs)
        else:
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def _open(self, tag: str, attributes: dict[str, str | None]) -> None:
        if tag == "br":
            if self._tables:
                self._cell_text(" ")
            else:
                self._text.append("\n" if self._pre else _BR)
        elif tag == "hr":
            self._flush()
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
        elif tag in ("ul", "ol", "menu"):
            self._flush()
            start = attributes.get("start") or "1"
            self._lists.append(_List(tag == "ol", int(start) if start.isdigit() else 1))
        elif tag == "li":
            self._flush()
            if self._lists:
                self._lists[-1].number += 1
                self._item_open = True
        elif tag == "pre":
            self._flush()
            self._pre += 1
        elif tag == "table":
            if not self._tables:
                self._flush()
                self._rows = []
            else:
                self._cell_text(" ")
            self._tables += 1
        elif tag == "tr" and self._tables == 1:
            self._close_cell()
            self._rows.append([])
        elif tag in ("td", "th") and self._tables == 1:
            self._close_cell()
            self._cell = []
        elif tag in ("tr", "td", "th", "caption") and self._tables:
            self._cell_text(" ")
        elif tag in _BLOCKS and not self._tables:
            self._flush()

    def _cell_text(self, data: str) -> None:
        """Text inside the outermost table: into the open cell (a cell opens for stray text)."""
        if self._cell is None:
            if not data.strip():
                return
            self._cell = []
        self._cell.append(data)

    def _close_cell(self) -> None:
        if self._cell is not None:
            if not self._rows:
                self._rows.append([])
            self._rows[-1].append(inline("".join(self._cell)))
            self._cell = None

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag not in _VOID:
                self._skip -= 1
            return
        if tag == "title":
            self._in_title = False
            return
        if tag in _VOID or tag not in self._stack[-64:]:
            return  # a stray end tag, or one of a flattened element
        while self._stack:
            if self._stack.pop() == tag:
                break
        self._close(tag)

    def _close(self, tag: str) -> None:
        if tag in _HEADINGS:
            self._flush()
            self._heading = None
        elif tag in ("ul", "ol", "menu"):
            self._flush()
            if self._lists:
                self._lists.pop()
            if not self._lists:
                self.builder.end_list()
        elif tag == "li":
            self._flush()
            self._item_open = False
        elif tag == "pre":
            if self._pre == 1 and not self._tables:
                text = "".join(self._text)
                self._text = []
                self.builder.code(text.strip("\n"))
            self._pre = max(0, self._pre - 1)
        elif tag in ("td", "th") and self._tables == 1:
            self._close_cell()
        elif tag == "table" and self._tables:
            self._tables -= 1
            if not self._tables:
                self._close_cell()
                self.builder.table(self._rows)
                self._rows = []
        elif tag in _BLOCKS and not self._tables:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_text.append(data)
            return
        if self._skip:
            return
        if self._tables:
            self._cell_text(data)
        else:
            self._text.append(data)

    def end_page(self) -> None:
        """Close what the page left open (a page may end without closing its tags)."""
        self.close()
        while self._tables:
            self._close("table")
        if self._pre:
            self._pre = 1
            self._close("pre")
        self._heading = self._heading if self._text else None
        self._flush()
        self._heading = None
        self._lists.clear()
        self._item_open = False
        self._stack.clear()
        self._skip = 0
        self.builder.end_list()
        if self.title is None:
            title = inline("".join(self._title_text))
            self.title = title or None
        self._title_text = []
        self.reset()


def read_html(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    with source.open() as handle:
        data = handle.read()
    if not data:
        raise RecordError("the file is empty (0 bytes); expected an HTML page")
    page, assumed = decode_html(data)
    converter = HtmlConverter()
    converter.feed(page)
    converter.end_page()
    text, spans = converter.builder.finish()
    metadata: dict[str, str] = {}
    title = converter.title or converter.builder.first_heading
    if title:
        metadata["title"] = title
    if assumed:
        metadata["encoding"] = assumed
    yield 0, Document(id=source.file_id, text=text, source=source.file_id, metadata=metadata, spans=spans)


register_reader(read_html, ".html", ".htm")
