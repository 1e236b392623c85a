"""The ingestion pipeline: sources → chunks → embeddings → a sink, resumable and idempotent.

A run makes two streaming passes over the sources:

1. **Check.** Every record file is parsed and every record validated, nothing is tokenized
   or embedded. With ``on_error="fail"`` a malformed record stops the run here, naming the
   file and line, before the collection is even created. The pass also counts documents
   for the progress bar. Memory stays bounded: one record at a time. Whole-file formats
   (PDF, Office...: one document per file, its id the file id) are only listed here, not
   parsed: they are parsed once, in pass 2.
2. **Load.** The collection is created or checked (:meth:`Sink.ensure_collection`, which
   raises :class:`SchemaMismatchError` before any write), then documents are chunked and
   gathered into *groups* of about ``group_tokens`` tokens. For each group the stored
   content hashes of its chunk ids are fetched; chunks stored unchanged are skipped
   without being embedded; the rest are embedded in one encoder call (the encoder sorts
   them into token-budget batches) and upserted.

All store calls run on one background thread, in submission order, so the encoder never
waits for the store: while group *n* is embedded, group *n-1* is written and group *n+1*'s
hashes are fetched; and documents are chunked (tokenized) on a third thread, one group
ahead, so tokenization never waits for the encoder either. At most one group is being
written, one looked up and one chunked while the next is embedded, so memory stays bounded.
A failed store call fails the run (no silent loss).

Whole-file documents are parsed in the worker processes of a
:class:`~e5_integrations.ingest._parsing.ParsePool` (``parse_workers``), a few files ahead of
the chunker, so the model never waits on a parser; each file under ``parse_timeout``. A file
that cannot be parsed (encrypted, corrupt, no text, a parser crash or timeout) fails the run
under ``on_error="fail"``, naming it; under ``"skip"`` it is reported and counted
(``skipped_unreadable``). Either way its stored chunks stay: it yields no document, so no
stale-chunk probe runs for it, and its id was listed in pass 1, so ``prune`` keeps it.

Before a document is chunked, its *mark* is looked up (one ``fetch_hashes`` per 512
documents, see ``_fingerprint``): a document whose stored mark matches its fingerprint is
counted as unchanged without being tokenized. Each document's chunk 0 carries its mark and is
emitted after the document's other chunks; ``write`` upserts marked records after the plain
ones, so a mark is acknowledged only once all of its document's chunks are.

Chunk ids are deterministic (``"{document id}#{chunk index}"``) and writes are upserts, so a
run killed at any point and started again converges to exactly the expected rows.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from e5_integrations._embedder import Embedder
from e5_integrations._errors import ConfigurationError, InputError, SchemaMismatchError, SourceError, option
from e5_integrations._redact import redact
from e5_integrations.ingest._chunking import (
    Chunker,
    check_chunk_sizes,
    chunk_id,
    content_hash,
    recipe_key,
    structure_boundaries,
)
from e5_integrations.ingest._file_seals import (
    FileSeal,
    NotSealed,
    file_seal,
    look_up,
    record_ids,
    seal_settings,
    sealed_value,
    stored_seal,
)
from e5_integrations.ingest._fingerprint import (
    StoredMark,
    document_fingerprint,
    fetch_marks,
    mark_value,
    parse_stored_hash,
    stored_unchanged,
)
from e5_integrations.ingest._parsing import ParsePool
from e5_integrations.ingest._readers import Fields
from e5_integrations.ingest._remote import (
    RemoteSourceFile,
    id_follows_url,
    is_remote,
    object_seal,
    probe_chunk_id,
    read_ahead,
    seal_matches,
    sealed_hash,
)
from e5_integrations.ingest._report import IngestReport
from e5_integrations.ingest._sink import (
    CHUNK_INDEX_KEY,
    CONTENT_HASH_KEY,
    DOCUMENT_ID_KEY,
    SOURCE_KEY,
    Hit,
    Record,
    Sink,
    reserved_metadata_key,
)
from e5_integrations.ingest._sources import (
    INVALID,
    SUPPORTED_EXTENSIONS,
    UNSUPPORTED,
    Document,
    DocumentCheck,
    DuplicateIds,
    OnError,
    SourceFile,
    SourceProblem,
    Span,
    iter_documents,
    iter_source_files,
    read_source_file,
)

__all__ = [
    "DOCUMENT_ID_KEY",
    "Embedder",
    "PendingChunk",
    "delete_stale_chunks",
    "fingerprint_of",
    "ingest",
    "mark_chunks",
    "nothing_to_ingest",
    "prepare_chunks",
    "prune_removed_documents",
    "search",
    "span_metadata",
    "to_check",
    "upsert_in_batches",
]

logger = logging.getLogger("e5_integrations.ingest")

#: Group size in tokens per encoder call, as a multiple of the encoder's ``batch_tokens``.
GROUP_BATCHES = 4
#: At most this many chunks per group, whatever their size.
MAX_GROUP_CHUNKS = 4096
#: Ids per ``fetch_hashes`` call.
FETCH_BATCH = 512
#: Remote objects listed ahead of reading, whose probe chunks are looked up in one call.
PROBE_BATCH = 256


@dataclass(frozen=True)
class PendingChunk:
    """A chunk waiting to be embedded, with its id, metadata and content hash."""

    id: str
    text: str
    metadata: dict[str, Any]
    hash: str
    tokens: int


@dataclass
class _Group:
    """Chunks embedded in one encoder call, plus the stale-chunk probes of their documents."""

    chunks: list[PendingChunk] = field(default_factory=list)
    tokens: int = 0
    documents_done: int = 0
    #: (document id, first chunk index that should no longer exist)
    probes: list[tuple[str, int]] = field(default_factory=list)
    #: documents whose stored chunk 0 carries a stale mark and which are rewritten in parts:
    #: their chunk 0 is deleted before this group is written (see ``_fingerprint``)
    unmark: list[str] = field(default_factory=list)
    #: probe chunks (ids) holding a stale object seal: deleted before this group is written
    unseal: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _ObjectStart:
    """The next documents come from a remote object whose probe chunk is ``probe``; the
    chunk is held back and written after every other chunk of the object (see
    :class:`_RemoteObjects`)."""

    probe: str
    seal: str
    #: the stored probe chunk holds another version's seal: it is deleted before the
    #: object's first chunks are written
    stale: bool = False
    #: a local file's seal, which carries the file's document and chunk counts
    counted: bool = False


@dataclass(frozen=True)
class _ObjectEnd:
    """The object was read to its end; ``sealed``: its probe chunk gets the object's seal."""

    sealed: bool


