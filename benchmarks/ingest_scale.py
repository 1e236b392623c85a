"""How `e5 ingest` scales as a nightly job, per store: the pipeline and the store measured,
not the model.

The encoder is ``E5Encoder(backends=[HashBackend(dim)])``: the real tokenizer, planner and
pipeline, with the forward pass replaced by a fast deterministic one (a fixed random
projection of each text's token-id histogram), so rows/s is what the pipeline and the store
sustain. For each store, in one process per store (so peak RSS is that store's), on a JSONL
corpus of ``--rows`` one-chunk records:

- ``first``: the first run (every row embedded and written), rows/s;
- ``rerun``: a re-run with nothing changed, rows/s (chunks / seconds);
- ``rerun_1pct``: a re-run with 1 % of the records changed;
- ``prune_1pct``: ``prune=True`` with 1 % of the records removed;
- ``bulk``: the store's own bulk path writing the same rows into a fresh collection (pgvector
  ``COPY ... FORMAT BINARY``, Qdrant ``upload_points``, Milvus ``insert`` at 64 MB per
  request, Chroma ``add`` at ``get_max_batch_size()``), rows/s;
- ``peak_rss_mb`` per phase: the benchmark process's resident memory (sampled every 20 ms;
  for the embedded stores it includes the store itself; the servers run in their own process).

``--engine ray`` runs the ingest phases with ``ingest_ray`` on a local Ray cluster (the server
stores only): each embedding actor gets the same hash backend through ``backend_factory=``,
and ``peak_rss_mb`` is then the Ray driver's (this process). The vectors then have the
model's own dimension whatever ``--dim`` says (the driver sizes the collection from the model's
config).

Run it with another checkout's Python to measure that code on the same corpus, e.g. BEFORE
with ``/work/main/.venv/bin/python benchmarks/ingest_scale.py ...`` (this file puts its own
repository's root on ``sys.path`` for the test servers only; ``e5_integrations`` comes from
the interpreter's install).

Usage::

    python benchmarks/ingest_scale.py --model .cache/e5-tiny --rows 10000 --dim 128 \\
        --stores chroma,chroma-server,pgvector,milvus-server,qdrant --out results.json
    python benchmarks/ingest_scale.py --engine ray --stores pgvector,milvus-server ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STORES = ("chroma", "chroma-server", "pgvector", "milvus-server", "qdrant")
#: The stores the Ray engine can write (servers: many workers write at once).
RAY_STORES = ("chroma-server", "pgvector", "milvus-server")
_WORDS = [
    "vector",
    "store",
    "holds",
    "embeddings",
    "of",
    "passages",
    "and",
    "the",
    "model",
    "ranks",
    "them",
    "by",
    "cosine",
    "similarity",
    "while",
    "the",
    "index",
    "keeps",
    "recall",
    "high",
    "for",
    "nightly",
    "jobs",
    "over",
    "a",
    "corpus",
    "that",
    "mostly",
    "did",
    "not",
    "change",
]


class HashBackend:
    """A deterministic stand-in for the model: each sequence's pooled vector is a fixed random
    projection of its token-id histogram (1024 buckets). Same ids → same vector."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        import torch

        self._torch = torch
        self._table = np.random.default_rng(seed).standard_normal((1024, dim)).astype(np.float32)
        self._dim = dim

    @property
    def device(self) -> Any:
        return self._torch.device("cpu")

    @property
    def hidden_size(self) -> int:
        return self._dim

    def embed(self, batch: Sequence[Sequence[int]]) -> Any:
        counts = np.zeros((len(batch), 1024), dtype=np.float32)
        for row, ids in enumerate(batch):
            np.add.at(counts[row], np.asarray(list(ids), dtype=np.int64) % 1024, 1.0)
        return self._torch.from_numpy(counts @ self._table + 1e-3)


def hash_backends(dim: int) -> list[HashBackend]:
    """The Ray engine's ``backend_factory``: each embedding actor calls it for its backends."""
    return [HashBackend(dim)]


def _text(i: int, salt: str = "") -> str:
    words = [_WORDS[(i * 7 + k * 3) % len(_WORDS)] for k in range(24)]
    return f"Record {i}{salt}: " + " ".join(words) + "."


