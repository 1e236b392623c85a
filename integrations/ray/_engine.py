"""``ingest_ray``: the ingestion pipeline on Ray Data, for corpora that outgrow one GPU box.

The job is the local engine's, split into Ray Data stages::

    source files ──read (1 task/file)──▶ documents ──chunk (CPU tasks)──▶ chunks
        ──lookup (CPU tasks: skip stored-unchanged, delete stale)──▶
        ──embed (actor pool, one E5Encoder per actor on num_gpus GPUs)──▶
        ──E5StoreDatasink (write tasks, batched idempotent upserts)──▶ the store

The driver only scans the sources (the same check pass as the local engine: malformed
records fail the run before anything is written, duplicates and problems are reported, and
files sealed unchanged get no read task), creates the collection, adds up the writers'
counters into an :class:`~e5_integrations.ingest.IngestReport`, and seals the files the job
read whole (``Sink.set_content_hashes``, after the last row is written).

Same rows as the local engine: the chunker, ids (``"{document id}#{chunk index}"``),
metadata and content hashes come from the same functions, and every store write is an
upsert by id. So Ray may retry any task (a worker or an embedding actor that dies is
restarted and its batch re-run) and the store still ends with exactly one row per chunk;
a killed run started again skips what it stored.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import numpy as np

from e5_integrations._errors import ConfigurationError, SourceError, StoreError, for_front, option
from e5_integrations._recipe import Recipe
from e5_integrations._redact import redact
from e5_integrations.ingest._file_seals import seal_settings, sealed_value
from e5_integrations.ingest._fingerprint import parse_stored_hash
from e5_integrations.ingest._pipeline import (
    LocalSeals,
    delete_stale_chunks,
    nothing_to_ingest,
    prune_removed_documents,
    to_check,
)
from e5_integrations.ingest._readers import is_whole_file
from e5_integrations.ingest._readers._base import Fields
from e5_integrations.ingest._registry import document_check, infer_store, is_shared_store
from e5_integrations.ingest._remote import is_remote, sealed_hash
from e5_integrations.ingest._report import IngestReport
from e5_integrations.ingest._sink import Sink
from e5_integrations.ingest._sources import (
    Document,
    DocumentCheck,
    DuplicateIds,
    OnError,
    SourceFile,
    SourceProblem,
    iter_source_files,
    read_source_file,
)
from e5_integrations.ray._stages import (
    COUNTERS,
    BackendFactory,
    EmbedChunks,
    EncoderSpec,
    SinkSpec,
    SourceSpec,
    chunk_documents,
    list_objects,
    lookup_stored,
    read_file,
    write_rows,
)

__all__ = ["E5StoreDatasink", "ingest_ray", "is_shared_store"]

logger = logging.getLogger("e5_integrations.ray")

#: Chunk rows per embedding-actor call; the encoder sorts them into token-budget batches.
DEFAULT_EMBED_BATCH_ROWS = 256
#: Documents per chunking task call.
CHUNK_BATCH_DOCUMENTS = 64
#: Chunk rows per lookup task call.
LOOKUP_BATCH_ROWS = 512
#: Default concurrent write tasks per store.
DEFAULT_WRITERS = 2


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(
            f"the ray engine needs Ray Data ({exc.name or exc}); install it with: pip install 'e5-integrations[ray]'"
        ) from exc
    return ray


@functools.cache
def _datasink_class() -> type:
    """Build the Datasink subclass only once Ray is imported (Ray stays optional)."""
    from ray.data import Datasink

    class _E5StoreDatasink(Datasink):
        """Writes embedded chunk rows to one store with batched, idempotent upserts.

        Each write task opens the store once per worker process and upserts in requests
        of at most ``max_records`` (the sink's request limit); ``on_write_complete`` adds
        up the tasks' counters into :attr:`totals` on the driver.
        """

        def __init__(self, sink_spec: SinkSpec, max_records: int) -> None:
            self.sink_spec = sink_spec
            self.max_records = max_records
            self.totals: dict[str, int] = dict.fromkeys(COUNTERS, 0)
            self.problems: list[str] = []
            #: file id -> [documents, chunks, problems], for the driver's seals
            self.files: dict[str, list[int]] = {}

        def get_name(self) -> str:
            return f"E5Store({self.sink_spec.store})"

        @property
        def min_rows_per_write(self) -> int:
            return self.max_records

        def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
            from ray.data.block import BlockAccessor

            batches = cast(
                "Iterable[Mapping[str, np.ndarray]]",
                (BlockAccessor.for_block(block).to_numpy() for block in blocks),
            )
            return write_rows(batches, self.sink_spec, self.max_records)

        def on_write_complete(self, write_result: Any) -> None:
            for counts in write_result.write_returns:
                for name, value in counts.items():
                    if name == "problems":
                        self.problems.extend(value)
                    elif name == "files":
                        for file_id, tally in value.items():
                            found = self.files.setdefault(file_id, [0, 0, 0])
                            for position, count in enumerate(tally):
                                found[position] += int(count)
                    else:
                        self.totals[name] += int(value)

    _E5StoreDatasink.__name__ = _E5StoreDatasink.__qualname__ = "E5StoreDatasink"
    return _E5StoreDatasink


def E5StoreDatasink(sink_spec: SinkSpec, max_records: int) -> Any:
    """A ``ray.data.Datasink`` writing chunk rows (with ``embedding``) to ``sink_spec``'s store."""
    return _datasink_class()(sink_spec, max_records)


def _scan(
    paths: Sequence[str | os.PathLike[str]],
    text_field: str,
    id_field: str | None,
    on_error: OnError,
    report: IngestReport,
    id_root: str | os.PathLike[str] | None = None,
    check: DocumentCheck | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    seals: LocalSeals | None = None,
    unseal: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], int, DuplicateIds]:
    """The local engine's check pass, file by file (``check`` is the sink's
    ``check_document``): one read task per file, with the ordinals of the documents to
    drop because an earlier record has their id.

    With ``seals`` (see ``_file_seals``), a file whose stored seal matches is counted as
    unchanged and gets no read task (only its ids are read, for the duplicate check and
    ``prune``); a file validated without a problem is noted in ``seals.clean``, to be sealed
    after the job. A file to be read whose probe chunk holds a seal goes into ``unseal``
    (probe chunk id -> its content hash without the seal): the seal is cleared before the
    job writes any of the file's rows."""
    duplicates = DuplicateIds(on_error, report.record_problem)
    files: list[dict[str, Any]] = []
    total = 0
    listed = iter_source_files(paths, id_root=id_root, include=include, exclude=exclude)
    for source, seal, stored in to_check(listed, seals, duplicates):
        if unseal is not None and seal is not None and stored is not None:
            held = parse_stored_hash(stored)
            if held.seal is not None:
                unseal[seal.probe] = held.content_hash
        invalid = report.skipped_invalid
        kept, counted = _check_file(source, text_field, id_field, on_error, report, check, duplicates, files)
        total += counted
        if seals is not None and seal is not None and report.skipped_invalid == invalid and kept:
            seals.validated(source, seal, stored)
            files[-1]["seal"] = seal.seal  # its read task checks that it reads these bytes
    for problem in report.problems:
        logger.info("skipped %s", problem)
    return files, total, duplicates


