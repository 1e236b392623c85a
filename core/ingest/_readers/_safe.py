"""Opening untrusted archives and XML without letting them hurt the reader.

Every Office (``.docx``, ``.pptx``, ``.xlsx``) and ``.epub`` reader goes through here:

- :class:`SafeZip` checks a file before it opens it (0 bytes, not a zip, an OLE compound
  file, i.e. a legacy or password-protected Office file), checks each member's *declared*
  uncompressed size and compression ratio before reading it, and bounds the bytes actually
  read while decompressing (a header that lies about the size is caught too). A zip bomb is
  refused with the file and member named; it is never expanded.
- :func:`parse_xml` and :func:`stream_xml` parse with expat and refuse any ``<!DOCTYPE``:
  no entity is ever declared, so none is expanded (billion laughs) or resolved (external
  entities: no file or network access). OOXML and OPF never need a DTD. Elements nested
  deeper than :data:`MAX_XML_DEPTH` are refused with a clear error instead of building a
  tree that deep.

All refusals are :class:`~e5_integrations.ingest._readers._base.RecordError`, so the
pipeline reports the file under ``--on-error skip`` and stops naming it under ``fail``.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from types import TracebackType
from typing import IO, Any
from xml.etree import ElementTree
from xml.parsers import expat

from e5_integrations.ingest._readers._base import RecordError, SourceFile

__all__ = [
    "MAX_ARCHIVE_BYTES",
    "MAX_MEMBER_BYTES",
    "MAX_RATIO",
    "MAX_XML_DEPTH",
    "RATIO_FLOOR_BYTES",
    "SafeZip",
    "iter_elements",
    "parse_xml",
    "stream_xml",
]

#: Largest uncompressed size of one archive member read (declared and actual).
MAX_MEMBER_BYTES = 256 * 1024 * 1024
#: Largest uncompressed total read from one archive.
MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024
#: Largest compression ratio (uncompressed / compressed) of a member above :data:`RATIO_FLOOR_BYTES`.
#: Real XML compresses 5-50x; zip bombs go past 1,000x.
MAX_RATIO = 200
#: Members smaller than this are not ratio-checked (a small run of spaces compresses very well).
RATIO_FLOOR_BYTES = 1024 * 1024
#: Deepest element nesting accepted in an XML member (real OOXML stays under 50).
MAX_XML_DEPTH = 1000
#: Largest non-seekable stream copied into memory to open it as a zip.
MAX_ZIP_FILE_BYTES = 2 * MAX_ARCHIVE_BYTES
_READ_CHUNK = 1 << 20
#: Bytes parsed between hand-outs of :func:`iter_elements` (what it holds as elements at most).
_ELEMENTS_CHUNK = 1 << 16

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _describe_start(head: bytes) -> str:
    """What a file that is not a zip looks like, from its first bytes."""
    if head.startswith(b"%PDF"):
        return "it is a PDF"
    if head.startswith(b"PK"):
        return "it is a truncated or damaged zip archive"
    stripped = head.lstrip()
    if stripped[:1] == b"<":
        return "it looks like XML or HTML text"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it starts with the bytes {head[:8]!r}"
    return "it looks like plain text"


class SafeZip:
    """A zip-based document (``kind``: ``"DOCX"``, ``"XLSX"``, ...) opened with the checks above.

    Use as a context manager. Read members with :meth:`read`, :meth:`open` or :meth:`xml`.
    """

    def __init__(self, source: SourceFile, kind: str) -> None:
        self.kind = kind
        self._handle: IO[bytes] = source.open()
        try:
            self._zip = self._open_zip(self._handle)
        except BaseException:
            self._handle.close()
            raise
        self._read_total = 0

    def _open_zip(self, handle: IO[bytes]) -> zipfile.ZipFile:
        head = handle.read(8)
        if not head:
            raise RecordError(
                f"the file is empty (0 bytes); expected a {self.kind} document (a zip archive). "
                "Replace it with the saved document, or remove it"
            )
        if head.startswith(_OLE_MAGIC):
            raise RecordError(
                f"not a {self.kind} zip archive but an OLE compound file: a password-protected "
                f"Office document or a legacy binary one (.doc/.xls/.ppt); remove the password, "
                f"or save it as {self.kind} from the application that made it"
            )
        if not head.startswith(_ZIP_MAGIC):
            raise RecordError(
                f"not a {self.kind} document: {_describe_start(head)}, not a whole zip archive "
                "(is the extension wrong?); rename it to its real extension, or save it again"
            )
        stream: IO[bytes]
        if handle.seekable():
            handle.seek(0)
            stream = handle
        else:  # e.g. a decompressed stream: copy it, bounded
            data = head + handle.read(MAX_ZIP_FILE_BYTES)
            if len(data) > MAX_ZIP_FILE_BYTES:
                raise RecordError(f"the {self.kind} file is over {MAX_ZIP_FILE_BYTES} bytes")
            stream = io.BytesIO(data)
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise RecordError(
                f"a corrupt or truncated {self.kind} file ({exc}); save it again from the application "
                "that made it"
            ) from exc
        return archive

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive and the file."""
        self._zip.close()
        self._handle.close()

    def names(self) -> list[str]:
        """The archive's member names."""
        return self._zip.namelist()

    def has(self, name: str) -> bool:
        """Whether the archive holds ``name``."""
        try:
            self._zip.getinfo(name)
        except KeyError:
            return False
        return True

    def _info(self, name: str) -> zipfile.ZipInfo:
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise RecordError(
                f"the {self.kind} archive has no member {name!r}; it is not a valid {self.kind} file"
            ) from None
        if info.flag_bits & 0x1:
            raise RecordError(f"member {name!r} of the {self.kind} archive is encrypted; remove the password")
        where = f"member {name!r} of the {self.kind} archive"
        if info.file_size > MAX_MEMBER_BYTES:
            raise RecordError(
                f"{where} declares {info.file_size} bytes uncompressed, over the limit of "
                f"{MAX_MEMBER_BYTES}; refused without expanding it (a zip bomb, or a document too big to read)"
            )
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise RecordError(
                f"{where} expands {info.compress_size} bytes to {info.file_size} "
                f"({info.file_size // max(info.compress_size, 1)}x, the limit is {MAX_RATIO}x); "
                "refused as a zip bomb without expanding it"
            )
        if self._read_total + info.file_size > MAX_ARCHIVE_BYTES:
            raise RecordError(
                f"{where} would take the bytes read from the archive past {MAX_ARCHIVE_BYTES}; "
                "refused as a zip bomb without expanding it"
            )
        return info

    def open(self, name: str) -> IO[bytes]:
        """A member's bytes as a stream that stops at its declared size (checks as :meth:`read`)."""
        info = self._info(name)
        try:
            raw = self._zip.open(info)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
            raise RecordError(f"cannot open member {name!r} of the {self.kind} archive ({exc})") from exc
        return io.BufferedReader(_Bounded(raw, info, self))

    def read(self, name: str) -> bytes:
        """A member's bytes, refused as described in the module docs."""
        with self.open(name) as stream:
            return stream.read()

    def xml(self, name: str) -> ElementTree.Element:
        """A member parsed with :func:`parse_xml`."""
        return parse_xml(self.read(name), f"member {name!r} of the {self.kind} archive")