def write_corpus(path: Path, rows: int, changed: int = 0, removed: int = 0) -> None:
    """``rows`` one-chunk records; every ``changed``-th edited, every ``removed``-th left out."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            if removed and i % removed == 1:
                continue
            salt = " (edited)" if changed and i % changed == 0 else ""
            out.write(json.dumps({"id": f"r{i}", "text": _text(i, salt), "team": f"t{i % 7}"}) + "\n")


class PeakRss:
    """The largest resident set size of this process while the ``with`` block runs, in MB."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRss:
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)


@contextlib.contextmanager
def store_target(store: str, root: Path) -> Iterator[tuple[str, str]]:
    """``(store name, uri)`` of a fresh target; servers are started here and stopped after."""
    if store == "chroma":
        yield "chroma", str(root / "chroma")
    elif store == "qdrant":
        yield "qdrant", str(root / "qdrant")
    elif store == "chroma-server":
        from tests.stores._chroma_server import running_chroma_server

        (root / "chroma-server").mkdir()
        with running_chroma_server(root / "chroma-server") as url:
            yield "chroma", url
    elif store == "milvus-server":
        from tests.stores._milvus_server import running_milvus_server

        (root / "milvus-server").mkdir()
        with running_milvus_server(root / "milvus-server") as url:
            yield "milvus", url
    elif store == "pgvector":
        from benchmarks.pgvector_recall import postgres

        with postgres() as dsn:
            yield "pgvector", dsn
    else:
        raise SystemExit(f"unknown store {store!r}; expected one of {', '.join(STORES)}")


# -- each store's own bulk path ------------------------------------------------------------------
def _bulk_rows(encoder: Any, corpus: Path) -> tuple[list[str], list[str], list[dict[str, Any]], np.ndarray]:
    records = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    ids = [f"{r['id']}#0" for r in records]
    texts = [r["text"] for r in records]
    from e5_integrations.ingest._sink import CONTENT_HASH_KEY, SOURCE_KEY

    # The metadata e5 writes, its bookkeeping included, so that both paths write the same bytes.
    metadata = [
        {
            "team": r["team"],
            "document_id": r["id"],
            "chunk_index": 0,
            SOURCE_KEY: "records.jsonl",
            CONTENT_HASH_KEY: f"{n:064x}",
        }
        for n, r in enumerate(records)
    ]
    vectors = np.asarray(encoder.encode_documents(texts), dtype=np.float32)
    return ids, texts, metadata, vectors


