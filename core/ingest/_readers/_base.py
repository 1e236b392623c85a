"""The types every reader shares: what a source file is, what a reader yields, the registry.

A *reader* turns one :class:`SourceFile` into ``(position, item)`` pairs, where ``position``
is the record's line or row number (1-based; 0 for a file that is one document) and
``item`` is a raw record (a mapping, turned into a :class:`Document` with the run's
``--text-field`` / ``--id-field``), a ready :class:`Document`, or a :class:`RecordError`
(that record is invalid, the rest of the file is read). A reader that raises
:class:`RecordError` marks the whole file invalid. Readers read bytes only through
:meth:`SourceFile.open`, so every reader works on every place a file can live.

A reader may also yield an :class:`Unread` for a part of the file it could not read (a PDF
page without a text layer): reported, never fatal, the rest of the file is kept.

A format is one module that calls :func:`register_reader` for its extensions. A format
whose file is one document with the file id as its id (PDF, Office, HTML, EPUB...) registers
with ``whole_file=True``: the engines then list such a file without parsing it in their check
pass, parse it once, in a separate worker process under a time limit (a crash or a hang in
a parser fails that file, never the run), in parallel with the embedding.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "READERS",
    "Document",
    "Fields",
    "Item",
    "Reader",
    "RecordError",
    "WHOLE_FILE_EXTENSIONS",
    "SourceFile",
    "Span",
    "Unread",
    "is_whole_file",
    "reader_for",
    "register_reader",
]


@dataclass(frozen=True)
class Span:
    """Where a stretch of a document's text came from.

    Attributes:
        start: character offset of the stretch in :attr:`Document.text`.
        end: character offset just past it.
        metadata: what a chunk overlapping it says of its origin, e.g. ``{"page": 3}``,
            ``{"slide": 2}``, ``{"sheet": "Q1"}`` or ``{"section": "Setup > Linux"}``.
    """

    start: int
    end: int
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class Document:
    """One document read from a source.

    Attributes:
        id: deterministic document id (see the sources module docs).
        text: the full text.
        source: the file id of the file it came from.
        metadata: the record's other fields (JSON values); document-level facts
            (``title``) for structured formats.
        spans: where stretches of the text came from (pages, slides, sheets, sections),
            sorted by ``start``; empty for plain text and records.
    """

    id: str
    text: str
    source: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True)
class SourceFile:
    """A file to read and the id it is known by."""

    path: Path
    file_id: str

    @property
    def suffix(self) -> str:
        """The extension that picks the reader, lower case (``".pdf"``), or ``""``."""
        return self.path.suffix.lower()

    @property
    def location(self) -> str:
        """How messages name the file."""
        return str(self.path)

    def open(self) -> IO[bytes]:
        """The file's bytes, as a binary stream (the caller closes it)."""
        return self.path.open("rb")

    def size(self) -> int | None:
        """The file's size in bytes, where known without reading it."""
        try:
            return os.path.getsize(self.path)
        except OSError:
            return None


@dataclass(frozen=True)
class Fields:
    """The run's reading options: ``--text-field``, ``--id-field`` and ``--ocr``."""

    text: str
    id: str | None
    #: read PDF pages without a text layer with Tesseract (``--ocr``)
    ocr: bool = False

    @property
    def id_name(self) -> str:
        return self.id or "id"


class RecordError(Exception):
    """A record (or, raised by a reader, the whole file) is invalid."""


@dataclass(frozen=True)
class Unread:
    """A part of a file left out of its document (e.g. a PDF page without a text layer).

    It is reported with the file and position (page) and never stops the run: the rest of
    the file is read.
    """

    detail: str


#: What a reader yields per position: a raw record, a ready document, the record's error,
#: or a part of the file that was left out.
Item = Mapping[str, Any] | Document | RecordError | Unread
Reader = Callable[[SourceFile, Fields], Iterator[tuple[int, Item]]]

#: Extension (lower case, with the dot) -> reader.
READERS: dict[str, Reader] = {}
#: Extensions whose file is one document, id = file id, parsed once in a worker process.
WHOLE_FILE_EXTENSIONS: set[str] = set()


def register_reader(reader: Reader, *extensions: str, whole_file: bool = False) -> Reader:
    """Make ``reader`` the one for files ending in ``extensions`` (``".pdf"``).

    Args:
        reader: a module-level function (worker processes import it by name).
        extensions: lower-case suffixes with the dot.
        whole_file: the file is one :class:`Document` whose id is the file id; the
            engines list it without parsing in their check pass and parse it once, in a
            worker process under ``--parse-timeout`` (see the module docs).
    """
    for extension in extensions:
        if not extension.startswith(".") or extension != extension.lower():
            raise ValueError(
                f"extension {extension!r}: expected a lower-case suffix such as '.pdf' (or '.jsonl.gz')"
            )
        READERS[extension] = reader
        if whole_file:
            WHOLE_FILE_EXTENSIONS.add(extension)
        else:
            WHOLE_FILE_EXTENSIONS.discard(extension)
    return reader


def is_whole_file(source: SourceFile) -> bool:
    """Whether ``source`` is read as one document by a ``whole_file`` reader."""
    return source.suffix in WHOLE_FILE_EXTENSIONS


def reader_for(source: SourceFile) -> Reader | None:
    """The reader registered for the file's extension, or None.

    A two-part extension registered as one (``.jsonl.gz``) wins over the last part alone.
    """
    suffixes = source.path.suffixes
    if len(suffixes) >= 2:
        compound = READERS.get("".join(suffixes[-2:]).lower())
        if compound is not None:
            return compound
    return READERS.get(source.suffix)
