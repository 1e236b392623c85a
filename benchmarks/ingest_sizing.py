"""Figures behind the Ray engine's sizing note: what one CPU core chunks, what one writer
upserts, per store, at e5-mistral's 4096 dims.

- Chunking: the ingestion chunker (Mistral tokenizer with offsets) on one thread, in
  tokens/s, to compare with what one GPU embeds (about 40k tokens/s on an H100 at best).
- Writing: rows/s of ``upsert`` requests sized as the pipeline sizes them, with 1 and 2
  concurrent writers (threads, each with its own sink, like Ray write tasks in separate
  processes), into a throwaway Postgres+pgvector and a ``chroma run`` server (or PG_DSN /
  CHROMA_URL).

Usage::

    python benchmarks/ingest_sizing.py --model .cache/e5-tiny [--rows 4000] [--dim 4096]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pgvector_recall import postgres
from e5_integrations._encoder import load_tokenizer
from e5_integrations.ingest import Chunker, Record, open_sink
from e5_integrations.ingest._pipeline import upsert_in_batches


def chunk_rate(model: str, seconds: float = 5.0) -> float:
    """Tokens/s of ``Chunker.split`` on one thread over 2,000-word English-like texts."""
    os.environ["RAYON_NUM_THREADS"] = "1"
    words = [
        "the",
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
        "under",
        "heavy",
        "load",
    ]
    rng = random.Random(0)
    texts = [" ".join(rng.choice(words) for _ in range(2000)) for _ in range(20)]
    chunker = Chunker(load_tokenizer(model), 512, 64)
    tokens, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for text in texts:
            tokens += sum(chunk.tokens for chunk in chunker.split(text))
    return tokens / (time.perf_counter() - start)


def write_rate(open_fn: Callable[[str], object], rows: int, dim: int, writers: int) -> float:
    """Rows/s upserted by ``writers`` concurrent sinks, each writing ``rows // writers`` rows."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    collection = f"sizing_{uuid.uuid4().hex[:8]}"
    sinks = [open_fn(collection) for _ in range(writers)]
    sinks[0].ensure_collection(dim)  # type: ignore[attr-defined]
    limit = sinks[0].max_batch_records(dim)  # type: ignore[attr-defined]
    text = "a passage of about five hundred tokens " * 60
    share = rows // writers

    def work(index: int) -> int:
        records = [
            Record(
                f"w{index}-{row}", text, {"source": "bench", "chunk_index": row}, vectors[index * share + row]
            )
            for row in range(share)
        ]
        return upsert_in_batches(sinks[index], records, limit)  # type: ignore[arg-type]

    start = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        written = sum(pool.map(work, range(writers)))
    elapsed = time.perf_counter() - start
    sinks[0].drop()  # type: ignore[attr-defined]
    for sink in sinks:
        sink.close()  # type: ignore[attr-defined]
    return written / elapsed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("E5_MODEL", ".cache/e5-tiny"))
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=4096)
    args = parser.parse_args(argv)

    print(f"chunker, one thread: {chunk_rate(args.model):,.0f} tokens/s")
    with ExitStack() as stack:
        dsn = os.environ.get("PG_DSN") or stack.enter_context(postgres())
        chroma = os.environ.get("CHROMA_URL")
        if chroma is None:
            from tests.stores._chroma_server import running_chroma_server

            root = Path(stack.enter_context(__import__("tempfile").TemporaryDirectory()))
            chroma = stack.enter_context(running_chroma_server(root))
        targets = {
            "pgvector": lambda name: open_sink("pgvector", dsn, name),
            "chroma": lambda name: open_sink("chroma", chroma, name),
        }
        for store, open_fn in targets.items():
            for writers in (1, 2):
                rate = write_rate(open_fn, args.rows, args.dim, writers)
                print(f"{store:9s} {writers} writer(s): {rate:,.0f} rows/s at {args.dim} dims")


if __name__ == "__main__":
    main()
