"""The pieces of the Ray Data pipeline that run inside Ray workers.

Everything here is imported by Ray worker processes, so it holds no driver state: specs
are small frozen dataclasses shipped with the tasks, and the expensive objects (a sink's
client, a tokenizer) are cached per worker process so a long-lived worker opens them once.

Rows flowing between the stages are flat dicts of columns:

======================  ==========================================================
``id``                  chunk id, ``"{document id}#{chunk index}"``
``text``                chunk text
``metadata``            the stored metadata as canonical JSON (arrow-friendly)
``hash``                the ``e5_content_hash`` value written: the content hash, marked
                        (``_fingerprint``) on the chunk of a one-chunk document
``tokens``              tokens of the chunk (without BOS/EOS)
``document_id``         the document the chunk belongs to
``chunk_index``         position in the document
``n_chunks``            chunks of the document (for the stale-chunk probe)
``stands_for``          chunks the row counts for: 1, or for a summary row the chunks of
                        its batch found stored unchanged (those rows are dropped)
``unchanged``           a summary row: nothing to embed or write
``deleted``             stale chunks the lookup deleted (on summary rows only)
``marked_docs``         documents the chunk stage skipped by their mark, untokenized (on
                        their batch's counter row only; 0 elsewhere)
``marked_chunks``       the chunks of those documents
``embedding``           float32 vector (zeros on summary rows), after the embed stage
``problem``             on a problem row only: a whole-file document that could not be
                        parsed, a page left out, or a remote object's skipped record or
                        file, as JSON ``{kind, location, detail}``;
                        it is carried to the writers' report and never embedded or written
======================  ==========================================================

Whole-file documents (PDF, Office...) are parsed in the read tasks, each in a child process
under ``parse_timeout`` (a :class:`~e5_integrations.ingest._parsing.ParsePool` of one worker,
kept per Ray worker process), so a parser that hangs or crashes costs that file only.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from e5_integrations._embedder import Embedder
from e5_integrations._redact import redact
from e5_integrations.ingest._chunking import Chunker, chunk_id
from e5_integrations.ingest._file_seals import file_seal
from e5_integrations.ingest._fingerprint import fetch_marks, stored_unchanged
from e5_integrations.ingest._parsing import Parsed, ParsePool
from e5_integrations.ingest._pipeline import (
    FETCH_BATCH,
    delete_stale_chunks,
    fingerprint_of,
    mark_chunks,
    prepare_chunks,
    upsert_in_batches,
)
from e5_integrations.ingest._readers import is_whole_file, reader_for
from e5_integrations.ingest._registry import document_check, open_sink
from e5_integrations.ingest._sink import CONTENT_HASH_KEY, Record, Sink
from e5_integrations.ingest._sources import (
    Document,
    OnError,
    SourceFile,
    SourceProblem,
    Span,
    _fields,
    read_source_file,
)

if TYPE_CHECKING:
    from e5_integrations._backend import Backend

__all__ = [
    "BackendFactory",
    "EncoderSpec",
    "SinkSpec",
    "EmbedChunks",
    "chunk_documents",
    "lookup_stored",
    "read_file",
    "write_rows",
]

logger = logging.getLogger("e5_integrations.ray")

#: Builds an embedding actor's backends, once per actor, in the actor's process (see
#: ``ingest_ray(backend_factory=...)``).
BackendFactory = Callable[[], Sequence["Backend"]]

_lock = threading.Lock()
_SINKS: dict[SinkSpec, Sink] = {}
_POOLS: dict[float, ParsePool] = {}
_CHUNKERS: dict[tuple[str, int, int | None, int | None, str | None], Chunker] = {}


@dataclass(frozen=True)
class SinkSpec:
    """How a worker opens the run's sink: :func:`~e5_integrations.ingest.open_sink` arguments."""

    store: str
    uri: str
    collection: str
    options: tuple[tuple[str, Any], ...] = ()

    def __repr__(self) -> str:  # Ray may show task arguments: never the password or API key
        names = ", ".join(name for name, _ in self.options)
        return f"SinkSpec({self.store!r}, {redact(self.uri)!r}, {self.collection!r}, options=[{names}])"

    def open(self) -> Sink:
        """A fresh sink (the driver's own, closed by the driver)."""
        return open_sink(self.store, self.uri, self.collection, **dict(self.options))

    def cached(self) -> Sink:
        """This worker process's sink for the spec, opened on first use and kept open."""
        with _lock:
            sink = _SINKS.get(self)
            if sink is None:
                sink = self.open()
                _SINKS[self] = sink
            return sink