class _Bounded(io.RawIOBase):
    """A member stream that refuses to give more bytes than declared or allowed."""

    def __init__(self, raw: IO[bytes], info: zipfile.ZipInfo, archive: SafeZip) -> None:
        self._raw = raw
        self._info = info
        self._archive = archive
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._raw.read(min(len(view), _READ_CHUNK))
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as exc:
            raise RecordError(
                f"member {self._info.filename!r} of the {self._archive.kind} archive is corrupt ({exc}); "
                "save the file again"
            ) from exc
        self._count += len(data)
        self._archive._read_total += len(data)
        if self._count > self._info.file_size or self._archive._read_total > MAX_ARCHIVE_BYTES:
            raise RecordError(
                f"member {self._info.filename!r} of the {self._archive.kind} archive expands past its "
                "declared size or the archive limit; refused as a zip bomb"
            )
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Refused(Exception):
    """Raised inside an expat handler to stop the parse (turned into RecordError)."""


def _refuse_doctype(*_: Any) -> None:
    raise _Refused(
        "it declares a DOCTYPE; DTDs and entities are never processed (no entity expansion, "
        "no external entity)"
    )


def _refuse_entity(*_: Any) -> None:
    raise _Refused("it declares an entity; entities are never expanded")


def _refuse_external(*_: Any) -> int:
    raise _Refused("it refers to an external entity; entities are never resolved")