def _with_seal(chunk: PendingChunk, seal: str) -> PendingChunk:
    digest = sealed_hash(chunk.hash, seal)
    return PendingChunk(
        chunk.id, chunk.text, {**chunk.metadata, CONTENT_HASH_KEY: digest}, digest, chunk.tokens
    )


def prepare_chunks(
    document: Document, chunker: Chunker, model_name: str, max_length: int, recipe: str | None = None
) -> list[PendingChunk]:
    """Split ``document`` and give every chunk its id, metadata and content hash.

    Shared by the local and the Ray engine, so both write identical rows. ``recipe`` is
    :func:`~e5_integrations.ingest._chunking.recipe_key` of the encoder's recipe.
    """
    pending = []
    boundaries = (
        structure_boundaries(document.text, (span.start for span in document.spans))
        if document.spans
        else None
    )
    for chunk in chunker.split(document.text, boundaries):
        metadata = {
            **document.metadata,
            **span_metadata(document.spans, chunk.start, chunk.end),
            SOURCE_KEY: document.source,
            DOCUMENT_ID_KEY: document.id,
            CHUNK_INDEX_KEY: chunk.index,
        }
        digest = content_hash(model_name, max_length, chunk.text, metadata, recipe)
        metadata[CONTENT_HASH_KEY] = digest
        pending.append(
            PendingChunk(chunk_id(document.id, chunk.index), chunk.text, metadata, digest, chunk.tokens)
        )
    return pending


def span_metadata(spans: Sequence[Span], start: int, end: int) -> dict[str, Any]:
    """What the spans overlapping ``[start, end)`` say of a chunk's origin.

    An integer field (``page``, ``slide``) gives the first unit and ``{name}_end`` the last,
    always both (one type per field in every store, and ``page <= 4 <= page_end`` finds the
    chunks on page 4); any other field (``sheet``, ``section``) is the value where the chunk
    starts. Bookkeeping names (``source``, ``e5_*``...) are never taken from a span.
    """
    found: dict[str, Any] = {}
    for span in spans:
        if span.end <= start or span.start >= end:
            continue
        for key, value in span.metadata.items():
            if reserved_metadata_key(key):
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                low, high = found.get(key, value), found.get(f"{key}_end", value)
                found[key], found[f"{key}_end"] = min(low, value), max(high, value)
            else:
                found.setdefault(key, value)
    return found


def fingerprint_of(
    document: Document, chunker: Chunker, model_name: str, max_length: int, recipe: str | None = None
) -> str:
    """The document's fingerprint (:func:`~e5_integrations.ingest._fingerprint.document_fingerprint`)
    under this chunker's resolved sizes; shared by both engines."""
    return document_fingerprint(
        document.id,
        document.source,
        document.text,
        document.metadata,
        model=model_name,
        max_length=max_length,
        chunk_tokens=chunker.chunk_tokens,
        overlap=chunker.overlap,
        recipe=recipe,
    )


def mark_chunks(chunks: list[PendingChunk], fingerprint: str, *, last: bool = True) -> list[PendingChunk]:
    """Put the document mark on chunk 0 of a document's ``chunks``.

    With ``last`` (the local engine) chunk 0 moves after the others, so it is written after
    them; without it (the Ray engine, whose writers run in parallel) only a document of one
    chunk is marked, and the others are returned unchanged. The chunk's content hash is
    unchanged (``PendingChunk.hash``); only the stored ``e5_content_hash`` value carries the mark.
    """
    if not chunks or (not last and len(chunks) != 1):
        return chunks
    first = chunks[0]
    value = mark_value(first.hash, fingerprint, len(chunks))
    marked = replace(first, metadata={**first.metadata, CONTENT_HASH_KEY: value})
    return [*chunks[1:], marked]


def _stored_value(chunk: PendingChunk) -> str:
    """The ``e5_content_hash`` value a chunk is written with (its hash, marked or not)."""
    value = chunk.metadata.get(CONTENT_HASH_KEY)
    return value if isinstance(value, str) else chunk.hash


def _kind(record: Record) -> int:
    """0: a plain record; 1: one with a document mark; 2: one with a file's or object's seal
    (the order they are written in)."""
    value = record.metadata.get(CONTENT_HASH_KEY)
    if not isinstance(value, str):
        return 0
    stored = parse_stored_hash(value)
    return 2 if stored.seal is not None else 1 if stored.fingerprint is not None else 0


def delete_stale_chunks(sink: Sink, doc_id: str, first: int) -> int:
    """Delete chunks ``first, first+1, ...`` of a document that now has fewer chunks.

    Returns how many were deleted. Idempotent, so an engine may retry it. Only ids that
    ``sink.fetch_hashes`` finds are deleted, and it finds only rows with e5's
    ``e5_content_hash``: a LangChain or LlamaIndex row that happens to have an id like
    ``"{doc}#{n}"`` is left alone.

    Raises:
        NotImplementedError: the sink cannot delete.
    """
    stale: list[str] = []
    while True:
        ids = [chunk_id(doc_id, index) for index in range(first, first + FETCH_BATCH)]
        found = sink.fetch_hashes(ids)
        stale.extend(chunk_id for chunk_id in ids if chunk_id in found)
        if len(found) < len(ids):
            break
        first += FETCH_BATCH
    if stale:
        sink.delete(stale)
        logger.info("deleted %d stale chunks of %r", len(stale), doc_id)
    return len(stale)


def prune_removed_documents(sink: Sink, documents: DuplicateIds, report: IngestReport) -> None:
    """Delete stored chunks whose document is not among ``documents`` (this run's sources).

    Only records that e5 wrote are candidates: ``Sink.scan`` gives a document id only for
    records with both ``document_id`` and e5's ``e5_content_hash`` (``e5_document_id``), so
    rows that a LangChain or LlamaIndex app added to the same collection are left alone even
    though LlamaIndex writes a ``document_id`` too. When
    the run skipped invalid records, nothing is pruned: their ids are unknown, and their
    stored chunks would be deleted for a mere typo in the source. A whole-file document that
    could not be parsed does not stop the prune: its id (the file id) is among
    ``documents``, so its stored chunks are kept.
    """
    if report.skipped_invalid:
        report.warnings.append(
            f"prune skipped: {report.skipped_invalid} invalid records were skipped, and the stored chunks "
            "of those documents would have been deleted; fix the records, then run again with "
            f"{option('prune', True)}"
        )
        return
    stale: list[str] = []
    foreign = 0
    for page in sink.scan():
        for record_id, document_id in page:
            if document_id is None:
                foreign += 1
            elif document_id not in documents:
                stale.append(record_id)
    for start in range(0, len(stale), FETCH_BATCH):
        sink.delete(stale[start : start + FETCH_BATCH])
    report.pruned = len(stale)
    if stale:
        logger.info("pruned %d chunks of documents no longer in the sources", len(stale))
    if foreign:
        report.warnings.append(
            f"prune left alone {foreign} records not written by e5 (without both {DOCUMENT_ID_KEY!r} "
            f"and {CONTENT_HASH_KEY!r}), e.g. rows an app added with LangChain or LlamaIndex"
        )


