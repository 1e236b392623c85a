"""Read documents from files and directories, one at a time.

Supported files: ``.txt`` and ``.md`` (one document per file), ``.jsonl`` (one document per
line), ``.csv`` (one per row) and ``.parquet`` (one per row, read in row batches with
pyarrow). Everything is a generator: a corpus is never loaded whole, only the document
being handed out.

Document ids are deterministic, so re-running the same command addresses the same rows:

- ``.txt``/``.md``: the file's path relative to the directory given as a source, or the
  path as given for a file named directly (POSIX separators);
- ``.jsonl``/``.csv``/``.parquet``: the record's id field (``id`` by default, or
  ``id_field``) when present, else ``"{file id}:{line or row number}"``.

Directories are walked recursively in sorted order. Entries whose name starts with ``.``
(``.git``, the default ``.e5-store``) are not read. Files with another extension are
skipped and reported as ``unsupported``, never silently dropped.

A malformed record raises :class:`~e5_integrations.SourceError` naming the file and line
under ``on_error="fail"``; under ``"skip"`` it is reported to ``on_problem`` and reading goes
on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from e5_integrations._errors import ConfigurationError, SourceError, option

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "Document",
    "DuplicateIds",
    "OnError",
    "SourceFile",
    "SourceProblem",
    "iter_documents",
    "iter_source_files",
    "read_source_file",
]

OnError = Literal["fail", "skip"]

#: Extensions read, lower case.
SUPPORTED_EXTENSIONS = (".txt", ".md", ".jsonl", ".csv", ".parquet")
#: Rows per pyarrow record batch when streaming a parquet file.
PARQUET_BATCH_ROWS = 1024

#: Problem kinds (the ``reason`` prefix of :class:`SourceProblem`).
UNSUPPORTED = "unsupported file type"
INVALID = "invalid record"
EMPTY = "empty text"


@dataclass(frozen=True)
class Document:
    """One document read from a source.

    Attributes:
        id: deterministic document id (see the module docs).
        text: the full text.
        source: the file it came from (the file id: relative to the source directory).
        metadata: the record's other fields (JSON values), empty for text files.
    """

    id: str
    text: str
    source: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceFile:
    """A file to read and the id it is known by."""

    path: Path
    file_id: str


@dataclass(frozen=True)
class SourceProblem:
    """Something not loaded, and why.

    Attributes:
        kind: ``"unsupported file type"``, ``"invalid record"`` or ``"empty text"``.
        location: ``path`` or ``path:line``.
        detail: what was wrong.
    """

    kind: str
    location: str
    detail: str

    def __str__(self) -> str:
        return f"{self.location}: {self.kind}: {self.detail}"


ProblemCallback = Callable[[SourceProblem], None]


def _posix(path: Path) -> str:
    return Path(os.path.normpath(path)).as_posix()


def _walk(directory: Path) -> Iterator[Path]:
    """Files under ``directory``, recursively, sorted by name, skipping dot-entries."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as exc:
        raise SourceError(f"cannot list directory {directory}: {exc.strerror or exc}") from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir():
            yield from _walk(path)
        elif entry.is_file():
            yield path


def iter_source_files(sources: Iterable[str | os.PathLike[str]]) -> Iterator[SourceFile]:
    """Expand files and directories into the files to read, in a deterministic order.

    Unsupported extensions are included; :func:`iter_documents` reports them.

    Raises:
        SourceError: a source does not exist.
    """
    for source in sources:
        root = Path(source)
        if root.is_dir():
            for path in _walk(root):
                yield SourceFile(path, path.relative_to(root).as_posix())
        elif root.is_file():
            yield SourceFile(root, _posix(root))
        else:
            raise SourceError(
                f"source {str(source)!r} does not exist or is not a file or directory; "
                f"pass files or directories of {', '.join(SUPPORTED_EXTENSIONS)}"
            )


