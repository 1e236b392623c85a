"""``.jsonl``: one document per line, a JSON object."""

from __future__ import annotations

import json
from collections.abc import Iterator

from e5_integrations.ingest._readers._base import Fields, Item, RecordError, SourceFile, register_reader


def read_jsonl(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    with source.open() as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except UnicodeDecodeError as exc:
                yield line_no, RecordError(f"not valid UTF-8 ({exc.reason})")
                continue
            except json.JSONDecodeError as exc:
                yield line_no, RecordError(f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(record, dict):
                yield (
                    line_no,
                    RecordError(f'a JSON {type(record).__name__}, expected an object like {{"text": "..."}}'),
                )
                continue
            yield line_no, record


register_reader(read_jsonl, ".jsonl")
