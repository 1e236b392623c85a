"""``.txt`` and ``.md``: one document per file.

Encoding: UTF-8 (a UTF-8 byte-order mark is dropped), or UTF-16/UTF-32 when the file starts
with their byte-order mark (unambiguous; the document's ``encoding`` metadata says so).
Anything else that is not valid UTF-8 is refused with the byte offset of the first bad
byte: guessing a legacy code page (cp1252, latin-2, Shift-JIS ...) would store wrong text
without a word. Convert such a file first, e.g. ``iconv -f cp1252 -t utf-8``.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from e5_integrations.ingest._readers._base import (
    Document,
    Fields,
    Item,
    RecordError,
    SourceFile,
    register_reader,
)

#: Byte-order marks read, longest first (UTF-32 LE starts like UTF-16 LE).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode_text(data: bytes) -> tuple[str, str | None]:
    """The text of ``data`` and the encoding to report (None for UTF-8).

    Raises:
        RecordError: not UTF-8 and no byte-order mark, or invalid in the marked encoding.
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(name)
            except UnicodeDecodeError as exc:
                raise RecordError(
                    f"starts with a {name} byte-order mark but is not valid {name} at byte "
                    f"{exc.start + len(bom)}; convert the file to UTF-8"
                ) from exc
            return text, None if name == "utf-8" else f"{name} (byte-order mark)"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"not valid UTF-8 at byte {exc.start} (byte {data[exc.start : exc.start + 1]!r}); text files "
            "are read as UTF-8, or UTF-16/32 with a byte-order mark; convert it, e.g. "
            "iconv -f cp1252 -t utf-8 FILE > FILE.utf8"
        ) from exc


def read_text(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    """The one document of a ``.txt``/``.md`` file (encodings: see the module docs)."""
    with source.open() as handle:
        data = handle.read()
    text, encoding = decode_text(data)
    metadata = {"encoding": encoding} if encoding else {}
    yield 0, Document(id=source.file_id, text=text, source=source.file_id, metadata=metadata)


register_reader(read_text, ".txt", ".md")