def _jsonable(value: Any) -> Any:
    """Coerce a metadata value read from CSV/parquet into a JSON value."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return str(value)


@dataclass(frozen=True)
class _Fields:
    text: str
    id: str | None

    @property
    def id_name(self) -> str:
        return self.id or "id"


class _RecordError(Exception):
    """A record is invalid; the reader turns it into a SourceError or a problem."""


#: What a reader yields per position: a raw record, a ready document, or the record's error.
_Item = Mapping[str, Any] | Document | _RecordError


def _record_to_document(
    record: Mapping[str, Any], fields: _Fields, source: SourceFile, position: int
) -> Document:
    """Build a document from one JSONL/CSV/parquet record (``position`` is 1-based)."""
    if fields.text not in record:
        present = ", ".join(sorted(map(str, record))[:10]) or "none"
        raise _RecordError(
            f"no {fields.text!r} field (fields present: {present}); "
            f"pass {option('text_field', 'NAME')} to use another field"
        )
    text = record[fields.text]
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise _RecordError(f"field {fields.text!r} is {type(text).__name__}, expected a string")
    raw_id = record.get(fields.id_name)
    if raw_id is None or raw_id == "":
        if fields.id is not None:
            raise _RecordError(f"no value for the id field {fields.id!r} (given with {option('id_field')})")
        doc_id = f"{source.file_id}:{position}"
    elif isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise _RecordError(f"id field {fields.id_name!r} is {type(raw_id).__name__}, expected a string or integer")
    else:
        doc_id = str(raw_id)
    metadata = {
        str(key): _jsonable(value) for key, value in record.items() if key not in (fields.text, fields.id_name)
    }
    return Document(id=doc_id, text=text, source=source.file_id, metadata=metadata)


def _read_text(source: SourceFile, fields: _Fields) -> Iterator[tuple[int, _Item]]:
    try:
        text = source.path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _RecordError(f"not valid UTF-8 at byte {exc.start}; convert the file to UTF-8") from exc
    yield 0, Document(id=source.file_id, text=text, source=source.file_id)


def _read_jsonl(source: SourceFile, fields: _Fields) -> Iterator[tuple[int, _Item]]:
    with source.path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except UnicodeDecodeError as exc:
                yield line_no, _RecordError(f"not valid UTF-8 ({exc.reason})")
                continue
            except json.JSONDecodeError as exc:
                yield line_no, _RecordError(f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(record, dict):
                yield line_no, _RecordError(
                    f"a JSON {type(record).__name__}, expected an object like {{\"text\": \"...\"}}"
                )
                continue
            yield line_no, record


def _raise_csv_field_limit() -> None:
    """Let a CSV cell hold a whole document (the default limit is 128 KiB)."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _read_csv(source: SourceFile, fields: _Fields) -> Iterator[tuple[int, _Item]]:
    _raise_csv_field_limit()
    with source.path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _RecordError(f"unreadable CSV header ({exc})") from exc
        missing = [name for name in (fields.text, fields.id) if name is not None and name not in header]
        if missing:
            raise _RecordError(
                f"no column {missing[0]!r} (columns: {', '.join(header) or 'none'}); "
                f"pass {option('text_field')} / {option('id_field')} with a column name"
            )
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise _RecordError(f"unreadable CSV at line {reader.line_num} ({exc})") from exc
            if None in row:
                yield reader.line_num, _RecordError(
                    f"{len(header) + len(row[None])} cells, the header has {len(header)}"
                )
                continue
            yield reader.line_num, row