@dataclass(frozen=True)
class SourceSpec:
    """How a worker reaches remote sources: the filesystem's storage options (credentials,
    endpoint), the listing filters and the retry budget. Never printed (see ``__repr__``);
    the rows carry only canonical URLs."""

    storage_options: tuple[tuple[str, Any], ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    retry_seconds: float | None = None

    def __repr__(self) -> str:  # Ray may show task arguments: never a key or token
        names = ", ".join(name for name, _ in self.storage_options)
        return f"SourceSpec(storage_options=[{names}], include={self.include!r}, exclude={self.exclude!r})"

    def options(self) -> dict[str, Any]:
        """The storage options as the filesystem takes them."""
        return {name: json.loads(value) for name, value in self.storage_options}

    @classmethod
    def of(
        cls,
        storage_options: Mapping[str, Any] | None,
        include: Sequence[str],
        exclude: Sequence[str],
        retry_seconds: float | None,
    ) -> SourceSpec:
        """A hashable spec (option values as JSON)."""
        options = tuple(
            sorted((str(k), json.dumps(v, sort_keys=True)) for k, v in (storage_options or {}).items())
        )
        return cls(options, tuple(include), tuple(exclude), retry_seconds)


#: Object rows per batch out of the listing stage.
LIST_BATCH_OBJECTS = 1000


# -- stage 0: list remote prefixes (one task per source URL, streamed in batches) ----------------
def list_objects(batch: Mapping[str, np.ndarray], *, source_spec: SourceSpec) -> Iterator[dict[str, Any]]:
    """The objects under each source URL of ``batch``, as file rows in batches of
    :data:`LIST_BATCH_OBJECTS`: the listing runs on a worker, page by page, so the driver
    never holds it."""
    from e5_integrations.ingest._remote import iter_remote_files

    rows: list[dict[str, Any]] = []
    for url in batch["source"]:
        for remote in iter_remote_files(
            str(url),
            source_spec.options(),
            include=source_spec.include,
            exclude=source_spec.exclude,
            **({} if source_spec.retry_seconds is None else {"retry_seconds": source_spec.retry_seconds}),
        ):
            rows.append({**remote.to_row(), "path": "", "file_id": remote.file_id, "skip": "[]"})
            if len(rows) >= LIST_BATCH_OBJECTS:
                yield _columns(rows)
                rows = []
    if rows:
        yield _columns(rows)


def _columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        name: np.asarray([row[name] for row in rows], dtype=np.int64 if name == "size" else object)
        for name in rows[0]
    }


@dataclass(frozen=True)
class EncoderSpec:
    """How an embedding actor builds its :class:`~e5_integrations.E5Encoder`."""

    model: str
    dtype: str = "auto"
    #: resolved by the driver: ``max_length=``, else the recipe's default (see ``ingest_ray``)
    max_length: int = 4096
    batch_tokens: int = 16384
    attn_implementation: str | None = None
    chunk_tokens: int | None = None
    chunk_overlap: int | None = None
    #: a recipe name or :class:`~e5_integrations.Recipe`; ``None``: the model's preset.
    recipe: Any = None

    def recipe_key(self) -> str | None:
        """What the content hashes record of this spec's recipe (see ``content_hash``)."""
        return _recipe_key(self.model, self.recipe)

    def chunker(self) -> Chunker:
        """This worker's chunker (the model's tokenizer, loaded once per process)."""
        from e5_integrations._encoder import load_tokenizer

        key = (self.model, self.max_length, self.chunk_tokens, self.chunk_overlap, self.recipe_key())
        with _lock:
            chunker = _CHUNKERS.get(key)
            if chunker is None:
                from e5_integrations._presets import resolve_recipe

                tokenizer = load_tokenizer(self.model)
                chunker = Chunker(
                    tokenizer,
                    self.chunk_tokens,
                    self.chunk_overlap,
                    max_length=self.max_length,
                    text_limit=resolve_recipe(self.model, self.recipe).text_capacity(
                        tokenizer, self.max_length
                    ),
                )
                _CHUNKERS[key] = chunker
            return chunker


