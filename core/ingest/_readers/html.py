"""``.html``/``.htm``: one document per page, its visible text as Markdown-like text.

Headings ``h1``-``h6`` become ``#`` lines and open a section span (``{"section": "A > B"}``);
``ul``/``ol`` items become ``-``/``1.`` lines; tables become pipe tables; ``pre`` becomes a
fenced block; ``<title>`` is the ``title`` metadata (else the first heading). Not read:
``script``, ``style``, ``noscript``, ``template``, ``svg``, ``nav`` (and ``role="navigation"``),
elements marked ``hidden``, forms' controls, images (their ``alt`` text is not kept).

Parsed with a small tokenizer of our own that reads the page once, left to right (every
search for a tag's end, a comment's end or a ``</script`` starts where the last one ended, so
the time is linear in the page even on hostile input; the standard library's
``html.parser`` takes minutes on 200 KB of ``<a<a<a...``), and no tree and no recursion, so
deeply nested markup cannot exhaust the stack: past :data:`MAX_DEPTH` open elements, deeper
elements are flattened into their ancestor (their text is kept, their structure is not).

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
from html import unescape

from e5_integrations.ingest._readers._base import (
    Document,
    Fields,
    Item,
    RecordError,
    SourceFile,
    register_reader,
)
from e5_integrations.ingest._readers._markdown import TextBuilder, inline

__all__ = ["HtmlConverter", "MAX_DEPTH", "decode_html", "read_html"]

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


_TAG_NAME = re.compile(r"[a-zA-Z][^\s/>]*")
#: The rest of a start tag: attributes (quoted values may hold ">") up to its ">".
_TAG_REST = re.compile(r"""[^>"']*(?:(?:"[^"]*"|'[^']*')[^>"']*)*>""")
_ATTRIBUTE = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]*)))?""")
#: Elements whose content is text up to their end tag, never markup.
_RAW_TEXT = {"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"}


def _attributes(inside: str) -> list[tuple[str, str | None]]:
    """A start tag's attributes, names lower-cased, values unescaped (None: no value)."""
    found: list[tuple[str, str | None]] = []
    for match in _ATTRIBUTE.finditer(inside):
        values = [value for value in match.group(2, 3, 4) if value is not None]
        found.append((match.group(1).lower(), unescape(values[0]) if values else None))
    return found


def _tokenize(page: str, converter: HtmlConverter) -> None:
    """Call the converter's ``handle_*`` methods for ``page``'s tags and text, in one pass."""
    i, size = 0, len(page)
    lower: str | None = None
    while i < size:
        lt = page.find("<", i)
        if lt < 0:
            converter.handle_data(unescape(page[i:]))
            return
        if lt > i:
            converter.handle_data(unescape(page[i:lt]))
        if page.startswith("<!--", lt):
            end = page.find("-->", lt + 4)
            i = size if end < 0 else end + 3
            continue
        if page.startswith("<![CDATA[", lt):
            end = page.find("]]>", lt + 9)
            converter.handle_data(page[lt + 9 : size if end < 0 else end])
            i = size if end < 0 else end + 3
            continue
        following = page[lt + 1 : lt + 2]
        if following in ("!", "?"):  # doctype, processing instruction, bogus comment
            end = page.find(">", lt + 2)
            if page[lt + 2 : lt + 9].lower() == "doctype":
                subset = page.find("[", lt + 9, end if end >= 0 else size)
                if subset >= 0:  # an internal subset (never processed): it ends at "]>"
                    close = page.find("]", subset)
                    end = page.find(">", close) if close >= 0 else -1
            i = size if end < 0 else end + 1
            continue
        if following == "/":
            name = _TAG_NAME.match(page, lt + 2)
            end = page.find(">", lt + 2)
            if name is not None and end >= 0:
                converter.handle_endtag(name.group().lower())
            i = size if end < 0 else end + 1
            continue
        name = _TAG_NAME.match(page, lt + 1)
        if name is None:  # a lone "<" is text
            converter.handle_data("<")
            i = lt + 1
            continue
        rest = _TAG_REST.match(page, name.end())
        if rest is not None:
            end = rest.end()
        else:  # an unclosed quote: the tag ends at the next ">"
            gt = page.find(">", name.end())
            end = size if gt < 0 else gt + 1
        tag = name.group().lower()
        attributes = _attributes(page[name.end() : end - 1])
        converter.handle_starttag(tag, attributes)
        i = end
        if tag in _RAW_TEXT and not page[name.end() : end - 1].rstrip().endswith("/"):
            if lower is None:
                lower = page.lower()
            close = lower.find("</" + tag, i)
            close = size if close < 0 else close
            text = page[i:close]
            converter.handle_data(text if tag in ("script", "style") else unescape(text))
            i = close


class _List:
    def __init__(self, ordered: bool, start: int) -> None:
        self.ordered = ordered
        self.number = start - 1


class HtmlConverter:
    """Feeds HTML (one page, or an EPUB's chapters one after another) into a :class:`TextBuilder`."""

    def __init__(self, builder: TextBuilder | None = None) -> None:
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

    def feed(self, page: str) -> None:
        """Read one page (call :meth:`end_page` after it)."""
        _tokenize(page, self)

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


def read_html(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    """The one document of an HTML page (see the module docs)."""
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


register_reader(read_html, ".html", ".htm", whole_file=True)
