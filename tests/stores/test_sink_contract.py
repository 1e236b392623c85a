"""The sink contract (``e5_integrations.ingest.Sink``), checked on every real engine target
in every layout.

Each test runs once per target and layout (test ids such as ``[milvus-server/langchain]``);
the per-store files keep only what is specific to one store.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from e5_integrations import SchemaMismatchError
from e5_integrations.ingest import CONTENT_HASH_KEY, DOCUMENT_ID_KEY, Record, Sink
from e5_integrations.ingest._registry import STORES, sink_class
from tests.stores._common import DIM, ODD_IDS, SinkFactory, records, sink_factory, unit

pytestmark = pytest.mark.integration

#: target -> its uri; the session fixtures honour CHROMA_URL, MILVUS_URI and PG_DSN.
_URIS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "chroma-embedded": lambda request, tmp: str(tmp / "chroma"),
    "chroma-server": lambda request, tmp: request.getfixturevalue("chroma_server_url"),
    "milvus-lite": lambda request, tmp: str(tmp / "milvus.db"),
    "milvus-server": lambda request, tmp: request.getfixturevalue("milvus_server_uri"),
    "qdrant-memory": lambda request, tmp: ":memory:",
    "qdrant-path": lambda request, tmp: str(tmp / "qdrant"),
    "qdrant-server": lambda request, tmp: os.environ["QDRANT_URL"],
    "pgvector": lambda request, tmp: request.getfixturevalue("pg_dsn"),
}
TARGETS = [t for t in _URIS if t != "qdrant-server" or os.environ.get("QDRANT_URL")]
#: (target, layout): every layout the target's store supports.
CASES = [
    (target, layout)
    for target in TARGETS
    for layout in sink_class(target.split("-")[0]).layouts
    if layout != "langchain-legacy" or target == "pgvector"
]


class Target:
    """A sink factory (``make(collection=None, **options)``) for one target, in one layout."""

    def __init__(self, name: str, uri: str, make: SinkFactory, layout: str = "e5") -> None:
        self.name, self.store, self.uri, self._make = name, name.split("-")[0], uri, make
        self.layout = layout

    def __call__(self, collection: str | None = None, **options: Any) -> Sink:
        sink: Sink = self._make(collection, **{"layout": self.layout, **options})
        return sink

    def peer(self, sink: Sink) -> Sink:
        """Another client on ``sink``'s collection. Qdrant's local mode allows one client per
        folder (``sink`` is closed first) and its ``:memory:`` store is private (``sink`` itself)."""
        if self.name == "qdrant-memory":
            return sink
        if self.name == "qdrant-path":
            sink.close()
        return self(sink.collection)


@pytest.fixture(params=CASES, ids=[f"{target}/{layout}" for target, layout in CASES])
def any_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A :class:`Target` per engine and layout; its sinks are dropped and closed after the test."""
    target, layout = request.param
    module, name = STORES[target.split("-")[0]].target.split(":")
    cls = getattr(importlib.import_module(module), name)
    uri = _URIS[target](request, tmp_path)
    for make in sink_factory(cls, uri):
        yield Target(target, uri, make, layout)


def _hashes(rs: list[Record]) -> dict[str, str]:
    return {r.id: r.metadata[CONTENT_HASH_KEY] for r in rs}


def test_create_then_validate(any_sink: Target) -> None:
    sink = any_sink()
    assert sink.name == any_sink.store
    assert sink.count() == 0
    sink.ensure_collection(DIM)
    sink.ensure_collection(DIM)  # an existing collection of the same dim is accepted
    assert sink.count() == 0
    again = any_sink.peer(sink)
    again.ensure_collection(DIM)
    assert again.count() == 0