def upsert_in_batches(sink: Sink, records: Sequence[Record], max_records: int) -> int:
    """Upsert ``records`` in requests of at most ``max_records``; returns how many."""
    written = 0
    for start in range(0, len(records), max_records):
        batch = records[start : start + max_records]
        sink.upsert(batch)
        written += len(batch)
        logger.info("upserted %d records (%d of %d)", len(batch), written, len(records))
    return written


@dataclass(frozen=True)
class _Lookup:
    stored: dict[str, str]
    deleted: int


class _Prefetch(Iterator[Any]):
    """Runs a generator on a thread, ``depth`` items ahead of its consumer.

    The pipeline chunks (tokenizes) the next group here while the encoder embeds the
    current one. An exception in the generator is raised by ``__next__``; :meth:`close`
    stops the thread early.
    """

    def __init__(self, iterator: Iterator[Any], depth: int = 1, name: str = "e5-chunk") -> None:
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iterator,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: tuple[bool, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, iterator: Iterator[Any]) -> None:
        try:
            for item in iterator:
                if not self._put((True, item)):
                    return
            self._put((False, None))
        except BaseException as exc:  # handed to the consumer
            self._put((False, exc))

    def __next__(self) -> Any:
        ok, item = self._queue.get()
        if ok:
            return item
        if item is None:
            raise StopIteration
        raise item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


_Item = Document | _ObjectStart | _ObjectEnd
_T = TypeVar("_T")


def _paired(
    batch: list[_Item], marks: Future[dict[str, StoredMark]]
) -> Iterator[tuple[_Item, StoredMark | None]]:
    found = marks.result()
    for item in batch:
        yield item, found.get(item.id) if isinstance(item, Document) else None


def _batches(documents: Iterable[_T], size: int) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for document in documents:
        batch.append(document)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Progress:
    """tqdm over documents with tokens/s, or nothing."""

    def __init__(self, enabled: bool | None, total: int | None) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=total, unit="doc", desc="ingest", disable=not enabled if enabled is not None else None
        )
        self._start = time.perf_counter()
        self._tokens = 0

    def update(self, documents: int, tokens: int) -> None:
        self._tokens += tokens
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._bar.set_postfix({"tok/s": f"{self._tokens / elapsed:,.0f}"}, refresh=False)
        self._bar.update(documents)

    def close(self) -> None:
        self._bar.close()


def _check_sources(
    sources: Sequence[str | os.PathLike[str]],
    text_field: str,
    id_field: str | None,
    on_error: OnError,
    report: IngestReport,
    id_root: str | os.PathLike[str] | None = None,
    check: DocumentCheck | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    seals: LocalSeals | None = None,
) -> tuple[int, DuplicateIds]:
    """Pass 1: parse and validate every record file, list the whole-file documents (with the
    sink's ``check_document``, so what the store would refuse fails here, not midway); count
    problems and documents, and keep the document ids (as 16-byte digests) for pruning.

    With ``seals``, a file whose stored seal matches is not validated again (only its ids
    are read, when its records carry their own), and a file validated without a problem is
    noted so that the load pass seals it (see ``_file_seals``)."""
    count = 0
    ids = DuplicateIds(on_error, report.record_problem)
    files = iter_source_files(sources, id_root=id_root, include=include, exclude=exclude)
    for source, seal, stored in to_check(files, seals, ids):
        invalid = report.skipped_invalid
        for document in read_source_file(
            source,
            text_field=text_field,
            id_field=id_field,
            on_error=on_error,
            on_problem=report.record_problem,
            check=check,
            keep_empty=True,
            list_whole_files=True,
        ):
            if not ids.is_duplicate(document, source):
                count += 1
        if seals is not None and seal is not None and report.skipped_invalid == invalid:
            seals.validated(source, seal, stored)
    for problem in report.problems:
        logger.info("skipped %s", problem)
    return count, ids


def to_check(
    files: Iterable[SourceFile], seals: LocalSeals | None, ids: DuplicateIds
) -> Iterator[tuple[SourceFile, FileSeal | None, str | None]]:
    """The files a check pass must read, each with its seal and its probe's stored value
    (``None`` without ``seals``): the seals are looked up :data:`PROBE_BATCH` files at a time,
    and a file sealed as it is is counted unchanged (:meth:`LocalSeals.unchanged`) instead."""
    for batch in _batches(files, PROBE_BATCH):
        checked = seals.look_up(batch) if seals is not None else [(source, None, None) for source in batch]
        for source, seal, stored in checked:
            if seals is not None and seal is not None and seals.unchanged(source, seal, stored, ids):
                continue
            yield source, seal, stored