def _read_parquet(source: SourceFile, fields: _Fields) -> Iterator[tuple[int, _Item]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(
            "reading .parquet sources needs pyarrow; install it with: pip install 'e5-integrations[parquet]'"
        ) from exc
    try:
        parquet = pq.ParquetFile(source.path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for broken files
        raise _RecordError(f"not a readable parquet file ({exc})") from exc
    with parquet:
        names = parquet.schema_arrow.names
        missing = [name for name in (fields.text, fields.id) if name is not None and name not in names]
        if missing:
            raise _RecordError(
                f"no column {missing[0]!r} (columns: {', '.join(names)}); "
                f"pass {option('text_field')} / {option('id_field')}"
            )
        row_no = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                row_no += 1
                yield row_no, row


_READERS: dict[str, Callable[[SourceFile, _Fields], Iterator[tuple[int, _Item]]]] = {
    ".txt": _read_text,
    ".md": _read_text,
    ".jsonl": _read_jsonl,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}


def _location(source: SourceFile, position: int) -> str:
    """``path:line`` for line-based files, ``path (row N)`` for parquet, ``path`` for text."""
    if not position:
        return str(source.path)
    if source.path.suffix.lower() == ".parquet":
        return f"{source.path} (row {position})"
    return f"{source.path}:{position}"


class _Reporter:
    """Apply the ``on_error`` policy to problems."""

    def __init__(self, on_error: OnError, on_problem: ProblemCallback | None) -> None:
        self.on_error = on_error
        self.on_problem = on_problem

    def problem(self, kind: str, location: str, detail: str) -> None:
        problem = SourceProblem(kind, location, detail)
        if kind == INVALID and self.on_error == "fail":
            raise SourceError(
                f"{location}: {detail}. Fix the input, or pass {option('on_error', 'skip')} to load the rest"
            )
        if self.on_problem is not None:
            self.on_problem(problem)


def _read_file(source: SourceFile, fields: _Fields, reporter: _Reporter) -> Iterator[Document]:
    suffix = source.path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        reporter.problem(UNSUPPORTED, str(source.path), f"extension {suffix or '(none)'!r} is not one of "
                         f"{', '.join(SUPPORTED_EXTENSIONS)}")
        return
    try:
        for position, item in reader(source, fields):
            if isinstance(item, _RecordError):
                reporter.problem(INVALID, _location(source, position), str(item))
                continue
            if isinstance(item, Document):
                document = item
            else:
                try:
                    document = _record_to_document(item, fields, source, position)
                except _RecordError as exc:
                    reporter.problem(INVALID, _location(source, position), str(exc))
                    continue
            if not document.text.strip():
                reporter.problem(EMPTY, _location(source, position), f"document {document.id!r} has no text")
                continue
            yield document
    except _RecordError as exc:
        reporter.problem(INVALID, str(source.path), str(exc))
    except OSError as exc:
        reporter.problem(INVALID, str(source.path), f"cannot read: {exc.strerror or exc}")


def _fields(text_field: str, id_field: str | None, on_error: OnError) -> _Fields:
    if on_error not in ("fail", "skip"):
        raise ConfigurationError(f"on_error={on_error!r}; expected 'fail' or 'skip'")
    if not text_field:
        raise ConfigurationError(
            f"{option('text_field')} is empty; pass the name of the field holding the text"
        )
    return _Fields(text=text_field, id=id_field or None)


def read_source_file(
    source: SourceFile,
    *,
    text_field: str = "text",
    id_field: str | None = None,
    on_error: OnError = "fail",
    on_problem: ProblemCallback | None = None,
) -> Iterator[Document]:
    """The documents of one file, without the cross-file duplicate-id check.

    Engines that read files in parallel (Ray) use this; :func:`iter_documents` adds the
    duplicate check with :class:`DuplicateIds`. Arguments as for :func:`iter_documents`.
    """
    reporter = _Reporter(on_error, on_problem)
    yield from _read_file(source, _fields(text_field, id_field, on_error), reporter)


class DuplicateIds:
    """Remembers document ids; a second record with a seen id is an invalid record.

    Two records with one id would silently overwrite each other in the store. Ids are kept
    as 16-byte digests to bound memory.
    """

    def __init__(self, on_error: OnError, on_problem: ProblemCallback | None) -> None:
        self._reporter = _Reporter(on_error, on_problem)
        self._seen: set[bytes] = set()

    @staticmethod
    def _digest(document_id: str) -> bytes:
        return hashlib.blake2b(document_id.encode("utf-8"), digest_size=16).digest()

    def __contains__(self, document_id: object) -> bool:
        """Whether a document with this id has been seen."""
        return isinstance(document_id, str) and self._digest(document_id) in self._seen

    def is_duplicate(self, document: Document, source: SourceFile) -> bool:
        """True (and the problem reported, or raised under ``"fail"``) when the id was seen."""
        digest = self._digest(document.id)
        if digest in self._seen:
            self._reporter.problem(
                INVALID, str(source.path),
                f"duplicate document id {document.id!r} (an earlier record already has it; "
                f"ids must be unique across all sources, see {option('id_field')})",
            )
            return True
        self._seen.add(digest)
        return False


def iter_documents(
    sources: Iterable[str | os.PathLike[str]],
    *,
    text_field: str = "text",
    id_field: str | None = None,
    on_error: OnError = "fail",
    on_problem: ProblemCallback | None = None,
    ids: DuplicateIds | None = None,
) -> Iterator[Document]:
    """Stream the documents of ``sources`` (files or directories), in a deterministic order.

    Args:
        sources: files or directories (walked recursively, sorted).
        text_field: the field/column holding the text in JSONL, CSV and parquet.
        id_field: the field/column holding the document id; default ``"id"`` when present,
            else a line/row-number id. When given explicitly it must be present.
        on_error: ``"fail"`` raises on the first invalid record; ``"skip"`` reports it to
            ``on_problem`` and goes on.
        on_problem: called with every :class:`SourceProblem` not raised: unsupported
            files, empty texts, and (with ``"skip"``) invalid records.
        ids: the registry of seen document ids to fill (to ask afterwards which ids the
            sources hold); a fresh one by default.

    Raises:
        SourceError: an invalid record (with ``on_error="fail"``) or a missing source;
            the message names the file and the line.
    """
    _fields(text_field, id_field, on_error)
    duplicates = ids if ids is not None else DuplicateIds(on_error, on_problem)
    for source in iter_source_files(sources):
        for document in read_source_file(
            source, text_field=text_field, id_field=id_field, on_error=on_error, on_problem=on_problem
        ):
            if not duplicates.is_duplicate(document, source):
                yield document