def test_dimension_mismatch_raises_and_writes_nothing(any_sink: Target) -> None:
    sink = any_sink()
    sink.ensure_collection(DIM)
    stored = records(3)
    sink.upsert(stored)
    other = any_sink.peer(sink)
    # every store names the collection, both dimensions and the way out, as a Python parameter here
    pattern = rf"(?i){re.escape(repr(other.collection))}.*\b{DIM}\b.*\b32\b.*another collection= name"
    with pytest.raises(SchemaMismatchError, match=pattern):
        other.ensure_collection(32)
    assert other.count() == 3
    other.ensure_collection(DIM)
    assert other.fetch_hashes([r.id for r in stored]) == _hashes(stored)


def test_upsert_twice_is_idempotent(any_sink: Target) -> None:
    sink = any_sink()
    sink.ensure_collection(DIM)
    rs = records(150)
    sink.upsert(rs)
    sink.upsert(rs)
    assert sink.count() == 150
    changed = Record(rs[7].id, "new text", {CONTENT_HASH_KEY: "h-new"}, rs[7].embedding)
    sink.upsert([changed])
    assert sink.count() == 150
    assert sink.fetch_hashes([rs[7].id, rs[8].id]) == {rs[7].id: "h-new", rs[8].id: "h8"}
    [hit] = sink.search(rs[7].embedding, 1)
    assert (hit.id, hit.text, dict(hit.metadata)) == (rs[7].id, "new text", {CONTENT_HASH_KEY: "h-new"})


def test_a_bulk_load_is_exact_when_batches_meet_stored_rows(any_sink: Target) -> None:
    """What a run does (begin_bulk_load, ensure_collection, upserts, finalize), with batches
    of new rows, then one that mixes stored and new rows (a re-run, a retried write), then new
    rows again: every row once, the latest copy of each, and searches find them after
    finalize (pgvector COPYs new rows straight into its table and builds its index here)."""
    sink = any_sink()
    sink.begin_bulk_load()
    sink.ensure_collection(DIM)
    rs = records(120)
    sink.upsert(rs[:40])
    sink.upsert(rs[40:60])
    mixed = [
        Record(r.id, f"again {i}", {**r.metadata, CONTENT_HASH_KEY: f"again{i}"}, r.embedding)
        for i, r in enumerate(rs[30:80])
    ]
    sink.upsert(mixed)
    sink.upsert(rs[80:])
    assert sink.count() == 120
    expected = {**_hashes(rs), **{r.id: r.metadata[CONTENT_HASH_KEY] for r in mixed}}
    assert sink.fetch_hashes([r.id for r in rs]) == expected
    sink.finalize()
    for r in (rs[0], mixed[0], mixed[-1], rs[-1]):
        [hit] = sink.search(r.embedding, 1)
        assert (hit.id, hit.text) == (r.id, r.text)


def test_set_content_hashes_changes_the_hash_and_nothing_else(any_sink: Target) -> None:
    """What the Ray engine's file seals write: a new ``e5_content_hash`` on stored rows, with
    the text, the vector and the rest of the metadata as they were; ids not stored are left
    alone (nothing is created)."""
    sink = any_sink()
    sink.ensure_collection(DIM)
    rs = records(30, seed=4)
    rich = {
        **rs[3].metadata,
        DOCUMENT_ID_KEY: "docs/a.txt",
        "nested": {"authors": ["Zoë", "李"], "year": 2024},
        "tags": ["a", "b"],
        "score": 0.5,
    }
    rs[3] = Record(rs[3].id, "Grüße 🙂", rich, rs[3].embedding)
    sink.upsert(rs)
    sealed = "h3~object:0123456789abcdef01234567:1:4"
    changed = sink.set_content_hashes({rs[3].id: sealed, rs[20].id: "h20-new", "docs/a.txt#missing": "x"})
    assert changed == 2
    assert sink.count() == 30
    expected = {**_hashes(rs), rs[3].id: sealed, rs[20].id: "h20-new"}
    assert sink.fetch_hashes([r.id for r in rs] + ["docs/a.txt#missing"]) == expected
    reader = any_sink.peer(sink)
    assert reader.fetch_hashes([rs[3].id]) == {rs[3].id: sealed}  # another client sees it
    for r in (rs[3], rs[20], rs[21]):
        [hit] = reader.search(r.embedding, 1)
        assert (hit.id, hit.text) == (r.id, r.text)
        assert dict(hit.metadata) == {**r.metadata, CONTENT_HASH_KEY: expected[r.id]}
        assert hit.score == pytest.approx(1.0, abs=1e-4)  # the vector is the one written
    assert reader.set_content_hashes({rs[20].id: "h20-new"}) == 0  # idempotent: it holds the value
    assert reader.fetch_hashes([rs[20].id]) == {rs[20].id: "h20-new"}
    assert reader.set_content_hashes({}) == 0