class LocalSeals:
    """The seals of local files in one run (see ``_file_seals``): which files the load pass
    skips, and which it seals once read. The Ray engine's driver uses it too (it seals what
    its job read after the job)."""

    def __init__(
        self,
        fields: Fields,
        settings: Mapping[str, Any],
        fetch: Callable[[Sequence[str]], dict[str, str]] | None,
        report: IngestReport,
    ) -> None:
        self.fields = fields
        self.settings = dict(settings)
        self.fetch = fetch  # None: the collection was empty, nothing can be sealed yet
        self.report = report
        #: ids of the files the load pass skips
        self.sealed: set[str] = set()
        #: their documents' ids: the load pass counts them as seen (a later file reusing one
        #: is a duplicate, as pass 1 reported)
        self.sealed_ids = DuplicateIds("skip", None)
        #: files validated without a problem, sealed at the end of their load
        self.clean: dict[str, _ObjectStart] = {}
        self._current: SourceFile | None = None

    def look_up(self, batch: Sequence[SourceFile]) -> list[tuple[SourceFile, FileSeal | None, str | None]]:
        try:
            return look_up(batch, self.fields, self.settings, self.fetch)
        except Exception as exc:  # an optimisation: the store's own checks come next
            # The collection is read before it is checked (ensure_collection runs after this
            # pass): one the sink will refuse (another schema, another dimension) or a store
            # that fails now is not a reason to fail here. No file is skipped; the load
            # pass's checks give the real error.
            self.report.warnings.append(
                f"file seals could not be looked up ({redact(str(exc))}); every file is read this run"
            )
            self.fetch = None
            return look_up(batch, self.fields, self.settings, None)

    def unchanged(self, source: SourceFile, seal: FileSeal, stored: str | None, ids: DuplicateIds) -> bool:
        """Whether ``source`` is sealed as it is: count it as unchanged and register its
        document ids (for ``--prune`` and the duplicate check), without validating it."""
        found = stored_seal(stored)
        if found is None or found.seal != seal.seal:
            return False
        try:
            if not ids.add_unique(record_ids(source, self.fields), copy_to=self.sealed_ids):
                return False  # an id another file has too: validated in full, and reported
        except (NotSealed, OSError, ValueError):
            return False
        self.sealed.add(source.file_id)
        self.report.files_unchanged += 1
        self.report.documents += found.documents
        self.report.chunks += found.chunks
        self.report.skipped_unchanged += found.chunks
        self.report.skipped_documents += found.documents
        return True

    def validated(self, source: SourceFile, seal: FileSeal, stored: str | None) -> None:
        """``source`` was validated without a problem: seal it once the load pass read it."""
        stale = stored_seal(stored) is not None
        self.clean[source.file_id] = _ObjectStart(seal.probe, seal.seal, stale=stale, counted=True)

    def skip(self, source: SourceFile) -> bool:
        return source.file_id in self.sealed

    def on_file(self, source: SourceFile) -> None:
        self._current = source

    def documents(self, documents: Iterable[Document]) -> Iterator[_Item]:
        """The load pass's documents, each clean file's between its start and end marks."""
        open_file: str | None = None
        for document in documents:
            if document.source != open_file:
                if open_file is not None:
                    yield _ObjectEnd(sealed=True)
                    open_file = None
                start = self._start(document.source)
                if start is not None:
                    open_file = document.source
                    yield start
            yield document
        if open_file is not None:
            yield _ObjectEnd(sealed=True)

    def _start(self, file_id: str) -> _ObjectStart | None:
        start = self.clean.pop(file_id, None)
        current = self._current
        if start is None or current is None or current.file_id != file_id:
            return None
        try:
            if file_seal(current, self.settings) != start.seal:
                return None  # changed since pass 1 validated it: not sealed this time
        except OSError:
            return None
        return start


class _KeptDocuments:
    """The documents of this run, for prune: those read, and those of remote objects skipped
    unread (their ids are the object's URL or ``URL:N``, see :func:`id_follows_url`)."""

    def __init__(self, read: DuplicateIds) -> None:
        self.read = read
        self._objects: set[bytes] = set()

    @staticmethod
    def _digest(url: str) -> bytes:
        return hashlib.blake2b(url.encode("utf-8"), digest_size=16).digest()

    def keep_object(self, url: str) -> None:
        """Keep every document whose id follows from ``url``."""
        self._objects.add(self._digest(url))

    def __contains__(self, document_id: object) -> bool:
        if not isinstance(document_id, str):
            return False
        if document_id in self.read or self._digest(document_id) in self._objects:
            return True
        head, sep, tail = document_id.rpartition(":")
        return bool(sep) and tail.isdigit() and self._digest(head) in self._objects


class _RemoteObjects:
    """The documents of sources that include URLs, read in one streaming pass.

    There is no check pass over remote sources (it would download every object twice, and a
    prefix of a million objects could not start embedding before it was read whole). Before
    an object is downloaded, the stored hash of its *probe chunk* (chunk 0 of its first
    document, when that document's id follows from the URL) is looked up, for
    :data:`PROBE_BATCH` listed objects at a time: when it carries the object's seal (the
    listing's ETag/version/size and this run's settings, see :func:`object_seal`), the store
    holds every row of this version, and the object is skipped unread. Otherwise it is read;
    when it was read whole, without a problem, and every document id follows from its URL,
    its probe chunk is written with the seal, after all its other chunks.
    """

    def __init__(
        self,
        run: _Run,
        files: Iterable[SourceFile],
        fields: tuple[str, str | None],
        on_error: OnError,
        check: DocumentCheck | None,
        settings: Mapping[str, Any],
    ) -> None:
        self.run = run
        self.files = files
        self.text_field, self.id_field = fields
        self.on_error = on_error
        self.check = check
        self.settings = dict(settings)
        self.read = DuplicateIds(on_error, run.report.record_problem)
        self.kept = _KeptDocuments(self.read)
        #: probe chunk and seal of the objects listed, to be read (at most a batch plus the read-ahead)
        self.seals: dict[str, _ObjectStart] = {}

    def __iter__(self) -> Iterator[Document | _ObjectStart | _ObjectEnd]:
        for source in read_ahead(self._changed()):
            yield from self._read(source, self.seals.pop(source.file_id, None))

    def _changed(self) -> Iterator[SourceFile]:
        """The listed files less the remote objects the store holds sealed, looked up
        :data:`PROBE_BATCH` at a time."""
        batch: list[SourceFile] = []
        for source in self.files:
            batch.append(source)
            if len(batch) >= PROBE_BATCH:
                yield from self._batch(batch)
                batch = []
        if batch:
            yield from self._batch(batch)

    def _batch(self, batch: list[SourceFile]) -> Iterator[SourceFile]:
        seals: dict[str, tuple[str, str]] = {}
        for source in batch:
            if isinstance(source, RemoteSourceFile):
                probe, seal = probe_chunk_id(source), object_seal(source, self.settings)
                if probe is not None and seal:
                    seals[source.file_id] = (probe, seal)
        stored = self.run.fetch_hashes([probe for probe, _ in seals.values()]) if seals else {}
        for source in batch:
            probe_seal = seals.get(source.file_id)
            if probe_seal is not None and seal_matches(stored.get(probe_seal[0]), probe_seal[1]):
                self.run.report.objects_unchanged += 1
                self.kept.keep_object(source.file_id)
                continue
            if probe_seal is not None:
                value = stored.get(probe_seal[0])
                stale = value is not None and parse_stored_hash(value).seal is not None
                self.seals[source.file_id] = _ObjectStart(*probe_seal, stale=stale)
            yield source

    def _read(
        self, source: SourceFile, probe_seal: _ObjectStart | None
    ) -> Iterator[Document | _ObjectStart | _ObjectEnd]:
        report = self.run.report
        if probe_seal is not None:
            yield probe_seal
        problems = report.skipped_invalid + report.skipped_unsupported
        follows = True
        documents = read_source_file(
            source,
            text_field=self.text_field,
            id_field=self.id_field,
            on_error=self.on_error,
            on_problem=report.record_problem,
            check=self.check,
            keep_empty=True,
        )
        for document in documents:
            if self.read.is_duplicate(document, source):
                continue
            follows = follows and id_follows_url(document.id, source.file_id)
            yield document
        if probe_seal is not None:
            yield _ObjectEnd(
                sealed=follows and report.skipped_invalid + report.skipped_unsupported == problems
            )