def bulk_write(store: str, uri: str, rows: tuple[Any, ...]) -> float:
    """Seconds the store's own bulk path takes to write ``rows`` into a fresh collection."""
    ids, texts, metadata, vectors = rows
    name = f"bulk_{uuid.uuid4().hex[:8]}"
    dim = vectors.shape[1]
    if store == "chroma":
        import chromadb

        if uri.startswith("http"):
            host, port = uri.split("//")[1].split(":")
            client: Any = chromadb.HttpClient(host=host, port=int(port))
        else:
            client = chromadb.PersistentClient(path=uri)
        collection = client.create_collection(name, metadata={"hnsw:space": "cosine"})
        step = client.get_max_batch_size()
        started = time.perf_counter()
        for start in range(0, len(ids), step):
            end = start + step
            collection.add(
                ids=ids[start:end],
                documents=texts[start:end],
                metadatas=metadata[start:end],
                embeddings=vectors[start:end],
            )
        return time.perf_counter() - started
    if store == "pgvector":
        import psycopg
        from pgvector.psycopg import register_vector
        from psycopg.types.json import Jsonb

        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute(
                f"CREATE TABLE {name} (id text PRIMARY KEY, text text, metadata jsonb, embedding vector({dim}))"
            )
            started = time.perf_counter()
            with (
                conn.cursor() as cursor,
                cursor.copy(
                    f"COPY {name} (id, text, metadata, embedding) FROM STDIN WITH (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["text", "text", "jsonb", "vector"])
                for row in zip(ids, texts, metadata, vectors, strict=True):
                    copy.write_row((row[0], row[1], Jsonb(row[2]), row[3]))
            if INDEXED_BULK:  # the same searchable table as e5's: its HNSW index, built after the load
                conn.execute(f"CREATE INDEX ON {name} USING hnsw (embedding vector_cosine_ops)")
            return time.perf_counter() - started
    if store == "qdrant":
        from qdrant_client import QdrantClient, models

        client = QdrantClient(path=uri + "-bulk")
        client.create_collection(
            name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
        )
        points = (
            models.PointStruct(
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, i)),
                vector=v.tolist(),
                payload={"id": i, "text": t, "metadata": m},
            )
            for i, t, m, v in zip(ids, texts, metadata, vectors, strict=True)
        )
        started = time.perf_counter()
        client.upload_points(name, points, batch_size=256, parallel=1)  # local mode: one process
        elapsed = time.perf_counter() - started
        client.close()
        return elapsed
    if store == "milvus":
        from pymilvus import DataType, MilvusClient

        client = MilvusClient(uri=uri)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("text", DataType.VARCHAR, max_length=65535)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
        client.create_collection(name, schema=schema, index_params=index)
        per_row = 4 * dim + 200 + max(len(t) for t in texts)
        step = max(1, (64 * 2**20) // per_row)
        started = time.perf_counter()
        for start in range(0, len(ids), step):
            client.insert(
                name,
                [
                    {"pk": i, "text": t, "vector": v.tolist(), **m}
                    for i, t, m, v in zip(
                        ids[start : start + step],
                        texts[start : start + step],
                        metadata[start : start + step],
                        vectors[start : start + step],
                        strict=True,
                    )
                ],
            )
        client.flush(name)
        elapsed = time.perf_counter() - started
        client.close()
        return elapsed
    raise ValueError(store)


#: Set while the pgvector bulk path also builds e5's HNSW index (one figure of each).
INDEXED_BULK: list[bool] = []


def sink_write(store: str, uri: str, rows: tuple[Any, ...]) -> tuple[float, float]:
    """Seconds the sink's own write path (``begin_bulk_load``, ``ensure_collection``,
    ``upsert_in_batches`` at ``max_batch_records``, then ``finalize``: what ``e5 ingest``
    calls) takes to write ``rows`` into a fresh collection: the same rows as the bulk path,
    without the pipeline's reading, chunking and embedding. Returns (the upserts, the upserts
    and ``finalize``)."""
    from e5_integrations.ingest import open_sink
    from e5_integrations.ingest._pipeline import upsert_in_batches
    from e5_integrations.ingest._sink import Record

    ids, texts, metadata, vectors = rows
    dim = vectors.shape[1]
    records = [Record(*row) for row in zip(ids, texts, metadata, vectors, strict=True)]
    if store == "qdrant" and "://" not in uri:  # local mode locks its folder: a folder of its own
        uri = uri + "-sinkw"
    sink = open_sink(store, uri, f"sinkw_{uuid.uuid4().hex[:8]}")
    try:
        sink.begin_bulk_load()
        sink.ensure_collection(dim)
        started = time.perf_counter()
        upsert_in_batches(sink, records, max(1, int(sink.max_batch_records(dim))))
        written = time.perf_counter() - started
        sink.finalize()
        return written, time.perf_counter() - started
    finally:
        with contextlib.suppress(Exception):
            sink.drop()
        sink.close()


# -- one store ---------------------------------------------------------------------------------------
def _start_ray() -> None:
    """A local Ray cluster on this machine's cores whose workers import this repository (the
    embedding actors unpickle ``benchmarks.ingest_scale.hash_backends``)."""
    import ray

    repo = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    ray.init(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})


