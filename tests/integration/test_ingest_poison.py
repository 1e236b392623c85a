"""Records a store would refuse are refused in the check pass, by file and line (issue 11.5, 11.6).

Each poison record once passed the check pass and failed the run midway, after rows were
written, even with ``on_error="skip"``, and every re-run failed at the same place. Each case
runs on the real store that refuses it (and, for lone surrogates, on all four).
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e5_integrations import SourceError
from e5_integrations.ingest import Sink
from e5_integrations.ingest._pipeline import ingest
from tests.integration.test_ingest_pipeline import SinkFactory, _factory
from tests.stores._pg_server import pg_dsn  # noqa: F401  (fixture, started only for pgvector)

pytestmark = pytest.mark.integration

ALL = ("chroma", "milvus", "qdrant", "pgvector")
_LONG_ID = "".join(random.Random(11).choices(string.ascii_letters + string.digits, k=10_000))

#: name -> (stores that refuse it, the poison record)
POISON: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "surrogate in text": (ALL, {"id": "p", "text": "lone \ud800 surrogate"}),
    "surrogate in id": (ALL, {"id": "p\ud800", "text": "a fine text"}),
    "surrogate in metadata": (ALL, {"id": "p", "text": "a fine text", "tag": ["ok", "x\udfff"]}),
    "NUL in text": (("pgvector",), {"id": "p", "text": "a NUL \u0000 byte"}),
    "NUL in metadata": (("pgvector",), {"id": "p", "text": "a fine text", "tag": {"k": "a\u0000b"}}),
    "10k-character id": (("pgvector", "milvus"), {"id": _LONG_ID, "text": "a fine text"}),
    "key #x": (("chroma",), {"id": "p", "text": "a fine text", "#x": 1}),
    "empty key": (("chroma",), {"id": "p", "text": "a fine text", "": 1}),
    "key chroma:document": (("chroma",), {"id": "p", "text": "a fine text", "chroma:document": "d"}),
    "key chroma:uri (silently dropped)": (("chroma",), {"id": "p", "text": "a fine text", "chroma:uri": "u"}),
    "key $x": (("chroma",), {"id": "p", "text": "a fine text", "$x": 1}),
    "field e5_json_keys": (("chroma",), {"id": "p", "text": "a fine text", "e5_json_keys": "not json"}),
    "field source": (("chroma",), {"id": "p", "text": "a fine text", "source": "web"}),
}
CASES = [
    pytest.param(store, name, id=f"{store}-{name}")
    for name, (stores, _) in POISON.items()
    for store in stores
]


@pytest.fixture
def make_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkFactory]:
    yield from _factory(request, tmp_path, request.param)


def _corpus(root: Path, poison: dict[str, Any]) -> Path:
    root.mkdir()
    records = [
        {"id": "a", "text": "The first good record."},
        poison,
        {"id": "c", "text": "The last good record."},
    ]
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def _ingest(root: Path, sink: Sink, encoder: Any, **kwargs: Any) -> Any:
    return ingest(root, sink, encoder, id_root=root, chunk_tokens=16, group_tokens=16, **kwargs)


@pytest.mark.parametrize(("make_sink", "case"), CASES, indirect=["make_sink"])
def test_a_poison_record_fails_the_check_pass_or_is_skipped(
    make_sink: SinkFactory, case: str, encoder: Any, tmp_path: Path
) -> None:
    path = _corpus(tmp_path / "docs", POISON[case][1])
    sink = make_sink()

    with pytest.raises(SourceError, match=rf"{path}:2: .*on_error='skip'"):
        _ingest(path.parent, sink, encoder)
    assert sink.count() == 0  # refused before anything was written

    report = _ingest(path.parent, sink, encoder, on_error="skip")
    assert (report.documents, report.written, report.skipped_invalid) == (2, 2, 1)
    assert [problem.location for problem in report.problems] == [f"{path}:2"]
    again = _ingest(path.parent, sink, encoder, on_error="skip")  # a re-run does not trip on it either
    assert (again.embedded, again.skipped_unchanged, again.skipped_invalid) == (0, 2, 1)
    hits = sink.search(encoder.encode_queries(["good record"])[0], 5)
    assert sorted(hit.id for hit in hits) == ["a#0", "c#0"]
    assert {hit.metadata["document_id"] for hit in hits} == {"a", "c"}


def test_every_sink_refuses_what_its_store_refuses() -> None:
    """The hook itself: the rule of each store, and nothing refused that the store takes."""
    from e5_integrations.ingest import Document
    from e5_integrations.ingest._registry import sink_class

    fine = Document("ok", "text with ünïcödé, emoji 🙂 and 'quotes'", "/f.jsonl", {"tags": ["a"], "n": 1})
    for store in ALL:
        cls = sink_class(store)
        assert cls.check_document(fine) is None, store
        for name, (stores, record) in POISON.items():
            if name.startswith("field "):
                continue  # refused by the reader for every store, not by the sinks
            metadata = {k: v for k, v in record.items() if k not in ("id", "text")}
            document = Document(record["id"], record["text"], "/f.jsonl", metadata)
            refused = cls.check_document(document)
            assert (refused is not None) == (store in stores), (store, name, refused)
