"""Read documents from files and directories, one at a time.

Supported files: ``.txt`` and ``.md`` (one document per file), ``.jsonl`` (one document per
line), ``.csv`` (one per row), ``.parquet`` (one per row, read in row batches with
pyarrow); the whole-file formats of the ``[documents]`` extra (``.pdf``, ``.docx``, ``.pptx``,
``.xlsx``, ``.html``/``.htm``, ``.epub``, ``.ipynb``: one document per file, with spans, parsed
in a worker process of a :class:`~e5_integrations.ingest._parsing.ParsePool` when one is
given); and ``.gz``/``.zst`` compressed ``.jsonl``, ``.csv``, ``.txt`` and ``.md``. Each
format is a reader module in ``_readers``. Everything is a generator: a corpus is never
loaded whole, only the document being handed out.

Document ids are deterministic, so re-running the same command addresses the same rows,
and they depend only on the file, never on how it was reached:

- a file's *file id* is its real path (``os.path.realpath``: absolute, symlinks resolved,
  POSIX separators), so ``docs/a.txt``, ``/abs/docs/a.txt``, ``docs`` and a symlink to
  ``docs`` all name the same document from any working directory, and two different files
  never share an id. With ``id_root`` the file id is the real path relative to the real
  path of ``id_root`` (portable across machines and mount points); a file outside it is a
  :class:`~e5_integrations.SourceError`.
- ``.txt``/``.md`` and whole-file formats (``.pdf``, ``.docx``...): the document id is the file id;
- ``.jsonl``/``.csv``/``.parquet``: the record's id field (``id`` by default, or
  ``id_field``) when present, else ``"{file id}:{line or row number}"``.

A record's other fields become the chunks' metadata, unchanged. A field named like the
pipeline's bookkeeping (``source``, ``document_id``, ``chunk_index``, or ``e5_*``) would be
overwritten, so such a record is invalid.

Directories are walked recursively in sorted order, following symlinks; a file reached
twice (a symlink, a directory given twice) is read once, and a directory symlink loop is
a :class:`~e5_integrations.SourceError`. Entries whose name starts with ``.`` (``.git``,
the default ``.e5-store``) are not read. Files with another extension are skipped and
reported as ``unsupported``, never silently dropped.

A malformed record, and a file that cannot be parsed (encrypted, corrupt, a parser that
crashed or ran past ``--parse-timeout``), raises :class:`~e5_integrations.SourceError` naming
the file, line or page under ``on_error="fail"``; under ``"skip"`` it is reported to
``on_problem`` and reading goes on. A part of a file left out (a PDF page without a text
layer) is always reported, never fatal. A whole-file document without text is an unreadable
file, never an empty document: its stored chunks are kept.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from e5_integrations._errors import ConfigurationError, SourceError, option
from e5_integrations.ingest._parsing import Parsed, ParsePool, parse_file, parse_in_order
from e5_integrations.ingest._readers import (
    READERS,
    Document,
    Fields,
    Item,
    RecordError,
    SourceFile,
    Span,
    Unread,
    is_whole_file,
    reader_for,
)
from e5_integrations.ingest._records import (
    DEFAULT_RETRY_SECONDS,
    RESERVED_METADATA_KEYS,
    RESERVED_METADATA_PREFIX,
    reserved_metadata_key,
)
from e5_integrations.ingest._remote import (
    RemoteSourceFile,
    is_remote,
    iter_remote_files,
    matches_filters,
    read_ahead,
)

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "Document",
    "DocumentCheck",
    "DuplicateIds",
    "OnError",
    "RemoteSourceFile",
    "SourceFile",
    "SourceProblem",
    "Span",
    "iter_documents",
    "listed_document",
    "iter_source_files",
    "read_source_file",
]

OnError = Literal["fail", "skip"]

#: Extensions read, lower case (the reader seam's registry, ``_readers``).
SUPPORTED_EXTENSIONS = tuple(READERS)

#: Problem kinds (the ``reason`` prefix of :class:`SourceProblem`).
UNSUPPORTED = "unsupported file type"
INVALID = "invalid record"
EMPTY = "empty text"
#: A whole file that could not be parsed (encrypted, corrupt, no text, parser crash or timeout).
UNREADABLE = "unreadable file"
#: A part of a file left out of its document (a PDF page without a text layer).
UNREAD = "unread part"
#: How a position within a file is named, by extension (default: ``path:line``).
_POSITION_NAMES = {".parquet": "row", ".pdf": "page"}


@dataclass(frozen=True)
class SourceProblem:
    """Something not loaded, and why.

    Attributes:
        kind: ``"unsupported file type"``, ``"invalid record"``, ``"empty text"``,
            ``"unreadable file"`` or ``"unread part"``.
        location: ``path`` or ``path:line``.
        detail: what was wrong.
    """

    kind: str
    location: str
    detail: str

    def __str__(self) -> str:
        return f"{self.location}: {self.kind}: {self.detail}"


ProblemCallback = Callable[[SourceProblem], None]
#: A store's check of a document (``Sink.check_document``): why it would refuse it, or None.
DocumentCheck = Callable[[Document], str | None]


def _walk(directory: Path, ancestors: frozenset[str]) -> Iterator[Path]:
    """Files under ``directory``, recursively, sorted by name, skipping dot-entries.

    ``ancestors`` holds the real paths of the directories being walked, so a symlink back
    to one of them is reported instead of followed forever.
    """
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as exc:
        raise SourceError(f"cannot list directory {directory}: {exc.strerror or exc}") from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir():
            real = os.path.realpath(path)
            if real in ancestors:
                raise SourceError(
                    f"directory symlink loop: {path} points to {real}, which contains it; "
                    "remove the link, or give the directories it should reach as sources"
                )
            yield from _walk(path, ancestors | {real})
        elif entry.is_file():
            yield path


def _resolve_id_root(id_root: str | os.PathLike[str] | None) -> Path | None:
    if id_root is None:
        return None
    if not os.path.isdir(id_root):
        raise ConfigurationError(
            f"--id-root {str(id_root)!r} is not a directory; pass the directory that ids should be "
            "relative to (id_root= in Python), or leave it out for ids from absolute real paths"
        )
    return Path(os.path.realpath(id_root))


def _file_id(path: Path, id_root: Path | None) -> str:
    """The file id of ``path`` (see the module docs)."""
    real = Path(os.path.realpath(path))
    if id_root is None:
        return real.as_posix()
    try:
        return real.relative_to(id_root).as_posix()
    except ValueError:
        raise SourceError(
            f"{path} (real path {real}) is outside --id-root {id_root}; pass an --id-root "
            "(id_root=) that contains every source, or leave it out for ids from absolute real paths"
        ) from None


def iter_source_files(
    sources: Iterable[str | os.PathLike[str]],
    *,
    id_root: str | os.PathLike[str] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    storage_options: Mapping[str, Any] | None = None,
    retry_seconds: float | None = None,
) -> Iterator[SourceFile]:
    """Expand files, directories and URLs into the files to read, in a deterministic order.

    Each file comes once, however many sources reach it. Unsupported extensions are
    included; :func:`iter_documents` reports them. A URL (``s3://bucket/prefix/``,
    ``gs://``, ``az://``, ``https://``) gives :class:`RemoteSourceFile` objects, listed lazily
    page by page (see ``_remote``).

    Args:
        sources: files, directories or URLs.
        id_root: make local file ids relative to this directory (see the module docs);
            remote ids are always canonical URLs.
        include: glob patterns; when given, only files matching one are read. A pattern
            with a ``/`` matches the path under the source given, one without the file name.
        exclude: glob patterns of files not to read (after ``include``).
        storage_options: options of the remote filesystem (credentials, ``endpoint_url``).
        retry_seconds: how long a transient remote failure is retried.

    Raises:
        SourceError: a source does not exist, a directory symlink loops, a file is
            outside ``id_root``, or a bucket cannot be listed.
        ConfigurationError: ``id_root`` is not a directory, or a URL has an unknown scheme.
    """
    root_dir = _resolve_id_root(id_root)
    seen: set[bytes] = set()  # 16-byte digests of file ids: bounded memory for a million objects

    def first_time(file_id: str) -> bool:
        digest = hashlib.blake2b(file_id.encode("utf-8"), digest_size=16).digest()
        if digest in seen:
            return False
        seen.add(digest)
        return True

    for source in sources:
        if is_remote(source):
            for remote in iter_remote_files(
                str(source),
                storage_options,
                include=include,
                exclude=exclude,
                retry_seconds=DEFAULT_RETRY_SECONDS if retry_seconds is None else retry_seconds,
            ):
                if first_time(remote.file_id):
                    yield remote
            continue
        root = Path(source)
        if root.is_dir():
            paths: Iterable[Path] = _walk(root, frozenset({os.path.realpath(root)}))
        elif root.is_file():
            paths = [root]
        else:
            raise SourceError(
                f"source {str(source)!r} does not exist or is not a file or directory; "
                f"pass files, directories or URLs (s3://, gs://, az://, https://) of {', '.join(SUPPORTED_EXTENSIONS)}"
            )
        for path in paths:
            relative = path.relative_to(root).as_posix() if root.is_dir() else path.name
            if (include or exclude) and not matches_filters(relative, include, exclude):
                continue
            file_id = _file_id(path, root_dir)
            if first_time(file_id):
                yield SourceFile(path, file_id)


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


def record_document_id(record: Mapping[str, Any], fields: Fields, source: SourceFile, position: int) -> str:
    """The document id of one JSONL/CSV/parquet record: its id field, else ``file id:position``.

    Raises:
        RecordError: the id field was given and is empty, or holds neither a string nor an int.
    """
    raw_id = record.get(fields.id_name)
    if raw_id is None or raw_id == "":
        if fields.id is not None:
            raise RecordError(f"no value for the id field {fields.id!r} (given with {option('id_field')})")
        return f"{source.file_id}:{position}"
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise RecordError(
            f"id field {fields.id_name!r} is {type(raw_id).__name__}, expected a string or integer"
        )
    return str(raw_id)


def _record_to_document(
    record: Mapping[str, Any], fields: Fields, source: SourceFile, position: int
) -> Document:
    """Build a document from one JSONL/CSV/parquet record (``position`` is 1-based)."""
    if fields.text not in record:
        present = ", ".join(sorted(map(str, record))[:10]) or "none"
        raise RecordError(
            f"no {fields.text!r} field (fields present: {present}); "
            f"pass {option('text_field', 'NAME')} to use another field"
        )
    text = record[fields.text]
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise RecordError(f"field {fields.text!r} is {type(text).__name__}, expected a string")
    doc_id = record_document_id(record, fields, source, position)
    metadata = {
        str(key): _jsonable(value)
        for key, value in record.items()
        if key not in (fields.text, fields.id_name)
    }
    for key in metadata:
        if reserved_metadata_key(key):
            raise RecordError(
                f"field {key!r} is reserved: every stored chunk carries {sorted(RESERVED_METADATA_KEYS)} and "
                f"'{RESERVED_METADATA_PREFIX}*' keys of its own, which would replace yours; rename the field "
                "(or read it with --text-field / --id-field)"
            )
    return Document(id=doc_id, text=text, source=source.file_id, metadata=metadata)


def _location(source: SourceFile, position: int) -> str:
    """``path:line`` for line-based files, ``path (row N)`` for parquet, ``path`` for text."""
    if not position:
        return source.location
    unit = _POSITION_NAMES.get(source.suffix)
    if unit is not None:
        return f"{source.location} ({unit} {position})"
    return f"{source.location}:{position}"


class _Reporter:
    """Apply the ``on_error`` policy to problems."""

    def __init__(self, on_error: OnError, on_problem: ProblemCallback | None) -> None:
        self.on_error = on_error
        self.on_problem = on_problem

    def problem(self, kind: str, location: str, detail: str) -> None:
        problem = SourceProblem(kind, location, detail)
        if kind in (INVALID, UNREADABLE) and self.on_error == "fail":
            raise SourceError(
                f"{location}: {detail.rstrip('.')}. Fix the input, or pass {option('on_error', 'skip')} to load the rest"
            )
        if self.on_problem is not None:
            self.on_problem(problem)


def listed_document(source: SourceFile) -> Document:
    """The stand-in of a whole-file document in a check pass that does not parse it: its id
    (the file id) and source, no text yet."""
    return Document(id=source.file_id, text="", source=source.file_id)


def _parsed_items(parsed: Parsed) -> Iterator[tuple[int, Item]]:
    if parsed.missing is not None:
        raise ImportError(parsed.missing)
    if parsed.error is not None:
        raise RecordError(parsed.error)
    yield from parsed.items


def _read_file(
    source: SourceFile,
    fields: Fields,
    reporter: _Reporter,
    check: DocumentCheck | None = None,
    keep_empty: bool = False,
    parsed: Parsed | None = None,
) -> Iterator[Document]:
    suffix = source.suffix
    reader = reader_for(source)
    if reader is None:
        reporter.problem(
            UNSUPPORTED,
            source.location,
            f"extension {suffix or '(none)'!r} is not one of {', '.join(SUPPORTED_EXTENSIONS)}",
        )
        return
    whole = is_whole_file(source)
    failed = UNREADABLE if whole else INVALID
    if whole and parsed is None:  # parsed here: a parser's bug fails this file, not the run
        parsed = parse_file(reader, source, fields)
    items = _parsed_items(parsed) if parsed is not None else reader(source, fields)
    try:
        for position, item in items:
            if isinstance(item, Unread):
                reporter.problem(UNREAD, _location(source, position), item.detail)
                continue
            if isinstance(item, RecordError):
                reporter.problem(INVALID, _location(source, position), str(item))
                continue
            if isinstance(item, Document):
                document = item
            else:
                try:
                    document = _record_to_document(item, fields, source, position)
                except RecordError as exc:
                    reporter.problem(INVALID, _location(source, position), str(exc))
                    continue
            refused = check(document) if check is not None else None
            if refused is not None:
                reporter.problem(INVALID, _location(source, position), f"the store refuses it: {refused}")
                continue
            if not document.text.strip():
                if whole:  # never an emptied document: its stored chunks stay
                    reporter.problem(UNREADABLE, source.location, "no text was extracted; nothing to ingest")
                    continue
                reporter.problem(EMPTY, _location(source, position), f"document {document.id!r} has no text")
                if not keep_empty:
                    continue
            yield document
    except RecordError as exc:
        reporter.problem(failed, source.location, str(exc))
    except OSError as exc:
        reporter.problem(failed, source.location, f"cannot read: {exc.strerror or exc}")


def _fields(text_field: str, id_field: str | None, on_error: OnError, ocr: bool = False) -> Fields:
    if on_error not in ("fail", "skip"):
        raise ConfigurationError(f"on_error={on_error!r}; expected 'fail' or 'skip'")
    if not text_field:
        raise ConfigurationError(
            f"{option('text_field')} is empty; pass the name of the field holding the text"
        )
    return Fields(text=text_field, id=id_field or None, ocr=ocr)


def read_source_file(
    source: SourceFile,
    *,
    text_field: str = "text",
    id_field: str | None = None,
    on_error: OnError = "fail",
    on_problem: ProblemCallback | None = None,
    check: DocumentCheck | None = None,
    keep_empty: bool = False,
    ocr: bool = False,
    list_whole_files: bool = False,
    parsed: Parsed | None = None,
) -> Iterator[Document]:
    """The documents of one file, without the cross-file duplicate-id check.

    Engines that read files in parallel (Ray) use this; :func:`iter_documents` adds the
    duplicate check with :class:`DuplicateIds`. Arguments as for :func:`iter_documents`;
    ``parsed``: the file's items parsed already (by a :class:`ParsePool`).
    """
    reporter = _Reporter(on_error, on_problem)
    fields = _fields(text_field, id_field, on_error, ocr)
    if list_whole_files and is_whole_file(source):
        yield from _list_whole_file(source, reporter, check)
        return
    yield from _read_file(source, fields, reporter, check, keep_empty, parsed)


def _list_whole_file(
    source: SourceFile, reporter: _Reporter, check: DocumentCheck | None
) -> Iterator[Document]:
    """A check pass's view of a whole-file document: its id, checked, without parsing."""
    document = listed_document(source)
    refused = check(document) if check is not None else None
    if refused is not None:
        reporter.problem(INVALID, source.location, f"the store refuses it: {refused}")
        return
    yield document


class DuplicateIds:
    """Remembers document ids; a second record with a seen id is an invalid record.

    Two records with one id would silently overwrite each other in the store. Ids are kept
    as 16-byte digests to bound memory.
    """

    def __init__(
        self, on_error: OnError, on_problem: ProblemCallback | None, also: DuplicateIds | None = None
    ) -> None:
        self._reporter = _Reporter(on_error, on_problem)
        self._seen: set[bytes] = set()
        #: ids seen elsewhere that count as seen here too (the files a load pass skips)
        self._also = also

    def _was_seen(self, digest: bytes) -> bool:
        return digest in self._seen or (self._also is not None and self._also._was_seen(digest))

    @staticmethod
    def _digest(document_id: str) -> bytes:
        return hashlib.blake2b(document_id.encode("utf-8"), digest_size=16).digest()

    def __contains__(self, document_id: object) -> bool:
        """Whether a document with this id has been seen."""
        return isinstance(document_id, str) and self._was_seen(self._digest(document_id))

    def add_unique(self, document_ids: Iterable[str], *, copy_to: DuplicateIds | None = None) -> bool:
        """Register ``document_ids`` (here and in ``copy_to``) when none of them was seen and
        none repeats; otherwise register none of them (nothing is reported) and return ``False``."""
        digests: set[bytes] = set()
        for document_id in document_ids:
            digest = self._digest(document_id)
            if self._was_seen(digest) or digest in digests:
                return False
            digests.add(digest)
        self._seen |= digests
        if copy_to is not None:
            copy_to._seen |= digests
        return True

    def is_duplicate(self, document: Document, source: SourceFile) -> bool:
        """True (and the problem reported, or raised under ``"fail"``) when the id was seen."""
        digest = self._digest(document.id)
        if self._was_seen(digest):
            self._reporter.problem(
                INVALID,
                source.location,
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
    id_root: str | os.PathLike[str] | None = None,
    check: DocumentCheck | None = None,
    keep_empty: bool = False,
    ocr: bool = False,
    pool: ParsePool | None = None,
    list_whole_files: bool = False,
    whole_file_problems_only: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    storage_options: Mapping[str, Any] | None = None,
    skip: Callable[[SourceFile], bool] | None = None,
    on_file: Callable[[SourceFile], None] | None = None,
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
        id_root: file ids relative to this directory instead of absolute real paths
            (see the module docs).
        check: the target store's ``Sink.check_document``; a document it refuses is an
            invalid record (named by file and line), so nothing the store would refuse
            reaches a write.
        keep_empty: also yield documents without text (after reporting them as
            ``"empty text"``): the engines delete the stored chunks of a document that
            became empty, a document with zero chunks. Never for whole-file formats: a
            PDF without text is an unreadable file, and its stored chunks stay.
        ocr: read PDF pages without a text layer with Tesseract.
        pool: parse whole-file formats in this pool's worker processes (under its time
            limit), a few files ahead of the caller; default: in this thread.
        list_whole_files: yield a whole-file document's stand-in
            (:func:`listed_document`: id and source, no text) without parsing it: an
            engine's check pass, which parses them once, later.
        whole_file_problems_only: report only the problems of whole-file documents (a
            pass that follows a check pass which reported the others).
        include: glob patterns of files to read (see :func:`iter_source_files`).
        exclude: glob patterns of files not to read.
        storage_options: options of the remote filesystem, for URL sources.
        skip: files for which it returns true are not read (nor reported).
        on_file: called with each file read, before its documents are yielded.

    Raises:
        SourceError: an invalid record (with ``on_error="fail"``), a missing source, a
            directory symlink loop or a file outside ``id_root``; the message names the
            file and the line.
    """
    fields = _fields(text_field, id_field, on_error, ocr)
    duplicates = (
        ids if ids is not None else DuplicateIds(on_error, None if whole_file_problems_only else on_problem)
    )

    def submit(source: SourceFile) -> Future[Parsed] | None:
        reader = reader_for(source)
        if pool is None or list_whole_files or reader is None or not is_whole_file(source):
            return None
        return pool.submit(reader, source, fields)

    listed: Iterable[SourceFile] = iter_source_files(
        sources, id_root=id_root, include=include, exclude=exclude, storage_options=storage_options
    )
    if skip is not None:
        listed = (source for source in listed if not skip(source))
    files = read_ahead(listed)
    window = 2 * max(1, pool.workers) if pool is not None else 1
    for source, parsed in parse_in_order(files, submit, window):
        if on_file is not None:
            on_file(source)
        problems = on_problem if not whole_file_problems_only or is_whole_file(source) else None
        for document in read_source_file(
            source,
            text_field=text_field,
            id_field=id_field,
            on_error=on_error,
            on_problem=problems,
            check=check,
            keep_empty=keep_empty,
            ocr=fields.ocr,
            list_whole_files=list_whole_files,
            parsed=parsed,
        ):
            if not duplicates.is_duplicate(document, source):
                yield document
