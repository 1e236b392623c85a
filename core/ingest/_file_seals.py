"""Seals of local files: a nightly re-run skips an unchanged file without parsing it twice.

A local file read whole and without a problem gets a *seal* on its probe chunk (chunk 0 of
its first document), written after every other chunk of the file, as remote objects do
(see ``_remote``)::

    "<content hash of the probe chunk>~object:<seal>:<documents>:<chunks>"

The seal is a digest of the file's bytes and of the run's settings (model, ``max_length``,
recipe, chunk sizes, text and id fields, ``--ocr``), so an edited file, a changed setting or
another model never matches. The counts let a re-run report the file's documents and chunks
as unchanged without reading them.

The Ray engine writes a file's rows in no set order, so no row of its job can carry the seal:
its driver clears the stale seals of the files it will read before the job, and after a job
that wrote every row sets the seal alone (``Sink.set_content_hashes``) on each file that the
check pass and its read task (which hashes the file again first) read without a problem. The
seals are the same in both engines (:func:`seal_settings`).

What a sealed file still costs a run: reading its bytes once for the digest, its first
record for the probe id, one ``fetch_hashes`` per :data:`PROBE_BATCH` files, and, when its
records carry their own ids, those ids (a JSON parse per line, no validation, no Document),
so ``--prune`` and the duplicate-id check see every document. It is not validated again
(its bytes are those validated when it was sealed) and the load pass does not read it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from e5_integrations._errors import SourceError
from e5_integrations.ingest._chunking import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_TOKENS, chunk_id
from e5_integrations.ingest._fingerprint import parse_stored_hash
from e5_integrations.ingest._readers import is_whole_file, reader_for
from e5_integrations.ingest._readers._base import Fields, RecordError
from e5_integrations.ingest._sources import Document, SourceFile, read_source_file, record_document_id

__all__ = ["FileSeal", "file_seal", "first_document_id", "record_ids", "seal_settings", "stored_seal"]

_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileSeal:
    """A local file's probe chunk and the seal this run would give it."""

    probe: str
    seal: str


@dataclass(frozen=True)
class StoredSeal:
    """What a stored local seal says: the seal, and the file's documents and chunks."""

    seal: str
    documents: int
    chunks: int


def seal_settings(
    *,
    model: str,
    max_length: int,
    recipe: str | None,
    chunk_tokens: int | None,
    chunk_overlap: int | None,
    text_field: str,
    id_field: str | None,
    ocr: bool,
) -> dict[str, object]:
    """The run's settings a seal is made of, the same in both engines (so a file sealed by
    one is skipped by the other): the model, its resolved ``max_length``, the recipe's key
    (``recipe_key``), the chunk sizes as asked (with the defaults they fall back to), the
    text and id fields and ``--ocr``."""
    return {
        "model": model,
        "max_length": max_length,
        "recipe": recipe,
        "chunk_tokens": chunk_tokens,
        "chunk_overlap": chunk_overlap,
        "defaults": [DEFAULT_CHUNK_TOKENS, DEFAULT_CHUNK_OVERLAP],
        "text_field": text_field,
        "id_field": id_field,
        "ocr": ocr,
    }


def file_seal(source: SourceFile, settings: Mapping[str, object]) -> str:
    """The digest of the file's bytes and the run's settings (24 hex digits)."""
    digest = hashlib.blake2b(digest_size=16)
    with source.open() as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    payload = json.dumps(
        ["file", digest.hexdigest(), dict(settings)], sort_keys=True, default=str, separators=(",", ":")
    )
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=12).hexdigest()


def sealed_value(seal: str, documents: int, chunks: int) -> str:
    """The seal part of a probe chunk's stored value, with the file's counts."""
    return f"{seal}:{documents}:{chunks}"


def stored_seal(value: str | None) -> StoredSeal | None:
    """The local seal a stored ``e5_content_hash`` value carries, or ``None``."""
    if value is None:
        return None
    seal = parse_stored_hash(value).seal
    if seal is None:
        return None
    head, _, counts = seal.partition(":")
    documents, _, chunks = counts.partition(":")
    if not documents.isdigit() or not chunks.isdigit():
        return None  # a remote object's seal, or not ours
    return StoredSeal(head, int(documents), int(chunks))


def first_document_id(source: SourceFile, fields: Fields) -> str | None:
    """The id of the file's first document, reading only as far as it (a whole-file
    document's id is the file's); ``None`` when the file has none or cannot be read."""
    try:
        for document in read_source_file(
            source,
            text_field=fields.text,
            id_field=fields.id,
            on_error="skip",
            keep_empty=True,
            list_whole_files=True,
        ):
            return document.id
    except (SourceError, OSError, ValueError):
        return None
    return None


def probe_of(source: SourceFile, fields: Fields) -> str | None:
    """The id of the chunk that carries the file's seal: chunk 0 of its first document."""
    if reader_for(source) is None:
        return None
    first = first_document_id(source, fields)
    return None if first is None else chunk_id(first, 0)


class NotSealed(Exception):
    """A sealed file's records did not read as they did when it was sealed."""


def record_ids(source: SourceFile, fields: Fields) -> Iterator[str]:
    """The document ids of a sealed file (:func:`record_document_id`), without building
    documents or validating them again; raises :class:`NotSealed` on anything the
    sealing run could not have accepted."""
    if is_whole_file(source):
        yield source.file_id
        return
    reader = reader_for(source)
    if reader is None:
        raise NotSealed(source.location)
    try:
        for position, item in reader(source, fields):
            if isinstance(item, dict) or (not isinstance(item, Document) and isinstance(item, Mapping)):
                yield record_document_id(item, fields, source, position)  # dict first: the hot path
            elif isinstance(item, Document):
                yield item.id
            elif isinstance(item, RecordError):
                raise NotSealed(source.location)
    except RecordError as exc:
        raise NotSealed(source.location) from exc


def look_up(
    batch: Sequence[SourceFile],
    fields: Fields,
    settings: Mapping[str, object],
    fetch: Callable[[Sequence[str]], dict[str, str]] | None,
) -> list[tuple[SourceFile, FileSeal | None, str | None]]:
    """Each file with its probe and seal (``None`` for a file that cannot be sealed) and the
    stored value of its probe chunk (``None`` when not stored, or when ``fetch`` is ``None``:
    the collection was empty)."""
    found: list[tuple[SourceFile, FileSeal | None]] = []
    for source in batch:
        probe = probe_of(source, fields)
        seal = None
        if probe is not None:
            try:
                seal = FileSeal(probe, file_seal(source, settings))
            except OSError:
                seal = None
        found.append((source, seal))
    probes = [seal.probe for _, seal in found if seal is not None]
    stored = fetch(probes) if fetch is not None and probes else {}
    return [(source, seal, stored.get(seal.probe) if seal else None) for source, seal in found]
