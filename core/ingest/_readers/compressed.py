"""Compressed ``.jsonl``, ``.csv``, ``.txt`` and ``.md``: ``.gz`` (gzip) and ``.zst`` (Zstandard).

``data.jsonl.gz`` is read by the ``.jsonl`` reader through a :class:`DecompressedFile`, a
:class:`~._base.SourceFile` whose ``suffix`` is the inner one and whose ``open()`` streams
the decompressed bytes; ids and messages still name the compressed file. Nothing is
decompressed to disk or whole into memory (a ``.jsonl.gz`` is read line by line).

Decompression is bounded: past :data:`MAX_RATIO` times the compressed size (and at least
:data:`MIN_LIMIT_BYTES`) the file is refused as a decompression bomb. Corrupt or truncated
data is refused with how far it was read. ``.zst`` needs ``zstandard`` (the ``documents``
extra).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

from e5_integrations.ingest._readers._base import (
    READERS,
    Fields,
    Item,
    RecordError,
    SourceFile,
    register_reader,
)

__all__ = ["DecompressedFile", "MAX_RATIO", "MIN_LIMIT_BYTES", "read_compressed"]

#: Largest decompressed / compressed size ratio accepted (above :data:`MIN_LIMIT_BYTES`).
MAX_RATIO = 200
#: Every compressed file may expand to at least this many bytes.
MIN_LIMIT_BYTES = 256 * 1024 * 1024
_INNER = (".jsonl", ".csv", ".txt", ".md")
_CODECS = {".gz": "gzip", ".zst": "zstd"}


def _decompressor(codec: str, raw: IO[bytes]) -> _Stream:
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    try:
        import zstandard
    except ImportError as exc:
        raise ImportError(
            "reading .zst files needs zstandard; install it with: pip install 'e5-integrations[documents]'"
        ) from exc
    return _Zstd(raw, zstandard.ZstdDecompressor())


class _Stream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class _Zstd:
    """Zstandard frames, one after another, decompressed in small steps.

    Unlike ``stream_reader``, a frame cut short is an error, not a quiet end of data. Input
    goes in 1 KiB at a time, so one step yields at most a few dozen MiB however the data
    was crafted, and the caller's bound applies between steps.
    """

    _STEP = 1024

    def __init__(self, raw: IO[bytes], context: Any) -> None:
        self._raw = raw
        self._context = context
        self._object = context.decompressobj()
        self._fed = False  # input given to the current frame
        self._buffer = b""
        self._offset = 0  # of the next byte to give in _buffer

    def read(self, size: int = -1, /) -> bytes:
        while self._offset >= len(self._buffer):
            self._buffer, self._offset = b"", 0
            data = self._raw.read(self._STEP)
            if not data:
                if self._fed and not self._object.eof:
                    raise EOFError("the last Zstandard frame is cut short (a truncated file)")
                return b""
            while data:
                if self._object.eof:
                    self._object = self._context.decompressobj()
                    self._fed = False
                self._fed = True
                self._buffer += self._object.decompress(data)
                data = self._object.unused_data if self._object.eof else b""
        end = len(self._buffer) if size < 0 else self._offset + size
        out = self._buffer[self._offset : end]
        self._offset += len(out)
        return out

    def close(self) -> None:
        self._buffer = b""


def _errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, ValueError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


class _Guarded(io.RawIOBase):
    """Decompressed bytes, bounded, with codec errors turned into :class:`RecordError`."""

    def __init__(self, raw: IO[bytes], stream: _Stream, codec: str, limit: int) -> None:
        self._raw = raw
        self._stream = stream
        self._codec = codec
        self._limit = limit
        self._count = 0
        self._errors = _errors()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._stream.read(len(view))
        except RecordError:
            raise
        except self._errors as exc:
            raise RecordError(
                f"corrupt or truncated {self._codec} data after {self._count} decompressed bytes ({exc}); "
                "compress the file again, or pass it uncompressed"
            ) from exc
        self._count += len(data)
        if self._count > self._limit:
            raise RecordError(
                f"decompresses past {self._limit} bytes ({MAX_RATIO}x its size): refused as a "
                "decompression bomb; if it is real, decompress it and pass the plain file"
            )
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._raw.close()
            super().close()


@dataclass(frozen=True)
class DecompressedFile(SourceFile):
    """A compressed file seen as the file inside it (``suffix`` is the inner extension)."""

    outer: SourceFile
    codec: str
    inner_suffix: str

    @property
    def suffix(self) -> str:
        """The inner extension (``".jsonl"`` for ``data.jsonl.gz``)."""
        return self.inner_suffix

    def open(self) -> IO[bytes]:
        """The decompressed bytes, streamed and bounded."""
        size = self.outer.size()
        if size == 0:
            raise RecordError(f"the file is empty (0 bytes); expected {self.codec}-compressed data")
        limit = max(MIN_LIMIT_BYTES, MAX_RATIO * size) if size is not None else MIN_LIMIT_BYTES
        raw = self.outer.open()
        try:
            stream = _decompressor(self.codec, raw)
        except BaseException:
            raw.close()
            raise
        return io.BufferedReader(_Guarded(raw, stream, self.codec, limit))

    def size(self) -> int | None:
        """Unknown without decompressing."""
        return None


def read_compressed(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    """The documents of the file inside a ``.gz``/``.zst`` file, read by its extension's reader."""
    suffixes = source.path.suffixes
    codec = _CODECS[source.suffix]
    inner = suffixes[-2].lower() if len(suffixes) >= 2 else ""
    reader = READERS.get(inner) if inner in _INNER else None
    if reader is None:
        raise RecordError(
            f"a {codec} file of {inner or 'no extension'!r}; compressed files are read for "
            f"{', '.join(_INNER)} only"
        )
    yield from reader(DecompressedFile(source.path, source.file_id, source, codec, inner), fields)


for _suffix in _INNER:
    for _codec in _CODECS:
        register_reader(read_compressed, _suffix + _codec)