def test_fetch_hashes_returns_only_stored_ids(any_sink: Target) -> None:
    sink = any_sink()
    assert sink.fetch_hashes(["nothing"]) == {}  # no collection yet
    sink.ensure_collection(DIM)
    assert sink.fetch_hashes(["nothing"]) == {}
    rs = records(30)
    sink.upsert(rs[:20])
    wanted = [r.id for r in rs[15:30]] + ["missing#9"]
    assert sink.fetch_hashes(wanted) == _hashes(rs[15:20])
    assert sink.fetch_hashes([]) == {}


def test_search_returns_the_nearest_with_cosine_scores(any_sink: Target) -> None:
    sink = any_sink()
    sink.ensure_collection(DIM)
    rs = records(200, seed=1)
    sink.upsert(rs)
    sink.finalize()
    sink.finalize()  # safe twice
    query = unit(rs[17].embedding + 0.05 * np.random.default_rng(2).standard_normal(DIM))
    hits = sink.search(query, 5)
    scores = np.stack([r.embedding for r in rs]) @ query
    nearest = np.argsort(-scores)[:5]
    assert [h.id for h in hits] == [rs[i].id for i in nearest]
    np.testing.assert_allclose([h.score for h in hits], scores[nearest], atol=1e-4)
    assert (hits[0].text, dict(hits[0].metadata)) == ("text 17", rs[17].metadata)


def test_metadata_round_trips(any_sink: Target) -> None:
    sink = any_sink()
    sink.ensure_collection(DIM)
    metadata = {
        CONTENT_HASH_KEY: "abc",
        "source": "données/日本語 ünïcödé.txt",
        "chunk_index": 3,
        "score": 0.25,
        "flag": True,
        "nested": {"authors": ["Zoë", "李"], "year": 2024, "deep": {"x": None}, "emoji": "🙂"},
        "tags": ["a", "b"],
        "list": [1, 2.5, None, True],
        "mixed": [1, "two", 3.0, 3.5],
        "quote": 'it\'s "x"; --',
        "empty": {},
        "nothing": None,
    }
    vector = records(1)[0].embedding
    sink.upsert([Record("ü-1", "Grüße, 世界 🙂", metadata, vector)])
    [hit] = sink.search(vector, 1)
    assert (hit.id, hit.text, dict(hit.metadata)) == ("ü-1", "Grüße, 世界 🙂", metadata)
    assert json.dumps(hit.metadata, sort_keys=True) == json.dumps(metadata, sort_keys=True)  # types too
    assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_ids_with_quotes_and_unicode(any_sink: Target) -> None:
    sink = any_sink()
    sink.ensure_collection(DIM)
    vectors = unit(np.random.default_rng(3).standard_normal((len(ODD_IDS), DIM)))
    rs = [Record(i, f"t{n}", {CONTENT_HASH_KEY: f"h{n}"}, vectors[n]) for n, i in enumerate(ODD_IDS)]
    sink.upsert(rs)
    sink.upsert(rs)
    assert sink.count() == len(ODD_IDS)
    assert sink.fetch_hashes(ODD_IDS) == _hashes(rs)
    assert [sink.search(v, 1)[0].id for v in vectors] == ODD_IDS
    assert sorted(i for page in sink.scan() for i, _ in page) == sorted(ODD_IDS)
    sink.delete([ODD_IDS[0], ODD_IDS[1], "not there"])
    assert sink.count() == len(ODD_IDS) - 2
    assert sink.fetch_hashes(ODD_IDS) == _hashes(rs[2:])


