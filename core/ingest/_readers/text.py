"""``.txt`` and ``.md``: one document per file, UTF-8."""

from __future__ import annotations

from collections.abc import Iterator

from e5_integrations.ingest._readers._base import (
    Document,
    Fields,
    Item,
    RecordError,
    SourceFile,
    register_reader,
)


def read_text(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    with source.open() as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not valid UTF-8 at byte {exc.start}; convert the file to UTF-8") from exc
    yield 0, Document(id=source.file_id, text=text, source=source.file_id)


register_reader(read_text, ".txt", ".md")
