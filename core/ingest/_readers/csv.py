"""``.csv``: one document per row, with a header row."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator

from e5_integrations._errors import option
from e5_integrations.ingest._readers._base import Fields, Item, RecordError, SourceFile, register_reader


def _raise_csv_field_limit() -> None:
    """Let a CSV cell hold a whole document (the default limit is 128 KiB)."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _csv_error(exc: csv.Error) -> str:
    """What is wrong with a CSV row the ``csv`` module refused, and how to fix it."""
    if "unexpected end of data" in str(exc):
        return (
            "a quoted cell that starts in this row is never closed (the file ends inside it); "
            'close the quote, and write a quote inside a quoted cell as two ("")'
        )
    return (
        f'malformed CSV row ({exc}); quote cells that hold commas, and write a quote inside one as two ("")'
    )


def read_csv(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    _raise_csv_field_limit()
    with source.open() as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
        # strict: a quote left open raises at the end of the file instead of silently making
        # one cell of every later row, and text after a closing quote is an error too
        reader = csv.DictReader(handle, strict=True)
        try:
            header = reader.fieldnames or []
        except (csv.Error, UnicodeDecodeError) as exc:
            raise RecordError(f"unreadable CSV header ({exc})") from exc
        missing = [name for name in (fields.text, fields.id) if name is not None and name not in header]
        if missing:
            raise RecordError(
                f"no column {missing[0]!r} (columns: {', '.join(header) or 'none'}); "
                f"pass {option('text_field')} / {option('id_field')} with a column name"
            )
        while True:
            start = reader.line_num + 1  # the line a row begins on (a quoted cell may span lines)
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise RecordError(f"unreadable CSV at line {reader.line_num} ({exc})") from exc
            except csv.Error as exc:
                yield start, RecordError(_csv_error(exc))
                continue  # the reader starts again on the next line; at the end of the file it stops
            if None in row:
                yield (
                    reader.line_num,
                    RecordError(f"{len(header) + len(row[None])} cells, the header has {len(header)}"),
                )
                continue
            yield reader.line_num, row


register_reader(read_csv, ".csv")