def test_delete_and_drop(any_sink: Target) -> None:
    sink = any_sink()
    sink.drop()  # dropping a missing collection is fine
    sink.ensure_collection(DIM)
    rs = records(5)
    sink.upsert(rs)
    sink.delete([rs[0].id, rs[1].id, "missing"])
    assert sink.count() == 3
    assert sink.fetch_hashes([r.id for r in rs]) == _hashes(rs[2:])
    sink.drop()
    assert (sink.count(), sink.fetch_hashes([rs[2].id])) == (0, {})
    sink.drop()
    sink.ensure_collection(DIM)  # recreated after a drop
    sink.upsert(rs[:1])
    assert sink.count() == 1
    sink.close()
    sink.close()  # safe twice


def test_a_missing_collection_reads_as_empty(any_sink: Target) -> None:
    sink = any_sink()
    query = records(1)[0].embedding

    def assert_empty() -> None:
        assert (sink.count(), sink.fetch_hashes(["x"]), list(sink.scan())) == (0, {}, [])
        assert sink.search(query, 3) == []

    assert_empty()  # never created
    sink.ensure_collection(DIM)
    sink.upsert(records(5))
    sink.drop()
    assert_empty()  # dropped


def test_scan(any_sink: Target) -> None:
    sink = any_sink()
    assert list(sink.scan()) == []  # no collection yet: nothing, no error
    sink.ensure_collection(8)
    assert list(sink.scan()) == []
    rng = np.random.default_rng(0)
    rs: list[Record] = []
    expected: list[tuple[str, str | None]] = []
    for index in range(25):
        document = f"doc-{index % 7}"
        metadata: dict[str, object] = {DOCUMENT_ID_KEY: document, CONTENT_HASH_KEY: "h"}
        rs.append(Record(f"{document}#{index}", "text", metadata, rng.standard_normal(8).astype(np.float32)))
        expected.append((f"{document}#{index}", document))
    rs.append(
        Record("written-by-someone-else", "text", {"lang": "en"}, rng.standard_normal(8).astype(np.float32))
    )
    expected.append(("written-by-someone-else", None))
    # LlamaIndex writes a document_id on every node (issue 12): without e5's content hash it is
    # not e5's row, so prune must not see a document id, nor stale-chunk deletion a hash
    # a chunk without a document id (LlamaIndex stores its placeholder "None" for it) has none
    foreign: list[tuple[str, dict[str, object]]] = [
        ("doc-1#99", {DOCUMENT_ID_KEY: "doc-1", "ref_doc_id": "doc-1"}),
        ("doc-2#99", {DOCUMENT_ID_KEY: "doc-2", CONTENT_HASH_KEY: 7}),
        ("no-document#0", {CONTENT_HASH_KEY: "h"}),
    ]
    for id_, metadata in foreign:
        rs.append(Record(id_, "a framework's row", metadata, rng.standard_normal(8).astype(np.float32)))
        expected.append((id_, None))
    sink.upsert(rs[:13])
    sink.upsert(rs[13:])
    pages = list(sink.scan(page_size=10))
    assert len(pages) >= 3 and all(0 < len(page) <= 10 for page in pages)
    got = [pair for page in pages for pair in page]
    assert sorted(got, key=repr) == sorted(expected, key=repr)  # each record exactly once
    assert sink.fetch_hashes(["doc-1#99", "doc-2#99", "doc-0#0"]) == {"doc-0#0": "h"}
    assert sink.fetch_hashes(["no-document#0"]) == {"no-document#0": "h"}


def test_max_batch_records(any_sink: Target) -> None:
    sink = any_sink()
    n = sink.max_batch_records(4096)
    assert isinstance(n, int) and n >= 1
    assert sink.max_batch_records(64) >= n