def nothing_to_ingest(sources: Sequence[str | os.PathLike[str]], report: IngestReport) -> str:
    """The message for sources that hold no document: what was found instead, and what
    would be read."""
    shown = ", ".join(str(source) for source in sources[:3]) + (", ..." if len(sources) > 3 else "")
    found: list[str] = []
    if report.skipped_unsupported:
        suffixes: dict[str, int] = {}
        for problem in report.problems:
            if problem.kind == UNSUPPORTED:
                suffix = os.path.splitext(problem.location)[1].lower() or "(no extension)"
                suffixes[suffix] = suffixes.get(suffix, 0) + 1
        kinds = ", ".join(
            f"{suffix} x{count}" for suffix, count in sorted(suffixes.items(), key=lambda kv: -kv[1])
        )
        found.append(f"{report.skipped_unsupported} files of unsupported types ({kinds})")
    if report.skipped_empty:
        found.append(f"{report.skipped_empty} empty documents")
    if report.skipped_invalid:
        found.append(f"{report.skipped_invalid} invalid records, skipped")
    what = (
        "; found only " + ", ".join(found)
        if found
        else "; found no files (hidden entries such as .git are not read)"
    )
    return (
        f"nothing to ingest in {shown}{what}. Documents are read from files ending in "
        f"{', '.join(SUPPORTED_EXTENSIONS)}; pass such files or folders that hold them"
    )


