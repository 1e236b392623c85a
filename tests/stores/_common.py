"""Helpers shared by the sink tests: vectors, records, odd ids and the sink factory fixtures."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from e5_integrations.ingest import CONTENT_HASH_KEY, Record, Sink

__all__ = ["DIM", "ODD_IDS", "SinkFactory", "records", "sink_factory", "unit"]

DIM = 64
#: Chunk ids that break naive quoting, escaping or key limits.
ODD_IDS = [
    "it's a file.txt#0",
    'say "hi".md#1',
    "back\\slash\\path#2",
    "日本語/ファイル.txt#3",
    "emoji 🙂 and ünïcödé#4",
    "line\nbreak\ttab#5",
    "') or 1=1 --#6",
    "x" * 600 + "#7",  # longer than a 512-byte VARCHAR key
]

S = TypeVar("S", bound=Sink)

#: ``make(collection=None, **options) -> S``: what every ``*_sink`` fixture yields
#: (``SinkFactory[PGVectorSink]``; a bare ``SinkFactory`` makes any sink).
SinkFactory = Callable[..., S]


def unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit length along its last axis, as float32."""
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def records(n: int, dim: int = DIM, seed: int = 0, prefix: str = "docs/a.txt#") -> list[Record]:
    """``n`` records ``{prefix}{i}`` with text ``text {i}``, hash ``h{i}`` and random unit vectors."""
    vectors = unit(np.random.default_rng(seed).standard_normal((n, dim)))
    return [
        Record(f"{prefix}{i}", f"text {i}", {CONTENT_HASH_KEY: f"h{i}", "chunk_index": i}, vectors[i])
        for i in range(n)
    ]


def _is_open(sink: Sink) -> bool:
    # Chroma and Milvus set _closed, Qdrant drops _client; PGVector reconnects after close().
    return not getattr(sink, "_closed", False) and getattr(sink, "_client", sink) is not None


def sink_factory(cls: type[S], uri: str) -> Iterator[SinkFactory[S]]:
    """Body of a sink fixture: yield a factory of ``cls`` sinks on fresh collections (or
    ``collection=``; ``uri=`` overrides ``uri``), then drop and close what it made."""
    made: list[S] = []

    def make(collection: str | None = None, uri: str = uri, **options: Any) -> S:
        sink = cls(uri, collection or f"e5_test_{uuid.uuid4().hex[:12]}", **options)  # type: ignore[call-arg]
        made.append(sink)
        return sink

    yield make
    for sink in made:
        if _is_open(sink):
            try:
                sink.drop()
            finally:
                sink.close()