def test_a_repeated_id_in_one_batch_keeps_the_last_copy(any_sink: Target) -> None:
    """Stores disagree here (Milvus 2.5 kept both rows, Chroma raised); the sinks do not."""
    sink = any_sink()
    sink.ensure_collection(DIM)
    rs = records(3)
    changed = Record(rs[1].id, "new text", {CONTENT_HASH_KEY: "h-new"}, rs[1].embedding)
    sink.upsert([rs[0], rs[1], changed, rs[2], changed])
    assert sink.count() == 3
    assert sink.fetch_hashes([rs[1].id]) == {rs[1].id: "h-new"}
    assert sink.search(rs[1].embedding, 1)[0].text == "new text"


def test_writing_before_ensure_collection_is_a_store_error_and_deleting_is_a_no_op(any_sink: Target) -> None:
    from e5_integrations import StoreError

    sink = any_sink()
    sink.delete(["not-there#0"])  # nothing to delete in a collection that does not exist
    with pytest.raises(StoreError, match="ensure_collection"):
        sink.upsert(records(2))
    assert sink.count() == 0


def test_open_sink_resolves_the_store(any_sink: Target) -> None:
    """The registry (``--store``/``--uri``) opens this target's sink class on its uri."""
    from e5_integrations.ingest import open_sink

    name = f"e5_open_sink_{uuid.uuid4().hex[:8]}"
    with open_sink(any_sink.store, any_sink.uri, name, layout=any_sink.layout) as sink:
        assert sink.name == any_sink.store and STORES[sink.name].target.endswith(type(sink).__name__)
        assert sink.layout.name == any_sink.layout
        sink.ensure_collection(DIM)
        sink.upsert(records(2))
        assert sink.count() == 2
        sink.drop()
    sink.close()  # closing twice is safe


def test_a_query_of_another_dimension_is_a_schema_mismatch(any_sink: Target) -> None:
    """``e5 search`` with a model of another dimension: a clear error, not the client's."""
    from e5_integrations.ingest import search

    sink = any_sink()
    assert sink.dimension() is None
    sink.ensure_collection(DIM)
    rs = records(3)
    sink.upsert(rs)
    assert sink.dimension() == DIM
    with pytest.raises(
        SchemaMismatchError, match=rf"holds {DIM}-dimensional .* gives 32-dimensional.*--model"
    ):
        search(unit(np.ones(32)), sink)
    assert [hit.id for hit in search(rs[1].embedding, sink, k=1)] == [rs[1].id]


def test_the_layout_is_detected_and_a_disagreeing_one_refused(any_sink: Target) -> None:
    """A collection written in one layout is read in it without ``layout=``; asking for another
    one is a clear ``SchemaMismatchError`` before anything is written."""
    sink = any_sink()
    sink.ensure_collection(DIM)
    rs = records(3)
    sink.upsert(rs)
    assert sink.layout.name == any_sink.layout
    detected = any_sink.peer(sink)
    if any_sink.name == "qdrant-path":
        detected.close()  # local mode: one client per folder
    # every store's sink class takes (uri, collection); the Sink ABC declares no constructor
    detected = (
        cast(Callable[..., Sink], type(detected))(any_sink.uri, detected.collection)
        if any_sink.name != "qdrant-memory"
        else sink
    )
    try:
        assert detected.layout.name == any_sink.layout
        assert [h.id for h in detected.search(rs[1].embedding, 1)] == [rs[1].id]
    finally:
        if detected is not sink:
            detected.close()
    if any_sink.name == "qdrant-memory":
        return  # one private store: no second client to disagree
    other = next(layout for layout in type(sink).layouts if layout != any_sink.layout)
    if {other, any_sink.layout} == {"langchain", "langchain-legacy"}:
        other = "llama-index"
    wrong = any_sink(sink.collection, layout=other)
    with pytest.raises(SchemaMismatchError, match=rf"{re.escape(any_sink.layout)} layout.*layout={other!r}"):
        wrong.ensure_collection(DIM)
    with pytest.raises(SchemaMismatchError):
        wrong.upsert(records(1, seed=9, prefix="other#"))
    wrong.close()
    check = any_sink(sink.collection)
    assert check.count() == 3