@functools.lru_cache(maxsize=16)
def _recipe_key(model: str, recipe: Any) -> str | None:
    from e5_integrations._presets import resolve_recipe
    from e5_integrations.ingest._chunking import recipe_key

    return recipe_key(resolve_recipe(model, recipe))


def _parse_pool(timeout: float | None) -> ParsePool:
    """This Ray worker process's one-worker parse pool for ``timeout``."""
    key = float(timeout) if timeout is not None else -1.0
    with _lock:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ParsePool(1, timeout)
        return pool


def _spans_json(spans: Iterable[Span]) -> str:
    return json.dumps(
        [[span.start, span.end, dict(span.metadata)] for span in spans], ensure_ascii=False, sort_keys=True
    )


def _spans(text: str) -> tuple[Span, ...]:
    return tuple(Span(int(start), int(end), metadata) for start, end, metadata in json.loads(text or "[]"))


def _problem_row(problem: SourceProblem, document_id: str) -> dict[str, Any]:
    detail = {"kind": problem.kind, "location": problem.location, "detail": problem.detail}
    return {
        "doc_id": document_id,
        "text": "",
        "source": "",
        "metadata": "{}",
        "spans": "[]",
        "problem": json.dumps(detail, ensure_ascii=False),
        "unsealed": 0,
    }


