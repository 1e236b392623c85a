"""``Sink.scan``: every stored record as ``(id, document id)`` pages, on each real engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from e5_integrations.ingest import CONTENT_HASH_KEY, DOCUMENT_ID_KEY, Record

pytestmark = pytest.mark.integration


def check_scan(make: Callable[..., Any]) -> None:
    sink = make()
    assert list(sink.scan()) == []  # no collection yet: nothing, no error
    sink.ensure_collection(8)
    rng = np.random.default_rng(0)
    expected = []
    records = []
    for index in range(25):
        document = f"doc-{index % 7}"
        records.append(Record(f"{document}#{index}", "text", {DOCUMENT_ID_KEY: document, CONTENT_HASH_KEY: "h"},
                              rng.standard_normal(8).astype(np.float32)))
        expected.append((f"{document}#{index}", document))
    records.append(Record("written-by-someone-else", "text", {"lang": "en"}, rng.standard_normal(8).astype(np.float32)))
    expected.append(("written-by-someone-else", None))
    sink.upsert(records[:13])
    sink.upsert(records[13:])

    pages = list(sink.scan(page_size=10))
    assert len(pages) >= 3 and all(0 < len(page) <= 10 for page in pages)
    got = [pair for page in pages for pair in page]
    assert sorted(got, key=repr) == sorted(expected, key=repr)  # each record exactly once


def test_chroma_scan(chroma_sink: Callable[..., Any]) -> None:
    check_scan(chroma_sink)


def test_milvus_scan(milvus_sink: Callable[..., Any]) -> None:
    check_scan(milvus_sink)


def test_pgvector_scan(pg_sink: Callable[..., Any]) -> None:
    check_scan(pg_sink)


def test_qdrant_scan(qdrant_sink: Callable[..., Any]) -> None:
    check_scan(qdrant_sink)