def _check_file(
    source: SourceFile,
    text_field: str,
    id_field: str | None,
    on_error: OnError,
    report: IngestReport,
    check: DocumentCheck | None,
    duplicates: DuplicateIds,
    files: list[dict[str, Any]],
) -> tuple[int, int]:
    """Check one file's documents; add its read task to ``files``. Returns the documents
    kept and those counted (an empty record only deletes its chunks)."""
    skip: list[int] = []
    documents = read_source_file(
        source,
        text_field=text_field,
        id_field=id_field,
        on_error=on_error,
        on_problem=report.record_problem,
        check=check,
        keep_empty=True,
        list_whole_files=True,  # parsed once, by the read tasks
    )
    kept = total = 0
    for ordinal, document in enumerate(documents):
        if duplicates.is_duplicate(document, source):
            skip.append(ordinal)
        else:
            kept += 1
            # an empty record only deletes its chunks; a listed whole file counts until it fails
            total += 1 if document.text.strip() or is_whole_file(source) else 0
    if kept:
        files.append(
            {"path": str(source.path), "file_id": source.file_id, "skip": json.dumps(skip), "seal": ""}
        )
    return kept, total


def _plan_workers(ray: Any, gpus_per_worker: float | None, workers: int | None) -> tuple[float, int]:
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus else 0.0
    if gpus_per_worker < 0:
        raise ConfigurationError(f"gpus_per_worker={gpus_per_worker}; expected >= 0 (0 embeds on CPUs)")
    if gpus_per_worker > gpus:
        raise ConfigurationError(
            f"gpus_per_worker={gpus_per_worker:g} but the Ray cluster has {gpus:g} GPUs; "
            f"add GPU nodes, or pass {option('gpus_per_worker', 0)} to embed on CPUs (slow)"
        )
    if workers is None:
        workers = max(1, int(gpus // gpus_per_worker)) if gpus_per_worker else 1
    if workers < 1:
        raise ConfigurationError(f"workers={workers}; expected at least one embedding actor")
    if gpus_per_worker and workers * gpus_per_worker > gpus:
        raise ConfigurationError(
            f"{workers} workers x {gpus_per_worker:g} GPUs needs {workers * gpus_per_worker:g} GPUs; "
            f"the cluster has {gpus:g}. Lower {option('workers')} or {option('gpus_per_worker')}"
        )
    return gpus_per_worker, workers


def ingest_ray(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    store: str | None = None,
    uri: str | None = None,
    collection: str = "e5_docs",
    sink_options: Mapping[str, Any] | None = None,
    model: str | os.PathLike[str] | None = None,
    dtype: str = "auto",
    max_length: int | None = None,
    batch_tokens: int = 16384,
    attn_implementation: str | None = None,
    chunk_tokens: int | None = None,
    chunk_overlap: int | None = None,
    text_field: str = "text",
    id_field: str | None = None,
    on_error: OnError = "fail",
    ray_address: str | None = None,
    gpus_per_worker: float | None = None,
    workers: int | None = None,
    writers: int = DEFAULT_WRITERS,
    embed_batch_rows: int = DEFAULT_EMBED_BATCH_ROWS,
    write_batch_records: int | None = None,
    progress: bool | None = None,
    prune: bool = False,
    id_root: str | os.PathLike[str] | None = None,
    recipe: str | Recipe | None = None,
    layout: str | None = None,
    ocr: bool = False,
    parse_workers: int | None = None,
    parse_timeout: float | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    storage_options: Mapping[str, Any] | None = None,
    retry_seconds: float | None = None,
    backend_factory: BackendFactory | None = None,
) -> IngestReport:
    """Load ``sources`` into a store on a Ray cluster; same rows and report as ``ingest``.

    Args:
        sources: files or directories, at paths every Ray node can read (a shared or
            network file system; in local mode, any local path).
        store, uri, collection, sink_options: the target, as for
            :func:`~e5_integrations.ingest.open_sink`. The store must be a server
            (pgvector, or an ``http(s)://`` Chroma, Milvus or Qdrant): many Ray workers
            write it at once, which embedded files do not allow.
        model, dtype, max_length, batch_tokens, attn_implementation: each embedding
            actor's :class:`~e5_integrations.E5Encoder`.
        chunk_tokens, chunk_overlap, text_field, id_field, on_error, id_root: as for
            ``ingest``. The driver forms the file ids, so they are the local engine's.
        ray_address: ``None`` uses the running Ray session, else ``$RAY_ADDRESS``, else
            starts a local one; ``"auto"`` or ``ray://host:10001`` joins a cluster.
        gpus_per_worker: GPUs per embedding actor; default 1 when the cluster has GPUs,
            else 0 (CPU).
        workers: embedding actors; default cluster GPUs // ``gpus_per_worker`` (1 on CPU).
        writers: concurrent write tasks on the store.
        embed_batch_rows: chunks per actor call (the encoder batches them by tokens).
        write_batch_records: records per upsert request; default and maximum: the
            sink's request limit (``max_batch_records``). Lower it for a store that
            struggles with large requests.
        progress: Ray Data's progress bars (``None``: Ray's default).
        prune: after loading, delete the stored chunks of documents no longer in
            ``sources``, as for ``ingest`` (done by the driver).
        recipe: how the actors embed (a name from ``available_recipes()`` or a ``Recipe``);
            default: the model's preset, as for :class:`~e5_integrations.E5Encoder`.
        layout: whose schema the collection follows (``"e5"``, ``"langchain"``,
            ``"llama-index"``), as for :func:`~e5_integrations.ingest.open_sink`; default: the
            existing collection's, else ``e5``. The driver resolves it once and every worker
            writes in it.
        ocr: read PDF pages without a text layer with Tesseract (on every Ray node).
        parse_workers: ``0`` parses whole-file documents (PDF, Office...) inside the read
            tasks, without a time limit; any other value (the default) parses each in a
            child process of its read task, under ``parse_timeout``. Ray's tasks are the
            parallelism here.
        parse_timeout: seconds one file may take to parse (default 120); as for ``ingest``.
        include, exclude: glob filters on the files (or objects) to read, as for ``ingest``.
        storage_options, retry_seconds: for URL sources (``s3://``, ``gs://``, ``az://``,
            ``https://``), as for ``ingest``. With URL sources the driver neither lists nor
            reads: one Ray task lists each URL page by page and hands object rows (canonical
            URL, ETag, size) on in batches, and read tasks fetch each object straight from
            the store, so the driver's memory does not grow with the prefix. There is no
            check pass (a bad record under ``on_error="fail"`` fails the job where it is
            met), duplicate ids across objects are not detected, and ``prune`` is refused.
            Every object is read: the driver, which seals what the job read (see below),
            never lists the objects, so only the local engine seals them.
        backend_factory: a picklable callable that each embedding actor calls once to get
            the :class:`~e5_integrations._backend.Backend` objects its encoder computes
            with, as ``E5Encoder(backends=...)``, instead of loading ``model`` on the actor's
            devices: custom kernels, or a fast deterministic test double (``model`` still
            gives the tokenizer, the recipe and the content hashes, so rows and ids are the
            same; the vectors are the backends').

    Local files are sealed as the local engine seals them (``_file_seals``; the seals are
    the same, so a file sealed by one engine is skipped by the other): the driver's check pass
    gives a file whose stored seal matches no read task (its documents and chunks count as
    unchanged, ``files_unchanged``), clears the seal of a file it will read before the job
    writes anything, and once the job has written every row, seals each file that the check
    pass and its read task read without a problem, from the bytes checked, with
    ``Sink.set_content_hashes`` on its probe chunk (the job's rows land in no set order, so no
    row of it can carry the seal). A failed or killed job seals nothing.

    Returns:
        An :class:`~e5_integrations.ingest.IngestReport`, counted from what the write tasks
        acknowledged.

    Raises:
        ConfigurationError: an embedded store, or more GPUs asked for than the cluster has.
        SourceError, SchemaMismatchError, StoreUnavailableError: as for ``ingest``.
        ImportError: Ray Data is not installed (``pip install 'e5-integrations[ray]'``).
    """
    started = time.perf_counter()
    paths = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not paths:
        raise ConfigurationError("no sources given; pass files or directories to ingest")
    remote = [str(path) for path in paths if is_remote(path)]
    if remote and len(remote) != len(paths):
        raise ConfigurationError(
            "the ray engine reads either URLs or local paths in one run, not both; run it once for each"
        )
    if remote and prune:
        raise ConfigurationError(
            f"{option('prune')} with URL sources needs every document id of the run, which the ray engine's "
            "driver does not collect (it never reads the objects); prune with the local engine"
            + for_front(" (e5_integrations.ingest.ingest)", " (--engine local)")
        )
    for path in paths:
        if not remote and not os.path.exists(path):
            raise SourceError(f"source {str(path)!r} does not exist; pass files or directories to ingest")
    from e5_integrations.ingest._parsing import ParsePool

    ParsePool(parse_workers, parse_timeout).close()  # bad values fail here, not in a task
    if writers < 1 or embed_batch_rows < 1:
        raise ConfigurationError(
            f"writers={writers}, embed_batch_rows={embed_batch_rows}; expected positive ints"
        )
    store_name, resolved_uri = infer_store(store, uri)
    if not is_shared_store(store_name, resolved_uri):
        raise ConfigurationError(
            f"the ray engine writes from many processes, but {store_name} at {redact(resolved_uri)!r} is an "
            f"embedded single-process store; point {option('uri')} at a server (http://host:port, "
            "postgresql://...) "
            + for_front("or use the local engine (e5_integrations.ingest.ingest)", "or use --engine local")
        )
    from e5_integrations._encoder import _model_name, default_max_length, load_tokenizer, model_dimension
    from e5_integrations._presets import resolve_recipe

    model_name = _model_name(model)  # the same default as E5Encoder: $E5_MODEL, else e5-mistral
    if max_length is None:  # the recipe's default, resolved once here so every worker agrees
        resolved = resolve_recipe(model_name, recipe)
        tokenizer = load_tokenizer(model_name) if resolved.max_length is None else None
        max_length = default_max_length(model_name, resolved, tokenizer)
    spec = EncoderSpec(
        model=model_name,
        dtype=dtype,
        max_length=max_length,
        batch_tokens=batch_tokens,
        attn_implementation=attn_implementation,
        chunk_tokens=chunk_tokens,
        chunk_overlap=chunk_overlap,
        recipe=recipe,
    )
    spec.recipe_key()  # an unknown recipe name fails here, before any Ray work
    spec.chunker()  # fail here on a bad model path or chunk size, not in a thousand tasks
    dim = model_dimension(model_name)
    options = dict(sink_options or {})
    if layout is not None:
        options["layout"] = layout
    report = IngestReport(store=store_name, collection=collection, model=model_name)
    # The store is opened at the first document the check pass reads (sources without any
    # fail first, without a connection); the layout is resolved then, once, by the driver (a
    # --layout that disagrees with the collection fails before any Ray work), and every
    # worker opens its sink in that layout.
    opening = _LayoutCheck(SinkSpec(store_name, resolved_uri, collection, tuple(sorted(options.items()))))
    source_spec = SourceSpec.of(storage_options, include, exclude, retry_seconds)
    files: list[dict[str, Any]] | None
    seals: LocalSeals | None = None
    unseal: dict[str, str] = {}  # probe chunks of files to read whose stored seal is cleared first
    try:
        if remote:
            # the driver only checks that the first URL lists (a missing bucket fails here)
            first = next(
                iter_source_files(
                    remote[:1], include=include, exclude=exclude, storage_options=storage_options
                ),
                None,
            )
            if first is None:
                raise SourceError(nothing_to_ingest(paths, report))
            files, total, document_ids = None, 0, None
        else:
            seals = LocalSeals(
                Fields(text=text_field, id=id_field or None, ocr=ocr),
                seal_settings(
                    model=model_name,
                    max_length=max_length,
                    recipe=spec.recipe_key(),
                    chunk_tokens=chunk_tokens,
                    chunk_overlap=chunk_overlap,
                    text_field=text_field,
                    id_field=id_field,
                    ocr=ocr,
                ),
                opening.fetch_hashes,
                report,
            )
            files, total, document_ids = _scan(
                paths,
                text_field,
                id_field,
                on_error,
                report,
                id_root,
                opening,
                include,
                exclude,
                seals,
                unseal,
            )
            if total == 0 and not report.files_unchanged:
                raise SourceError(nothing_to_ingest(paths, report))
        sink = opening.sink()
    except BaseException:
        opening.close()
        raise
    try:
        options["layout"] = report.layout = sink.layout.name
        sink_spec = SinkSpec(store_name, resolved_uri, collection, tuple(sorted(options.items())))
        report.documents += total  # and those of the sealed files, counted by the check pass
        sink.begin_bulk_load()  # finalize() runs after the last upsert: deferred indexes
        sink.ensure_collection(dim)
        max_records = max(1, int(sink.max_batch_records(dim)))
        if write_batch_records is not None:
            if write_batch_records < 1:
                raise ConfigurationError(
                    f"write_batch_records={write_batch_records}; expected a positive int"
                )
            max_records = min(max_records, write_batch_records)
        if unseal:
            _clear_seals(sink, unseal, report)
        if files or remote:
            totals, problems, tallies = _run(
                files if files is not None else remote,
                spec,
                sink_spec,
                max_records,
                {
                    "text_field": text_field,
                    "id_field": id_field,
                    "on_error": on_error,
                    "ocr": ocr,
                    "parse_workers": parse_workers,
                    "parse_timeout": parse_timeout,
                },
                ray_address,
                gpus_per_worker,
                workers,
                writers,
                embed_batch_rows,
                progress,
                source_spec,
                backend_factory,
                seals.settings if seals is not None else None,
            )
            for name in COUNTERS:  # added to the sealed files' counts
                setattr(report, name, getattr(report, name) + totals[name])
            for problem in sorted(problems):  # the order tasks finished in is not the sources'
                report.record_problem(SourceProblem(**json.loads(problem)))
            if not remote:  # URL sources: the driver counted no documents
                report.documents -= report.skipped_unreadable
            if seals is not None and files:
                _seal_files(sink, seals, files, tallies, report)
        if remote:
            report.warnings.append(
                "documents are not counted by the ray engine for URL sources (the driver does not read them); "
                "chunks are"
            )
        if prune and document_ids is not None:
            prune_removed_documents(sink, document_ids, report)
        sink.finalize()
    finally:
        sink.close()
    report.seconds = time.perf_counter() - started
    report.retry_wait_seconds = sink.retry_wait_seconds  # the driver's (workers retry on their own)
    return report


def _raise_source_error(exc: BaseException) -> None:
    """Raise the ``SourceError`` a Ray task failed with (an unreadable file under
    ``on_error="fail"``), unwrapped from Ray's task errors, so both engines raise the same."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SourceError):
            raise SourceError(str(current)) from exc
        for linked in (current.__cause__, current.__context__, getattr(current, "cause", None)):
            if isinstance(linked, BaseException):
                todo.append(linked)
    # Ray may hand back only the traceback's text: the worker's SourceError is its last word
    found = re.findall(r"e5_integrations\._errors\.SourceError: (.+)", str(exc))
    if found:
        raise SourceError(found[-1].strip()) from exc


class _LayoutCheck:
    """The store's ``check_document`` in the collection's layout, for the driver's check pass;
    it opens the sink (and resolves the layout) at the first document, so a source without
    documents never touches the store."""

    def __init__(self, spec: SinkSpec) -> None:
        self._spec = spec
        self._sink: Sink | None = None
        self._check: Callable[[Document], str | None] | None = None
        self._empty: bool | None = None

    def __call__(self, document: Document) -> str | None:
        if self._check is None:
            self._check = document_check(self._spec.store, self.sink().layout.name)
        return self._check(document)

    def sink(self) -> Sink:
        """The driver's sink, opened on first use."""
        if self._sink is None:
            self._sink = self._spec.open()
        return self._sink

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """The driver sink's ``fetch_hashes`` for the check pass's seal lookups (nothing is
        stored while the collection does not exist)."""
        sink = self.sink()
        if self._empty is None:
            self._empty = sink.dimension() is None
        return {} if self._empty else sink.fetch_hashes(ids)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()


#: Probe chunks per ``fetch_hashes`` / ``set_content_hashes`` call of the driver's seals.
SEAL_BATCH = 1000


def _clear_seals(sink: Sink, unseal: Mapping[str, str], report: IngestReport) -> None:
    """Clear the stored seals of files about to be read again (their rows are about to
    change: a job killed midway must not leave a seal that a file changed back would
    match): the probe chunks keep their content hash without the seal. Where the sink
    cannot set hashes, the probe chunk's document is deleted whole (the job writes it
    again; deleting chunk 0 alone would hide the rest from the stale-chunk check of a
    document that became empty)."""
    probes = list(unseal)
    for start in range(0, len(probes), SEAL_BATCH):
        part = {probe: unseal[probe] for probe in probes[start : start + SEAL_BATCH]}
        try:
            sink.set_content_hashes(part)
        except NotImplementedError:
            try:
                for probe in part:
                    delete_stale_chunks(sink, probe.rpartition("#")[0], 0)
            except NotImplementedError:
                report.warnings.append(
                    f"the {sink.name} sink can neither set content hashes nor delete: the seals of "
                    "files read again were not cleared before rewriting; a run killed midway may leave them"
                )
                return


def _seal_files(
    sink: Sink,
    seals: LocalSeals,
    files: Sequence[Mapping[str, Any]],
    tallies: Mapping[str, Sequence[int]],
    report: IngestReport,
) -> None:
    """After a job that wrote every row: seal each file the check pass validated without a
    problem and that its read task read without one, from the bytes checked (see
    :func:`~e5_integrations.ray._stages.read_file`), on its probe chunk (chunk 0 of its first
    document) with the file's documents and chunks (see ``_file_seals``); the next run skips
    it unread. The seal is written alone, by
    ``Sink.set_content_hashes``: the job's rows landed in no set order, so no row of it
    could carry the seal."""
    todo: list[tuple[str, str, Sequence[int]]] = []
    for row in files:
        start = seals.clean.get(row["file_id"])
        tally = tallies.get(row["file_id"])
        if start is None or tally is None or tally[2] or not tally[0]:
            continue  # a problem in a read task, or no chunk: not sealed, read again next run
        todo.append((start.probe, start.seal, tally))
    sealed = 0
    for begin in range(0, len(todo), SEAL_BATCH):
        part = todo[begin : begin + SEAL_BATCH]
        try:
            stored = sink.fetch_hashes([probe for probe, _, _ in part])
            values = {
                probe: sealed_hash(
                    parse_stored_hash(stored[probe]).content_hash,
                    sealed_value(seal, int(tally[0]), int(tally[1])),
                )
                for probe, seal, tally in part
                if probe in stored  # an empty first document has no chunk 0 to carry it
            }
            sealed += sink.set_content_hashes(values) if values else 0
        except NotImplementedError:
            report.warnings.append(
                f"the {sink.name} sink cannot set content hashes (Sink.set_content_hashes), so the ray "
                "engine does not seal files in it: every file is read again on each run"
            )
            return
        except StoreError as exc:  # every row is written: a seal only spares the next run's reading
            report.warnings.append(
                f"files were not sealed after the job ({redact(str(exc))}): their rows are all written, "
                "and the next run reads them again"
            )
            return
    logger.info("sealed %d of %d files", sealed, len(todo))


def _run(
    files: list[dict[str, Any]] | list[str],
    spec: EncoderSpec,
    sink_spec: SinkSpec,
    max_records: int,
    read_options: dict[str, Any],
    ray_address: str | None,
    gpus_per_worker: float | None,
    workers: int | None,
    writers: int,
    embed_batch_rows: int,
    progress: bool | None,
    source_spec: SourceSpec | None = None,
    backend_factory: BackendFactory | None = None,
    seal_settings: Mapping[str, Any] | None = None,
) -> tuple[dict[str, int], list[str], dict[str, list[int]]]:
    ray = _import_ray()
    started_here = False
    if not ray.is_initialized():
        ray.init(address=ray_address, log_to_driver=logger.isEnabledFor(logging.INFO))
        started_here = True
    elif ray_address is not None:
        logger.warning(
            "a Ray session is already running in this process; ignoring ray_address=%r", ray_address
        )
    try:
        gpus, actors = _plan_workers(ray, gpus_per_worker, workers)
        context = ray.data.DataContext.get_current()
        if progress is not None:
            context.enable_progress_bars = progress
        logger.info(
            "ray ingest: %d files, %d embedding actors x %g GPUs, %d writers",
            len(files),
            actors,
            gpus,
            writers,
        )
        if files and isinstance(files[0], str):  # URLs: listed by one task each, streamed in batches
            listed = ray.data.from_items([{"source": url} for url in files], override_num_blocks=len(files))
            sources = listed.map_batches(
                list_objects, batch_size=1, batch_format="numpy", fn_kwargs={"source_spec": source_spec}
            )
        else:
            sources = ray.data.from_items(files, override_num_blocks=len(files))
        dataset = (
            sources.flat_map(
                read_file,
                fn_kwargs={
                    **read_options,
                    "seal_settings": seal_settings,
                    "store": sink_spec.store,
                    "layout": dict(sink_spec.options).get("layout", "e5"),
                    "source_spec": source_spec,
                },
            )
            .map_batches(
                chunk_documents,
                batch_size=CHUNK_BATCH_DOCUMENTS,
                batch_format="numpy",
                fn_kwargs={"spec": spec, "sink_spec": sink_spec, "tally_files": seal_settings is not None},
            )
            .map_batches(
                lookup_stored,
                batch_size=LOOKUP_BATCH_ROWS,
                batch_format="numpy",
                fn_kwargs={"sink_spec": sink_spec},
            )
            .map_batches(
                EmbedChunks,
                batch_size=embed_batch_rows,
                batch_format="numpy",
                fn_constructor_kwargs={"spec": spec, "backend_factory": backend_factory},
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_gpus=gpus or None,
                num_cpus=1 if not gpus else None,
            )
        )
        datasink = E5StoreDatasink(sink_spec, max_records)
        try:
            dataset.write_datasink(datasink, concurrency=writers)
        except Exception as exc:
            _raise_source_error(exc)
            raise
        return dict(datasink.totals), list(datasink.problems), datasink.files
    finally:
        if started_here:
            ray.shutdown()