# -- stage 1: read (one task per file) ------------------------------------------------------
def read_file(
    row: Mapping[str, Any],
    *,
    text_field: str,
    id_field: str | None,
    on_error: OnError,
    store: str | None = None,
    layout: str = "e5",
    ocr: bool = False,
    parse_workers: int | None = None,
    parse_timeout: float | None = None,
    source_spec: SourceSpec | None = None,
    seal_settings: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The documents of one source file as rows ``{doc_id, text, source, metadata, spans,
    problem, unsealed}``.

    The driver's check pass has validated record files and reported their problems; here
    invalid records, and those ``store``'s ``check_document`` refuses in ``layout``, are skipped
    silently (``on_error`` only matters if the file changed since), and ``skip`` lists
    the ordinals of documents whose id an earlier file already used, exactly as the local
    engine drops them. A whole-file document is parsed here for the first time: in a child
    process under ``parse_timeout`` (in this task with ``parse_workers=0``); what cannot be
    read raises under ``on_error="fail"``, else becomes problem rows for the report. A row
    with a ``url`` is a remote object, read here, on the worker, straight from the store
    (with ``source_spec``'s storage options); its problems (invalid records, empty texts, a
    type without a reader...) are raised under ``on_error="fail"``, else become problem rows,
    counted in the report as the local engine counts them.

    A local file that the driver means to seal (``row["seal"]``, made with ``seal_settings``)
    is hashed again first: if its bytes are no longer those the driver checked, its rows say
    ``unsealed`` and the driver does not seal it (the seal must describe the bytes read).
    """
    source: SourceFile
    if row.get("url"):
        from e5_integrations.ingest._remote import RemoteSourceFile

        spec = source_spec or SourceSpec()
        retry = {} if spec.retry_seconds is None else {"retry_seconds": spec.retry_seconds}
        source = RemoteSourceFile.from_row(row, spec.options(), **retry)
    else:
        source = SourceFile(Path(row["path"]), row["file_id"])
    skip = set(json.loads(row["skip"]))
    unsealed = 0
    if seal_settings is not None and row.get("seal"):
        try:
            unsealed = int(file_seal(source, seal_settings) != row["seal"])
        except OSError:
            unsealed = 1
    rows: list[dict[str, Any]] = []
    check = document_check(store, layout) if store is not None else None
    problems: list[SourceProblem] = []
    parsed: Parsed | None = None
    reader = reader_for(source)
    whole = is_whole_file(source)
    if whole and reader is not None and parse_workers != 0:
        fields = _fields(text_field, id_field, on_error, ocr)
        parsed = _parse_pool(parse_timeout).submit(reader, source, fields).result()
    documents = read_source_file(
        source,
        text_field=text_field,
        id_field=id_field,
        on_error=on_error,
        # a local record file's problems were reported by the driver's check pass; a remote
        # object is read only here, so its problems travel to the report as problem rows
        on_problem=problems.append if whole or row.get("url") else None,
        check=check,
        keep_empty=True,
        ocr=ocr,
        parsed=parsed,
    )
    for ordinal, document in enumerate(documents):
        if ordinal in skip:
            continue
        rows.append(
            {
                "doc_id": document.id,
                "text": document.text,
                "source": document.source,
                "metadata": json.dumps(dict(document.metadata), ensure_ascii=False, sort_keys=True),
                "spans": _spans_json(document.spans),
                "problem": "",
                "unsealed": unsealed,
            }
        )
    rows.extend(_problem_row(problem, source.file_id) for problem in problems)
    return rows


# -- stage 2: chunk (CPU tasks) ----------------------------------------------------------------
#: The row of a document with zero chunks (``n_chunks`` 0): the lookup deletes its stored chunks.
_PROBE_ONLY: dict[str, Any] = {
    "id": "",
    "text": "",
    "metadata": "{}",
    "hash": "",
    "tokens": 0,
    "document_id": "",
    "chunk_index": -1,
    "n_chunks": 0,
    "problem": "",
    "marked_docs": 0,
    "marked_chunks": 0,
    "files": "",
}
#: ``n_chunks`` of a problem row: no chunk, no probe (its stored chunks stay).
PROBLEM_ROW = -1


_COUNT_COLUMNS = ("tokens", "chunk_index", "n_chunks", "marked_docs", "marked_chunks")


def chunk_documents(
    batch: Mapping[str, np.ndarray],
    *,
    spec: EncoderSpec,
    sink_spec: SinkSpec | None = None,
    tally_files: bool = False,
) -> dict[str, Any]:
    """Split documents into chunk rows with ids, metadata and content hashes.

    With ``sink_spec`` the stored marks of the batch's documents are read first (one
    ``fetch_hashes``): a document whose mark matches its fingerprint is not tokenized, only
    counted on the batch's counter row; a document about to be rewritten in parts has its
    chunk 0 (with the stale mark) deleted before any of its rows leave this stage.

    With ``tally_files`` the counter row also carries, in ``files``, each source file's
    documents, chunks and problems in this batch (``{file id: [documents, chunks, problems]}``,
    JSON; a file read from other bytes than the driver checked counts a problem): the driver
    adds them up to seal the files read whole (see :func:`add_file_tallies`). Local files
    only: with URL sources the driver seals nothing, and keeps no tally per object.
    """
    chunker = spec.chunker()
    recipe = spec.recipe_key()
    rows = list(
        zip(
            batch["doc_id"],
            batch["text"],
            batch["source"],
            batch["metadata"],
            batch["spans"],
            batch["problem"],
            strict=False,
        )
    )
    unsealed = np.asarray(batch["unsealed"])
    documents = [
        None
        if problem
        else Document(
            id=str(doc_id),
            text=str(text),
            source=str(source),
            metadata=json.loads(metadata),
            spans=_spans(str(spans)),
        )
        for doc_id, text, source, metadata, spans, problem in rows
    ]
    marks = {}
    sink = sink_spec.cached() if sink_spec is not None else None
    if sink is not None:
        ids = [document.id for document in documents if document is not None and document.text.strip()]
        for start in range(0, len(ids), FETCH_BATCH):
            marks.update(fetch_marks(sink.fetch_hashes, ids[start : start + FETCH_BATCH]))
    columns: dict[str, list[Any]] = {name: [] for name in _PROBE_ONLY}
    marked_docs = marked_chunks = 0
    unmark: list[str] = []
    files: dict[str, list[int]] = {}  # file id -> [documents, chunks, problems], as the local engine counts
    for position, (row, document) in enumerate(zip(rows, documents, strict=True)):
        if document is None:  # carried to the writers' report; nothing is probed or deleted for it
            for name, value in _PROBE_ONLY.items():
                columns[name].append(value)
            columns["document_id"][-1] = str(row[0])
            columns["n_chunks"][-1] = PROBLEM_ROW
            columns["problem"][-1] = str(row[-1])
            files.setdefault(str(row[0]), [0, 0, 0])[2] += 1  # a problem row's doc_id is its file's id
            continue
        tally = files.setdefault(document.source, [0, 0, 0])
        tally[2] += int(unsealed[position])
        fingerprint = fingerprint_of(document, chunker, spec.model, spec.max_length, recipe)
        mark = marks.get(document.id)
        if mark is not None and mark.fingerprint == fingerprint:
            marked_docs += 1
            marked_chunks += mark.chunks
            tally[0] += 1
            tally[1] += mark.chunks
            continue
        chunks = prepare_chunks(document, chunker, spec.model, spec.max_length, recipe)
        tally[0] += 1 if chunks else 0
        tally[1] += len(chunks)
        if sink is not None:
            chunks = mark_chunks(chunks, fingerprint, last=False)
            if mark is not None and mark.fingerprint is not None and len(chunks) > 1:
                unmark.append(chunk_id(document.id, 0))
        if not chunks:  # an empty document: one row that only carries the probe deleting its chunks
            for name, value in _PROBE_ONLY.items():
                columns[name].append(value)
            columns["document_id"][-1] = document.id
        for index, chunk in enumerate(chunks):
            columns["id"].append(chunk.id)
            columns["text"].append(chunk.text)
            columns["metadata"].append(json.dumps(chunk.metadata, ensure_ascii=False, sort_keys=True))
            columns["hash"].append(chunk.metadata.get(CONTENT_HASH_KEY, chunk.hash))
            columns["tokens"].append(chunk.tokens)
            columns["document_id"].append(document.id)
            columns["chunk_index"].append(index)
            columns["n_chunks"].append(len(chunks))
            columns["problem"].append("")
            columns["marked_docs"].append(0)
            columns["marked_chunks"].append(0)
            columns["files"].append("")
    if unmark and sink is not None:
        try:
            sink.delete(unmark)  # idempotent: a retried task deletes nothing more
        except NotImplementedError:
            logger.warning("the %s sink cannot delete; stale document marks were not cleared", sink.name)
    if marked_docs or (files and tally_files):  # the counter row: no chunk, no probe
        for name, value in _PROBE_ONLY.items():
            columns[name].append(value)
        columns["chunk_index"][-1] = _COUNTER_ROW
        columns["marked_docs"][-1] = marked_docs
        columns["marked_chunks"][-1] = marked_chunks
        columns["files"][-1] = json.dumps(files, ensure_ascii=False) if files and tally_files else ""
    return {
        name: np.asarray(values, dtype=np.int64 if name in _COUNT_COLUMNS else object)
        for name, values in columns.items()
    }


#: ``chunk_index`` of the row counting a batch's documents skipped by their marks.
_COUNTER_ROW = -2


# -- stage 3: skip what is stored, delete stale chunks (CPU tasks) -------------------------------
def lookup_stored(batch: dict[str, np.ndarray], *, sink_spec: SinkSpec) -> dict[str, np.ndarray]:
    """Drop chunks stored unchanged; delete chunks past each document's new last chunk.

    One batched read fetches the stored hashes of the chunks and of each document's
    probe (its chunk just past the new last one). Unchanged chunks are not passed on
    (nothing to embed or ship): one summary row (``unchanged``) carries their count in
    ``stands_for``, and the number of stale chunks deleted, to the writers' counters.
    Both steps are idempotent, so Ray may retry this task freely.
    """
    sink = sink_spec.cached()
    counts = np.asarray(batch["n_chunks"])
    chunks = counts > 0  # False: the probe-only row of an empty document, a problem or counter row
    problems = counts == PROBLEM_ROW
    counter = np.asarray(batch["chunk_index"]) == _COUNTER_ROW  # documents skipped by their marks
    ids = [str(value) for value in batch["id"]]
    first = ((np.asarray(batch["chunk_index"]) == 0) | (counts == 0)) & ~counter
    probes = {str(batch["document_id"][row]): int(batch["n_chunks"][row]) for row in np.flatnonzero(first)}
    wanted = [i for i, is_chunk in zip(ids, chunks, strict=False) if is_chunk]
    wanted += [chunk_id(doc_id, count) for doc_id, count in probes.items()]
    stored: dict[str, str] = {}
    for start in range(0, len(wanted), FETCH_BATCH):
        stored.update(sink.fetch_hashes(wanted[start : start + FETCH_BATCH]))
    deleted = 0
    for doc_id, count in probes.items():
        if chunk_id(doc_id, count) in stored:
            try:
                deleted += delete_stale_chunks(sink, doc_id, count)
            except NotImplementedError:
                logger.warning(
                    "document %r shrank but the %s sink cannot delete; stale chunks remain", doc_id, sink.name
                )
    unchanged = (
        np.asarray(
            [stored_unchanged(stored.get(i), str(h)) for i, h in zip(ids, batch["hash"], strict=False)],
            dtype=bool,
        )
        & chunks
    )
    keep = (~unchanged & chunks) | problems
    out = {name: np.asarray(column)[keep] for name, column in batch.items()}
    out["stands_for"] = np.where(problems[keep], 0, 1).astype(np.int64)
    out["unchanged"] = problems[keep].copy()  # a problem row: nothing to embed or write
    out["deleted"] = np.zeros(int(keep.sum()), dtype=np.int64)
    marked_docs = int(np.sum(np.asarray(batch["marked_docs"])[counter]))
    marked_chunks = int(np.sum(np.asarray(batch["marked_chunks"])[counter]))
    files: dict[str, list[int]] = {}
    add_file_tallies(files, (str(value) for value in np.asarray(batch["files"])[counter]))
    skipped = int(unchanged.sum()) + marked_chunks
    if skipped or deleted or marked_docs or files:
        summary: dict[str, Any] = dict.fromkeys(
            ("id", "text", "metadata", "hash", "document_id", "problem"), ""
        )
        summary["files"] = json.dumps(files, ensure_ascii=False) if files else ""
        summary.update(
            tokens=0,
            chunk_index=-1,
            n_chunks=0,
            stands_for=skipped,
            unchanged=True,
            deleted=deleted,
            marked_docs=marked_docs,
            marked_chunks=marked_chunks,
        )
        out = {name: np.append(out[name], np.asarray([summary[name]], dtype=out[name].dtype)) for name in out}
    return out


def add_file_tallies(total: dict[str, list[int]], tallies: Iterable[str]) -> None:
    """Add ``files`` columns (JSON ``{file id: [documents, chunks, problems]}``) into ``total``."""
    for text in tallies:
        if not text:
            continue
        for file_id, counts in json.loads(text).items():
            found = total.setdefault(file_id, [0, 0, 0])
            for position, value in enumerate(counts):
                found[position] += int(value)


# -- stage 4: embed (actor pool, one encoder per actor) -----------------------------------------
class EmbedChunks:
    """A Ray Data actor holding one :class:`~e5_integrations.E5Encoder` on its GPU(s).

    Ray sets ``CUDA_VISIBLE_DEVICES`` for an actor started with ``num_gpus``, so the actor
    sees its GPUs as ``cuda:0..n-1``; with no GPU it runs on the CPU. With
    ``backend_factory`` the encoder computes with the backends it returns instead (see
    ``ingest_ray``); the model still gives the tokenizer and the recipe.
    """

    def __init__(self, spec: EncoderSpec, backend_factory: BackendFactory | None = None) -> None:
        import ray
        from e5_integrations import E5Encoder

        gpus = len(ray.get_gpu_ids())
        device: str | list[str] | None = [f"cuda:{index}" for index in range(gpus)] if gpus else "cpu"
        backends = None
        if backend_factory is not None:
            backends, device = list(backend_factory()), None
        self.encoder: Embedder = E5Encoder(
            spec.model,
            device=device,
            backends=backends,
            dtype=spec.dtype,
            max_length=spec.max_length,
            batch_tokens=spec.batch_tokens,
            attn_implementation=spec.attn_implementation,
            recipe=spec.recipe,
            show_progress=False,
        )
        logger.info("embedding actor ready: %r", self.encoder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        todo = np.flatnonzero(~batch["unchanged"])  # the summary row of a batch is not embedded
        vectors = np.zeros((len(batch["id"]), self.encoder.dimension), dtype=np.float32)
        if len(todo):
            from e5_integrations._errors import InputError, SourceError

            try:
                vectors[todo] = self.encoder.encode_documents([str(batch["text"][row]) for row in todo])
            except InputError as exc:  # a zero or NaN vector: name the chunk, not its place in the batch
                if exc.index is None:
                    raise
                chunk = str(batch["id"][todo[exc.index]])
                raise SourceError(f"chunk {chunk!r} cannot be embedded: {exc}") from exc
        return {**batch, "embedding": vectors}


# -- stage 5: write (Datasink tasks) ----------------------------------------------------------
COUNTERS = (
    "chunks",
    "embedded",
    "tokens_embedded",
    "written",
    "skipped_unchanged",
    "skipped_documents",
    "deleted_stale",
)


def write_rows(
    batches: Iterable[Mapping[str, np.ndarray]], sink_spec: SinkSpec, max_records: int
) -> dict[str, Any]:
    """Upsert the embedded rows of ``batches``; returns this task's counters, under
    ``"problems"`` the problem rows' JSON (files that could not be parsed, pages left out),
    and under ``"files"`` the tallies of the source files (see :func:`chunk_documents`)."""
    sink = sink_spec.cached()
    counts: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    problems: list[str] = []
    counts["problems"] = problems
    files: dict[str, list[int]] = {}
    counts["files"] = files
    pending: list[Record] = []
    for batch in batches:
        add_file_tallies(files, (str(value) for value in batch["files"]))
        counts["chunks"] += int(np.sum(batch["stands_for"]))
        counts["deleted_stale"] += int(np.sum(batch["deleted"]))
        counts["skipped_documents"] += int(np.sum(batch["marked_docs"]))
        for row in range(len(batch["id"])):
            if batch["problem"][row]:
                problems.append(str(batch["problem"][row]))
                continue
            if batch["unchanged"][row]:
                counts["skipped_unchanged"] += int(batch["stands_for"][row])
                continue
            metadata = json.loads(batch["metadata"][row])
            pending.append(
                Record(
                    str(batch["id"][row]),
                    str(batch["text"][row]),
                    metadata,
                    np.asarray(batch["embedding"][row]),
                )
            )
            counts["embedded"] += 1
            counts["tokens_embedded"] += int(batch["tokens"][row])
            if len(pending) >= max_records:
                counts["written"] += upsert_in_batches(sink, pending, max_records)
                pending = []
    if pending:
        counts["written"] += upsert_in_batches(sink, pending, max_records)
    return counts
