"""The types every reader shares: what a source file is, what a reader yields, the registry.

A *reader* turns one :class:`SourceFile` into ``(position, item)`` pairs, where ``position``
is the record's line or row number (1-based; 0 for a file that is one document) and
``item`` is a raw record (a mapping, turned into a :class:`Document` with the run's
``--text-field`` / ``--id-field``), a ready :class:`Document`, or a :class:`RecordError`
(that record is invalid, the rest of the file is read). A reader that raises
:class:`RecordError` marks the whole file invalid. Readers read bytes only through
:meth:`SourceFile.open`, so every reader works on every place a file can live.

A format is one module that calls :func:`register_reader` for its extensions.
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
    "SourceFile",
    "Span",
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
    """The run's ``--text-field`` and ``--id-field``."""

    text: str
    id: str | None

    @property
    def id_name(self) -> str:
        return self.id or "id"


class RecordError(Exception):
    """A record (or, raised by a reader, the whole file) is invalid."""


#: What a reader yields per position: a raw record, a ready document, or the record's error.
Item = Mapping[str, Any] | Document | RecordError
Reader = Callable[[SourceFile, Fields], Iterator[tuple[int, Item]]]

#: Extension (lower case, with the dot) -> reader.
READERS: dict[str, Reader] = {}


def register_reader(reader: Reader, *extensions: str) -> Reader:
    """Make ``reader`` the one for files ending in ``extensions`` (``".pdf"``)."""
    for extension in extensions:
        if not extension.startswith(".") or extension != extension.lower():
            raise ValueError(
                f"extension {extension!r}: expected a lower-case suffix such as '.pdf' (or '.jsonl.gz')"
            )
        READERS[extension] = reader
    return reader


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
