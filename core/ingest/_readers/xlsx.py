"""``.xlsx``: one document per workbook, one span per sheet (``{"sheet": name}``).

Each sheet (hidden ones too, in workbook order) is a ``#`` heading with its name, then a
pipe table of its rows (the first row is the header); rows and columns with no value are
left out. A formula's cell holds its cached value (what Excel last computed; a workbook
never opened in Excel after a formula was written has none). Cells formatted as dates
become ISO dates. Sheets are streamed, never held as XML trees; a workbook past
:data:`MAX_CELLS` cells is refused (export it to CSV: each row is then one document).
Not read: charts, images, comments, pivot caches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

from e5_integrations.ingest._readers._base import (
    Document,
    Fields,
    Item,
    RecordError,
    SourceFile,
    register_reader,
)
from e5_integrations.ingest._readers._markdown import TextBuilder
from e5_integrations.ingest._readers._ooxml import R, S, core_title, main_part, relationships
from e5_integrations.ingest._readers._safe import SafeZip, stream_xml

#: Most non-empty cells read from one workbook.
MAX_CELLS = 2_000_000

_BUILTIN_DATES = set(range(14, 23)) | set(range(27, 37)) | set(range(45, 48)) | set(range(50, 59))
_QUOTED = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.')
_COLUMN = re.compile(r"[A-Z]+")
#: Element names as the streaming parser gives them (``namespace}local``).
_NS = S[1:]
_ROW, _CELL, _VALUE, _TEXT, _SI = _NS + "row", _NS + "c", _NS + "v", _NS + "t", _NS + "si"
_PHONETIC = (_NS + "rPh", _NS + "phoneticPr")


def _is_date_format(code: str) -> bool:
    return bool(re.search(r"[dmyhs]", _QUOTED.sub("", code), re.IGNORECASE))


def _date_styles(archive: SafeZip, part: str | None) -> set[int]:
    """Indexes of the cell formats (``s="N"``) that show dates."""
    if part is None or not archive.has(part):
        return set()
    root = archive.xml(part)
    custom = {
        int(fmt.get("numFmtId", "-1")): fmt.get("formatCode", "")
        for fmt in root.iter(S + "numFmt")
        if fmt.get("numFmtId", "").isdigit()
    }
    dates = set()
    xfs = root.find(S + "cellXfs")
    for index, xf in enumerate(xfs.findall(S + "xf") if xfs is not None else []):
        fmt_id = int(xf.get("numFmtId", "0")) if xf.get("numFmtId", "0").isdigit() else 0
        if fmt_id in _BUILTIN_DATES or (fmt_id in custom and _is_date_format(custom[fmt_id])):
            dates.add(index)
    return dates


def _shared_strings(archive: SafeZip, part: str | None) -> list[str]:
    if part is None or not archive.has(part):
        return []
    strings: list[str] = []
    parts: list[str] = []
    state = {"t": False, "skip": 0}

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == _SI:
            parts.clear()
        elif name in _PHONETIC:
            state["skip"] += 1
        elif name == _TEXT and not state["skip"]:
            state["t"] = True

    def end(name: str) -> None:
        if name == _SI:
            strings.append("".join(parts))
        elif name in _PHONETIC:
            state["skip"] -= 1
        elif name == _TEXT:
            state["t"] = False

    def text(data: str) -> None:
        if state["t"]:
            parts.append(data)

    with archive.open(part) as stream:
        stream_xml(stream, f"member {part!r} of the XLSX archive", start, end, text)
    return strings


def _column_index(ref: str) -> int:
    match = _COLUMN.match(ref)
    index = 0
    for letter in match.group(0) if match else "":
        index = index * 26 + ord(letter) - 64
    return index - 1


class _Sheet:
    """Streaming handler of one worksheet: its rows as {column: value}."""

    def __init__(self, strings: list[str], dates: set[int], epoch: datetime, budget: list[int]) -> None:
        self.rows: list[dict[int, str]] = []
        self._strings = strings
        self._dates = dates
        self._epoch = epoch
        self._budget = budget
        self._row: dict[int, str] = {}
        self._cell: dict[str, str] = {}
        self._column = -1
        self._value: list[str] = []
        self._collect = False

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if name in (_VALUE, _TEXT):
            self._collect = True
        elif name == _CELL:
            self._cell = attrs
            self._value = []
            ref = attrs.get("r")
            self._column = _column_index(ref) if ref else self._column + 1
        elif name == _ROW:
            self._row = {}
            self._column = -1

    def text(self, data: str) -> None:
        if self._collect:
            self._value.append(data)

    def end(self, name: str) -> None:
        if name in (_VALUE, _TEXT):
            self._collect = False
        elif name == _CELL:
            value = self._cell_value("".join(self._value))
            if value.strip():
                self._row[self._column] = value
                self._budget[0] -= 1
                if self._budget[0] < 0:
                    raise RecordError(
                        f"the workbook has more than {MAX_CELLS} non-empty cells; export its sheets "
                        "to CSV and ingest those (each row is then one document)"
                    )
        elif name == _ROW and self._row:
            self.rows.append(self._row)

    def _cell_value(self, raw: str) -> str:
        kind = self._cell.get("t", "n")
        if kind == "s":
            try:
                return self._strings[int(raw)]
            except (ValueError, IndexError):
                return raw
        if kind == "b":
            return {"1": "TRUE", "0": "FALSE"}.get(raw, raw)
        if kind == "n" and raw:
            style = self._cell.get("s", "0")
            if style.isdigit() and int(style) in self._dates:
                try:
                    moment = self._epoch + timedelta(days=float(raw))
                except (ValueError, OverflowError):
                    return raw
                return moment.date().isoformat() if float(raw).is_integer() else moment.isoformat(" ")
        return raw

    def table(self) -> list[list[str]]:
        columns = sorted({column for row in self.rows for column in row})
        return [[row.get(column, "") for column in columns] for row in self.rows]


def read_xlsx(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    """The one document of a ``.xlsx`` workbook, a span per sheet (see the module docs)."""
    builder = TextBuilder()
    with SafeZip(source, "XLSX") as archive:
        part = main_part(archive, "xl/workbook.xml")
        workbook = archive.xml(part)
        rels = relationships(archive, part)
        by_type = {kind.rsplit("/", 1)[-1]: target for kind, target in rels.values()}
        strings = _shared_strings(archive, by_type.get("sharedStrings"))
        dates = _date_styles(archive, by_type.get("styles"))
        properties = workbook.find(S + "workbookPr")
        date1904 = properties is not None and properties.get("date1904") in ("1", "true")
        epoch = datetime(1904, 1, 1) if date1904 else datetime(1899, 12, 30)
        title = core_title(archive)
        budget = [MAX_CELLS]
        for sheet in workbook.iter(S + "sheet"):
            name = sheet.get("name", "")
            target = rels.get(sheet.get(R + "id", ""))
            if target is None or not target[0].endswith("/worksheet"):
                continue  # a chart sheet or dialog sheet: no cells
            handler = _Sheet(strings, dates, epoch, budget)
            with archive.open(target[1]) as stream:
                where = f"sheet {name!r} (member {target[1]!r} of the XLSX archive)"
                stream_xml(stream, where, handler.start, handler.end, handler.text)
            builder.start_unit({"sheet": name})
            builder.heading(1, name)
            builder.table(handler.table())
    text, spans = builder.finish()
    metadata = {"title": title} if title else {}
    yield 0, Document(id=source.file_id, text=text, source=source.file_id, metadata=metadata, spans=spans)


register_reader(read_xlsx, ".xlsx", whole_file=True)