class _Run:
    """Pass 2 of one ingestion run (see the module docs)."""

    def __init__(
        self,
        sink: Sink,
        encoder: Embedder,
        chunker: Chunker,
        group_tokens: int,
        report: IngestReport,
        on_error: OnError = "fail",
    ):
        self.sink = sink
        self.encoder = encoder
        self.chunker = chunker
        self.group_tokens = group_tokens
        self.report = report
        self.on_error = on_error
        self.dim = encoder.dimension
        self.max_records = max(1, int(sink.max_batch_records(self.dim)))
        self.submit: Callable[..., Future[Any]] | None = None

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """Stored hashes of ``ids``, looked up on the store thread (the sink is used by one
        thread at a time)."""
        if self.submit is None:
            return self._fetch(ids)
        result: dict[str, str] = self.submit(self._fetch, list(ids)).result()
        return result
        #: False when the collection was empty as the run began: a run reads each document
        #: once, so no mark can be found, and the first run skips the mark lookups
        self.marks_possible: bool = True

    # -- building groups (chunk thread) --------------------------------------------------
    def _recipe(self) -> str | None:
        return recipe_key(getattr(self.encoder, "recipe", None))

    def _pending(self, document: Document, fingerprint: str) -> list[PendingChunk]:
        chunks = prepare_chunks(
            document, self.chunker, self.encoder.model_name, self.encoder.max_length, self._recipe()
        )
        return mark_chunks(chunks, fingerprint)

    def _ask_marks(
        self, batch: Sequence[_Item], submit: Callable[..., Future[Any]] | None
    ) -> Future[dict[str, StoredMark]]:
        """The stored marks of a batch of documents: one ``fetch_hashes`` call, on the store
        thread when there is one (a sink's client is used from one thread at a time)."""
        ids = (
            [item.id for item in batch if isinstance(item, Document) and item.text.strip()]
            if self.marks_possible
            else []
        )
        if submit is not None and ids:
            return submit(fetch_marks, self.sink.fetch_hashes, ids)
        done: Future[dict[str, StoredMark]] = Future()
        done.set_result(fetch_marks(self.sink.fetch_hashes, ids))
        return done

    def _with_marks(
        self, items: Iterable[_Item], submit: Callable[..., Future[Any]] | None
    ) -> Iterator[tuple[_Item, StoredMark | None]]:
        """Each document with its stored mark (object boundaries pass through with none); the
        marks of the next batch are asked for before this batch is chunked, so chunking does
        not wait behind the store's writes."""
        previous: tuple[list[_Item], Future[dict[str, StoredMark]]] | None = None
        for batch in _batches(items, FETCH_BATCH):
            current = (batch, self._ask_marks(batch, submit))
            if previous is not None:
                yield from _paired(*previous)
            previous = current
        if previous is not None:
            yield from _paired(*previous)

    def groups(
        self, documents: Iterable[_Item], submit: Callable[..., Future[Any]] | None = None
    ) -> Iterator[_Group]:
        """Chunked documents in groups of about ``group_tokens`` tokens. A document whose stored
        mark matches its fingerprint is counted as unchanged without being tokenized.

        The probe chunk of a remote object (chunk 0 of its first document) is held back and
        emitted after the object's other chunks, sealed when the object was read whole; the
        seal replaces that chunk's mark (one ``e5_content_hash`` value holds one or the other).
        """
        group = _Group()
        recipe = self._recipe()
        model, max_length = self.encoder.model_name, self.encoder.max_length
        probe: _ObjectStart | None = None
        held: PendingChunk | None = None  # the probe chunk of the remote object being read
        unseal: str | None = None  # its stale seal, cleared once the object yields a document
        in_object = [0, 0]  # documents and chunks of the object being read
        for item, mark in self._with_marks(documents, submit):
            if isinstance(item, _ObjectStart):
                probe, held, unseal = item, None, item.probe if item.stale else None
                in_object = [0, 0]
                continue
            document: Document | None = None
            count = 0
            if isinstance(item, _ObjectEnd):
                # written after every other chunk of the object: a run killed before it leaves
                # no seal, and the next run reads the object again
                chunks = []
                if held is not None and probe is not None:
                    seal = sealed_value(probe.seal, *in_object) if probe.counted else probe.seal
                    chunks = [_with_seal(held, seal) if item.sealed else held]
                probe, held, unseal = None, None, None
            else:
                document = item
                if unseal is not None:  # read, so the object's rows are about to change
                    group.unseal.append(unseal)
                    unseal = None
                fingerprint = fingerprint_of(document, self.chunker, model, max_length, recipe)
                if mark is not None and mark.fingerprint == fingerprint:
                    self.report.documents += 1
                    self.report.chunks += mark.chunks
                    self.report.skipped_unchanged += mark.chunks
                    self.report.skipped_documents += 1
                    group.documents_done += 1
                    in_object[0] += 1
                    in_object[1] += mark.chunks
                    continue
                chunks = self._pending(document, fingerprint)  # none when empty: probe (id, 0) deletes all
                count = len(chunks)
                in_object[0] += 1 if chunks else 0
                in_object[1] += count
                self.report.documents += 1 if chunks else 0
                self.report.chunks += count
                if mark is not None and mark.fingerprint is not None and count > 1:
                    group.unmark.append(document.id)  # before any of its chunks is written
                if probe is not None and held is None:
                    at = next((i for i, chunk in enumerate(chunks) if chunk.id == probe.probe), None)
                    if at is not None:
                        held, chunks = chunks[at], chunks[:at] + chunks[at + 1 :]
            for chunk in chunks:
                group.chunks.append(chunk)
                group.tokens += chunk.tokens
                if group.tokens >= self.group_tokens or len(group.chunks) >= MAX_GROUP_CHUNKS:
                    yield group
                    group = _Group()
            if document is not None:
                group.documents_done += 1
                group.probes.append((document.id, count))
        if group.chunks or group.documents_done:
            yield group

    # -- store calls (store thread) ------------------------------------------------------
    def _fetch(self, ids: Sequence[str]) -> dict[str, str]:
        stored: dict[str, str] = {}
        for start in range(0, len(ids), FETCH_BATCH):
            stored.update(self.sink.fetch_hashes(ids[start : start + FETCH_BATCH]))
        return stored

    def lookup(self, group: _Group) -> _Lookup:
        """Stored hashes of the group's chunks; delete chunks past each document's new end,
        the chunk 0 (with its stale mark) of documents about to be rewritten in parts, and
        the probe chunk (with its stale seal) of changed remote objects."""
        probe_ids = [chunk_id(doc_id, index) for doc_id, index in group.probes]
        stored = self._fetch([chunk.id for chunk in group.chunks] + probe_ids)
        deleted = 0
        for doc_id, index in group.probes:
            if chunk_id(doc_id, index) in stored:
                deleted += self._delete_stale(doc_id, index)
        if group.unmark or group.unseal:
            unmark = [chunk_id(doc_id, 0) for doc_id in group.unmark] + group.unseal
            try:
                self.sink.delete(unmark)
            except NotImplementedError:
                self.report.warnings.append(
                    f"the {self.sink.name} sink cannot delete, so stale document marks and object "
                    "seals were not cleared before rewriting; a run killed midway may leave them"
                )
            else:
                for key in unmark:  # written again, with the new mark, after the document's other chunks
                    stored.pop(key, None)
        return _Lookup(stored, deleted)

    def _delete_stale(self, doc_id: str, first: int) -> int:
        try:
            return delete_stale_chunks(self.sink, doc_id, first)
        except NotImplementedError:
            self.report.warnings.append(
                f"document {doc_id!r} shrank but the {self.sink.name} sink cannot delete; stale chunks remain"
            )
            return 0

    def write(self, records: list[Record]) -> int:
        """Upsert the plain records, then the marked ones (a chunk 0 that ends its document),
        then the sealed ones (a probe chunk that ends its file or object), each kind in requests
        of its own: a mark or a seal is acknowledged only after every other row of its document
        or file is (a store whose upsert is two steps, Milvus with its own keys, has finished
        both for them)."""
        kinds: tuple[list[Record], list[Record], list[Record]] = ([], [], [])
        for record in records:
            kinds[_kind(record)].append(record)
        return sum(upsert_in_batches(self.sink, kind, self.max_records) for kind in kinds)

    # -- embedding (main thread) ---------------------------------------------------------
    def embed(self, group: _Group, stored: Mapping[str, str]) -> list[Record]:
        todo = [
            chunk
            for chunk in group.chunks
            if not stored_unchanged(stored.get(chunk.id), _stored_value(chunk))
        ]
        self.report.skipped_unchanged += len(group.chunks) - len(todo)
        if not todo:
            return []
        todo, vectors = self._encode(todo)
        if vectors.shape != (len(todo), self.dim):
            raise RuntimeError(f"encoder returned shape {vectors.shape}, expected {(len(todo), self.dim)}")
        self.report.embedded += len(todo)
        self.report.tokens_embedded += sum(chunk.tokens for chunk in todo)
        return [
            Record(chunk.id, chunk.text, chunk.metadata, vector)
            for chunk, vector in zip(todo, vectors, strict=True)
        ]

    def _encode(self, todo: list[PendingChunk]) -> tuple[list[PendingChunk], np.ndarray]:
        """Vectors of ``todo``. A chunk the encoder cannot embed (it gives a zero or NaN
        vector) stops the run naming its document under ``on_error="fail"``; under ``"skip"``
        its document's chunks are left out of this call and reported, the rest embedded."""
        while True:
            try:
                texts = [chunk.text for chunk in todo]
                return todo, np.asarray(self.encoder.encode_documents(texts), dtype=np.float32)
            except InputError as exc:
                if exc.index is None or not 0 <= exc.index < len(todo):
                    raise
                bad = todo[exc.index]
                document = str(bad.metadata.get(DOCUMENT_ID_KEY, bad.id))
                if self.on_error != "skip":
                    raise SourceError(
                        f"chunk {bad.id!r} of document {document!r} cannot be embedded: {exc}; "
                        f"pass {option('on_error', 'skip')} to skip that document and go on"
                    ) from exc
                self.report.record_problem(
                    SourceProblem(INVALID, document, f"chunk {bad.id!r} cannot be embedded: {exc}")
                )
                todo = [chunk for chunk in todo if chunk.metadata.get(DOCUMENT_ID_KEY, chunk.id) != document]
                if not todo:
                    return [], np.empty((0, self.dim), dtype=np.float32)

    def run(self, documents: Iterable[Document | _ObjectStart | _ObjectEnd], progress: _Progress) -> None:
        """Embed group n while group n-1 is written, group n+1's hashes are fetched and
        group n+2 is chunked."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="e5-store") as store:
            self.submit = store.submit  # remote objects look their probe chunks up on the store thread
            try:
                self._loop(documents, progress, store.submit)
            except BaseException:
                store.shutdown(wait=True, cancel_futures=True)
                raise

    def _loop(
        self,
        documents: Iterable[Document | _ObjectStart | _ObjectEnd],
        progress: _Progress,
        submit: Callable[..., Future[Any]],
    ) -> None:
        groups = _Prefetch(self.groups(documents, submit))
        try:
            self._stream(groups, progress, submit)
        finally:
            groups.close()

    def _stream(
        self, groups: Iterator[_Group], progress: _Progress, submit: Callable[..., Future[Any]]
    ) -> None:
        group = next(groups, None)
        lookup = submit(self.lookup, group) if group is not None else None
        writing: Future[int] | None = None
        while group is not None and lookup is not None:
            found: _Lookup = lookup.result()
            self.report.deleted_stale += found.deleted
            following = next(groups, None)
            lookup = submit(self.lookup, following) if following is not None else None
            embedded_before = self.report.tokens_embedded
            records = self.embed(group, found.stored)
            if writing is not None:
                self.report.written += writing.result()
            writing = submit(self.write, records)
            progress.update(group.documents_done, self.report.tokens_embedded - embedded_before)
            group = following
        if writing is not None:
            self.report.written += writing.result()


def _chunker(encoder: Embedder, chunk_tokens: int | None, chunk_overlap: int | None) -> Chunker:
    """The run's chunker. The recipe's room for a chunk (its document template and special
    tokens left out) is known once the tokenizer is: a chunk size that does not fit fails
    here, before anything is written (the tokenizer loads, the weights do not)."""
    recipe = getattr(encoder, "recipe", None)
    text_limit = recipe.text_capacity(encoder.tokenizer, encoder.max_length) if recipe is not None else None
    return Chunker(
        encoder.tokenizer, chunk_tokens, chunk_overlap, max_length=encoder.max_length, text_limit=text_limit
    )


def ingest(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    sink: Sink,
    encoder: Embedder,
    *,
    chunk_tokens: int | None = None,
    chunk_overlap: int | None = None,
    text_field: str = "text",
    id_field: str | None = None,
    on_error: OnError = "fail",
    group_tokens: int | None = None,
    progress: bool | None = False,
    prune: bool = False,
    id_root: str | os.PathLike[str] | None = None,
    ocr: bool = False,
    parse_workers: int | None = None,
    parse_timeout: float | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    storage_options: Mapping[str, Any] | None = None,
    retry_seconds: float | None = None,
) -> IngestReport:
    """Load ``sources`` into ``sink``, embedding with ``encoder``; idempotent and resumable.

    Args:
        sources: files or directories of ``.txt``, ``.md``, ``.jsonl``, ``.csv``, ``.parquet``,
            and with the ``[documents]`` extra ``.pdf`` and the other document formats.
        sink: the collection to write (see :func:`open_sink`).
        encoder: an :class:`~e5_integrations.E5Encoder`, or a
            :class:`~e5_integrations.DeferredEncoder` to check the input and the store
            before the weights load.
        chunk_tokens: tokens per chunk; ``None`` → 512 (capped to ``max_length - 2``).
        chunk_overlap: tokens shared by consecutive chunks of one document; ``None`` →
            ``min(64, chunk_tokens // 4)``.
        text_field: field/column with the text in JSONL, CSV and parquet.
        id_field: field/column with the document id (default ``id`` when present).
        on_error: ``"fail"``: a malformed record, or one the store would refuse
            (``sink.check_document``), aborts before anything is written; ``"skip"``: it
            is skipped and reported.
        group_tokens: tokens per encoder call; default 4 × the encoder's ``batch_tokens``.
        progress: show a progress bar (``None``: only on a terminal).
        prune: after loading, delete the stored chunks of documents that are no longer in
            ``sources`` (a file deleted, a record removed). The whole collection is compared
            with this run's sources, so give every source of the collection in one run.
            Skipped (with a warning) when invalid records were skipped.
        id_root: make file ids (the ids of ``.txt``/``.md`` documents, and the prefix of
            line-numbered record ids) relative to this directory, so they survive moving
            the corpus to another machine or mount point. Default: each file's absolute
            real path. Either way a file has one id whatever path spelling, symlink or
            working directory reaches it; a file outside ``id_root`` is a ``SourceError``.
        ocr: read PDF pages without a text layer with Tesseract (``pytesseract`` and the
            ``tesseract`` program); default: report them.
        parse_workers: processes parsing whole-file documents (PDF, Office...) while the
            model embeds; default ``min(CPUs, 4)``; 0 parses in this process (no time limit).
        parse_timeout: seconds one file may take to parse (default 120); a file past it is
            unreadable (see ``on_error``), the run goes on.
        include: glob patterns; only files (or objects) matching one are read. A pattern
            with a ``/`` matches the path under the source given, one without the file name.
        exclude: glob patterns of files (or objects) not to read.
        storage_options: options of the remote filesystem for URL sources (``s3://``,
            ``gs://``, ``az://``, ``https://``): credentials, ``endpoint_url``. Never printed.
        retry_seconds: how long a transient failure of a remote source (throttled, reset)
            is retried; default as for the stores.

    With URL sources the run makes one streaming pass (no check pass: a malformed record
    under ``on_error="fail"`` stops the run where it is met, after what came before it was
    written), and remote objects whose stored rows carry their listed ETag/version are
    skipped without being downloaded (see :class:`_RemoteObjects`).

    Returns:
        An :class:`IngestReport`; ``report.embedded == 0`` when everything was stored already.

    Raises:
        SourceError: a malformed record (``on_error="fail"``), a missing source, or no
            document at all in the sources (the message says what was found instead).
        SchemaMismatchError: the collection exists with another dimension or metric.
        StoreUnavailableError: the store could not be reached, after retries.
        ConfigurationError: bad chunking or ``on_error`` arguments.
    """
    started = time.perf_counter()
    paths = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not paths:
        raise ConfigurationError("no sources given; pass files or directories to ingest")
    # Cheapest checks first, the model last: with a DeferredEncoder nothing below loads the
    # weights before the first embedding, so a bad input or store fails in seconds.
    recipe = getattr(encoder, "recipe", None)
    # sizes out of range fail now; the chunker checks them again against the recipe's room
    check_chunk_sizes(
        chunk_tokens, chunk_overlap, encoder.max_length, getattr(recipe, "text_token_cap", None)
    )
    if group_tokens is None:
        group_tokens = GROUP_BATCHES * encoder.batch_tokens
    if group_tokens < 1:
        raise ConfigurationError(f"group_tokens={group_tokens}; expected a positive number of tokens")
    report = IngestReport(store=sink.name, collection=sink.collection, model=encoder.model_name)

    # The sink's checks in its layout (resolving it: a --layout that disagrees with the
    # collection fails here, before anything is written); a duck-typed sink without the
    # hooks checks nothing more.
    document_check = getattr(sink, "document_check", None)
    check = document_check() if document_check is not None else getattr(sink, "check_document", None)
    layout = getattr(sink, "layout", None)
    report.layout = getattr(layout, "name", "")
    remote = any(is_remote(path) for path in paths)
    files: Iterator[SourceFile] | None = None
    document_ids: Any
    seals: LocalSeals | None = None
    if remote:
        files = iter_source_files(
            paths,
            id_root=id_root,
            include=include,
            exclude=exclude,
            storage_options=storage_options,
            retry_seconds=retry_seconds,
        )
        first = next(files, None)  # a missing bucket or an empty prefix fails before the store is touched
        if first is None:
            raise SourceError(nothing_to_ingest(paths, report))
        files = itertools.chain([first], files)
    total: int | None = None
    if not remote:
        # a collection that holds rows may hold seals: unchanged files are neither validated
        # again nor read by the load pass (see ``_file_seals``). The seal's settings are the
        # ones asked for (the chunker, which needs the tokenizer, is made after the input is
        # checked); what they resolve to follows from them and the model.
        fetch = sink.fetch_hashes if sink.dimension() is not None else None
        file_settings = seal_settings(
            model=encoder.model_name,
            max_length=encoder.max_length,
            recipe=recipe_key(recipe),
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
            text_field=text_field,
            id_field=id_field,
            ocr=ocr,
        )
        fields = Fields(text=text_field, id=id_field or None, ocr=ocr)
        seals = LocalSeals(fields, file_settings, fetch, report)
        total, document_ids = _check_sources(
            paths, text_field, id_field, on_error, report, id_root, check, include, exclude, seals
        )
        if total == 0 and not report.files_unchanged:
            raise SourceError(nothing_to_ingest(paths, report))
    chunker = _chunker(encoder, chunk_tokens, chunk_overlap)
    settings = {
        "model": encoder.model_name,
        "max_length": encoder.max_length,
        "recipe": recipe_key(recipe),
        "chunk_tokens": chunker.chunk_tokens,
        "chunk_overlap": chunker.overlap,
        "text_field": text_field,
        "id_field": id_field,
    }
    sink.begin_bulk_load()  # finalize() runs after the last upsert: deferred indexes
    sink.ensure_collection(encoder.dimension)
    run = _Run(sink, encoder, chunker, group_tokens, report, on_error)
    run.marks_possible = sink.count() > 0
    bar = _Progress(progress, total)
    pool = ParsePool(parse_workers, parse_timeout)
    try:
        documents: Iterable[Document | _ObjectStart | _ObjectEnd]
        if files is not None:
            objects = _RemoteObjects(run, files, (text_field, id_field), on_error, check, settings)
            documents, document_ids = objects, objects.kept
        else:
            assert seals is not None
            documents = seals.documents(
                iter_documents(
                    paths,
                    text_field=text_field,
                    id_field=id_field,
                    on_error=on_error,
                    on_problem=report.record_problem,  # pass 1 reported the rest
                    whole_file_problems_only=True,
                    id_root=id_root,
                    check=check,
                    keep_empty=True,  # zero chunks: its stored chunks, if any, are deleted
                    ocr=ocr,
                    pool=pool,
                    include=include,
                    exclude=exclude,
                    ids=DuplicateIds(on_error, None, also=seals.sealed_ids),
                    skip=seals.skip,
                    on_file=seals.on_file,
                )
            )
        run.run(documents, bar)
    finally:
        bar.close()
        pool.close()
    if remote and not (report.documents or report.objects_unchanged or report.skipped_empty):
        raise SourceError(nothing_to_ingest(paths, report))
    if prune:
        prune_removed_documents(sink, document_ids, report)
    sink.finalize()  # post-load step, e.g. PGVector builds its index after the bulk load
    report.seconds = time.perf_counter() - started
    report.retry_wait_seconds = sink.retry_wait_seconds
    return report


def search(
    query: str | np.ndarray,
    sink: Sink,
    encoder: Embedder | None = None,
    *,
    k: int = 10,
    task: Any = None,
) -> list[Hit]:
    """The ``k`` stored chunks nearest to ``query``, best first.

    Args:
        query: a question (embedded with ``encoder.encode_queries`` and ``task``'s
            instruction) or a ready vector of the collection's dimension.
        sink: the collection to search.
        encoder: needed when ``query`` is text.
        k: number of hits.
        task: a task name or instruction for the query (default: the encoder's default).
    """
    if k < 1:
        raise ConfigurationError(f"k={k}; expected a positive number of results")
    if isinstance(query, str):
        if encoder is None:
            raise ConfigurationError(
                "searching with a text query needs an encoder; pass encoder=E5Encoder(...)"
            )
        if task is None:
            vector = encoder.encode_queries([query])[0]
        else:
            vector = encoder.encode_queries([query], task=task)[0]
    else:
        vector = np.asarray(query, dtype=np.float32)
        if vector.ndim != 1:
            raise ConfigurationError(f"query vector has shape {vector.shape}; expected one vector (dim,)")
    _check_query_dimension(sink, vector, encoder if isinstance(query, str) else None)
    return sink.search(np.asarray(vector, dtype=np.float32), k)


def _check_query_dimension(sink: Sink, vector: np.ndarray, encoder: Embedder | None) -> None:
    """Raise ``SchemaMismatchError`` when the collection holds vectors of another dimension
    than the query's (a model other than the one the collection was ingested with)."""
    stored = sink.dimension()
    if stored is None or stored == vector.shape[-1]:
        return
    made_by = f"the model {encoder.model_name!r}" if encoder is not None else "the query vector"
    raise SchemaMismatchError(
        f"{sink.name} collection {sink.collection!r} holds {stored}-dimensional vectors, but "
        f"{made_by} gives {vector.shape[-1]}-dimensional ones; search with the model the collection "
        f"was ingested with (a {stored}-dimensional one): pass it as --model (model= in Python), "
        "or pass the --collection that was ingested with this model"
    )