def _qname(name: str) -> str:
    """expat's ``uri}local`` -> ElementTree's ``{uri}local``."""
    return "{" + name if "}" in name else name


def _new_parser() -> Any:
    parser = expat.ParserCreate(namespace_separator="}")
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    return parser


def _run(parser: Any, feed: Callable[[], None], where: str) -> None:
    try:
        feed()
    except _Refused as exc:
        raise RecordError(f"{where} refused: {exc}") from None
    except expat.ExpatError as exc:
        raise RecordError(f"{where} is not well-formed XML ({exc}); the file is corrupt") from None


def parse_xml(data: bytes, where: str) -> ElementTree.Element:
    """Parse ``data`` into an element tree, refusing DTDs and nesting past :data:`MAX_XML_DEPTH`.

    Tags and attribute names are ``{namespace}local`` as in :mod:`xml.etree.ElementTree`.
    ``where`` names the document in errors.
    """
    builder = ElementTree.TreeBuilder()
    depth = 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise _Refused(f"elements are nested deeper than {MAX_XML_DEPTH} levels")
        builder.start(_qname(name), {_qname(key): value for key, value in attrs.items()})

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(_qname(name))

    parser = _new_parser()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    _run(parser, lambda: parser.Parse(data, True), where)
    return builder.close()


def iter_elements(stream: IO[bytes], where: str, depth: int) -> Iterator[ElementTree.Element]:
    """The complete elements at nesting ``depth`` (the root is 1) of ``stream``, in order.

    Each is detached from its parent once parsed, so a document of a million paragraphs is
    read in the memory of one paragraph at a time (plus one read chunk). DTDs and nesting
    past :data:`MAX_XML_DEPTH` are refused as in :func:`parse_xml`.
    """
    builder = ElementTree.TreeBuilder()
    level = 0
    parents: list[ElementTree.Element] = []
    done: list[ElementTree.Element] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal level
        level += 1
        if level > MAX_XML_DEPTH:
            raise _Refused(f"elements are nested deeper than {MAX_XML_DEPTH} levels")
        element = builder.start(_qname(name), {_qname(key): value for key, value in attrs.items()})
        if level == depth - 1:
            parents.append(element)

    def end(name: str) -> None:
        nonlocal level
        element = builder.end(_qname(name))
        if level == depth and parents:
            parents[-1].remove(element)
            done.append(element)
        elif level == depth - 1 and parents:
            parents.pop()
        level -= 1

    parser = _new_parser()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    while True:
        data = stream.read(_ELEMENTS_CHUNK)
        _run(parser, partial(parser.Parse, data, not data), where)
        yield from done
        done.clear()
        if not data:
            return


def stream_xml(
    stream: IO[bytes],
    where: str,
    start: Callable[[str, dict[str, str]], None],
    end: Callable[[str], None],
    text: Callable[[str], None],
) -> None:
    """Parse ``stream`` piece by piece, calling ``start``/``end``/``text``; DTDs refused alike.

    For members too big to hold as a tree (spreadsheets). For speed, names are passed as
    expat gives them, ``namespace}local`` (no leading ``{``), attributes unconverted. No
    tree is built, so nesting depth costs nothing here (expat keeps its stack on the heap).
    """
    parser = _new_parser()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text

    def feed() -> None:
        while True:
            data = stream.read(_READ_CHUNK)
            parser.Parse(data, not data)
            if not data:
                return

    _run(parser, feed, where)