def run_store(
    store: str, model: str, rows: int, dim: int, bulk: bool, engine: str = "local"
) -> dict[str, Any]:
    """Every phase on one store, with ``engine`` ("local": ``ingest``; "ray": ``ingest_ray``
    on a local Ray cluster, the benchmark process being its driver); returns the figures."""
    import functools

    from e5_integrations import E5Encoder
    from e5_integrations.ingest import ingest, open_sink

    if engine == "ray" and store not in RAY_STORES:
        raise SystemExit(f"the ray engine writes to servers only: {', '.join(RAY_STORES)}, not {store!r}")
    if engine == "ray":  # ingest_ray's driver sizes the collection from the model's config
        from e5_integrations._encoder import model_dimension

        dim = model_dimension(model)
    encoder = E5Encoder(model, backends=[HashBackend(dim)], show_progress=False)
    result: dict[str, Any] = {"store": store, "engine": engine, "rows": rows, "dim": dim}
    if engine == "ray":
        import benchmarks.ingest_scale as by_name  # pickled by name: the workers import it
        from e5_integrations.ray import ingest_ray

        _start_ray()
        factory = functools.partial(by_name.hash_backends, dim)
    with (
        tempfile.TemporaryDirectory(prefix="e5-scale-") as tmp,
        store_target(store, Path(tmp)) as (name, uri),
    ):
        root = Path(tmp) / "corpus"
        root.mkdir()
        corpus = root / "records.jsonl"
        collection = f"scale_{uuid.uuid4().hex[:8]}"
        sink = open_sink(name, uri, collection)

        def phase(label: str, **options: Any) -> None:
            with PeakRss() as rss:
                if engine == "ray":
                    report = ingest_ray(
                        [root],
                        store=name,
                        uri=uri,
                        collection=collection,
                        model=model,
                        backend_factory=factory,
                        id_root=root,
                        progress=False,
                        **options,
                    )
                else:
                    report = ingest([root], sink, encoder, id_root=root, **options)
            seconds = report.seconds
            result[label] = {
                "seconds": round(seconds, 2),
                "rows_per_s": round(report.chunks / seconds) if seconds else None,
                "embedded": report.embedded,
                "written": report.written,
                "skipped_unchanged": report.skipped_unchanged,
                "skipped_documents": getattr(report, "skipped_documents", None),
                "pruned": report.pruned,
                "peak_rss_mb": rss.mb,
            }
            print(f"{store} ({engine}) {label}: {result[label]}", file=sys.stderr, flush=True)

        try:
            write_corpus(corpus, rows)
            phase("first")
            phase("rerun")
            write_corpus(corpus, rows, changed=100)
            phase("rerun_1pct")
            write_corpus(corpus, rows, changed=100, removed=100)
            phase("prune_1pct", prune=True)
            result["count_after"] = sink.count()
            if bulk:
                write_corpus(corpus, rows)
                data = _bulk_rows(encoder, corpus)
                seconds = bulk = bulk_write(name, uri, data)
                result["bulk"] = {"seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}
                print(f"{store} bulk: {result['bulk']}", file=sys.stderr, flush=True)
                if name == "pgvector":  # e5's searchable table: COPY, then its HNSW index (<= 2000 dims)
                    INDEXED_BULK.append(True)
                    seconds = bulk_indexed = bulk_write(name, uri, data)
                    INDEXED_BULK.clear()
                    result["bulk_indexed"] = {
                        "seconds": round(seconds, 2),
                        "rows_per_s": round(rows / seconds),
                    }
                    print(f"{store} bulk_indexed: {result['bulk_indexed']}", file=sys.stderr, flush=True)
                seconds, finalized = sink_write(name, uri, data)
                result["sink_write"] = {
                    "seconds": round(seconds, 2),
                    "rows_per_s": round(rows / seconds),
                    "of_bulk": round(bulk / seconds, 2),  # unrounded seconds: small runs too
                }
                if "bulk_indexed" in result:  # e5's table: its index built by finalize
                    result["sink_write"]["with_finalize_seconds"] = round(finalized, 2)
                    result["sink_write"]["of_bulk_indexed"] = round(bulk_indexed / finalized, 2)
                print(f"{store} sink_write: {result['sink_write']}", file=sys.stderr, flush=True)
        finally:
            with contextlib.suppress(Exception):
                sink.drop()
            sink.close()
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=".cache/e5-tiny", help="a model folder (its tokenizer is used)")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--no-bulk", action="store_true", help="skip the stores' own bulk paths")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help=f"ingest (local) or ingest_ray on a local Ray cluster (stores: {', '.join(RAY_STORES)})",
    )
    parser.add_argument("--label", default="", help="recorded with the figures (e.g. before/after)")
    parser.add_argument("--out", type=Path, help="append the figures here as JSON lines")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    stores = [s for s in args.stores.split(",") if s]
    if args.one:  # a child: one store, figures as one JSON line on stdout
        print(
            json.dumps(run_store(stores[0], args.model, args.rows, args.dim, not args.no_bulk, args.engine))
        )
        return
    failed = []
    for store in stores:
        command = [sys.executable, __file__, "--one", "--model", args.model, "--rows", str(args.rows)]
        command += ["--dim", str(args.dim), "--stores", store, "--engine", args.engine]
        command += ["--no-bulk"] if args.no_bulk else []
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            print(f"{store}: failed with exit code {done.returncode}", file=sys.stderr)
            failed.append(store)
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        figures["label"] = args.label
        print(json.dumps(figures), flush=True)
        if args.out is not None:
            with args.out.open("a", encoding="utf-8") as out:
                out.write(json.dumps(figures) + "\n")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (the other stores' figures are above)")


if __name__ == "__main__":
    main()
