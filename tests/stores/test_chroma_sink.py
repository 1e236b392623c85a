"""ChromaSink on an embedded PersistentClient folder and on a real `chroma run` server.

What every sink must do is in test_sink_contract.py; this file keeps what is Chroma's own.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from e5_integrations import ConfigurationError, SchemaMismatchError, StoreUnavailableError
from e5_integrations.ingest import CONTENT_HASH_KEY, Record
from tests.stores._chroma_server import free_port, running_chroma_server
from tests.stores._common import DIM, SinkFactory, records

if TYPE_CHECKING:
    from e5_integrations.sinks.chroma import ChromaSink


@pytest.mark.integration
def test_dimension_mismatch_message_and_recorded_dimension(chroma_sink: SinkFactory[ChromaSink]) -> None:
    sink = chroma_sink()
    sink.ensure_collection(DIM)
    other = chroma_sink(sink.collection)
    with pytest.raises(SchemaMismatchError, match=r"64-dimensional.*32-dimensional.*collection=.*drop\(\)"):
        other.ensure_collection(32)
    assert other._client.get_collection(sink.collection).metadata == {"e5_dim": DIM}


@pytest.mark.integration
def test_dimension_of_a_foreign_collection_is_read_from_its_vectors(
    chroma_sink: SinkFactory[ChromaSink],
) -> None:
    sink = chroma_sink()
    foreign = sink._client.create_collection(
        sink.collection, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
    )
    foreign.add(ids=["x"], embeddings=[[1.0] * 16])
    with pytest.raises(SchemaMismatchError, match="16-dimensional"):
        sink.ensure_collection(DIM)
    assert sink.count() == 1


@pytest.mark.integration
def test_other_distance_is_a_schema_mismatch(chroma_sink: SinkFactory[ChromaSink]) -> None:
    sink = chroma_sink()
    sink._client.create_collection(sink.collection, embedding_function=None)  # l2 by default
    with pytest.raises(SchemaMismatchError, match="'l2'.*'cosine'"):
        sink.ensure_collection(DIM)


@pytest.mark.integration
def test_replacing_a_record_removes_its_old_metadata_keys(chroma_sink: SinkFactory[ChromaSink]) -> None:
    sink = chroma_sink()
    sink.ensure_collection(DIM)
    vector = records(1)[0].embedding
    sink.upsert([Record("r", "one", {"old": 1, "nested": {"a": 1}, CONTENT_HASH_KEY: "h1"}, vector)])
    sink.upsert([Record("r", "two", {CONTENT_HASH_KEY: "h2"}, vector)])
    [hit] = sink.search(vector, 1)
    assert (hit.text, dict(hit.metadata)) == ("two", {CONTENT_HASH_KEY: "h2"})


@pytest.mark.integration
def test_max_batch_records_is_sane_for_e5_mistral(chroma_sink: SinkFactory[ChromaSink]) -> None:
    sink = chroma_sink()
    n = sink.max_batch_records(4096)
    assert 16 <= n <= sink._client.get_max_batch_size()
    assert n * 4096 * 24 < 64 * 1024 * 1024  # JSON request well under 64 MiB


def test_unreachable_server_raises_quickly() -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Chroma at {uri}.*retry_seconds="):
        ChromaSink(uri, "e5-test", retry_seconds=0.5)
    assert time.monotonic() - start < 5


@pytest.mark.integration
def test_server_that_goes_away_raises_store_unavailable(tmp_path: Path) -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    with running_chroma_server(tmp_path) as url:
        sink = ChromaSink(url, "e5-going-away", retry_seconds=0.5)
        sink.ensure_collection(DIM)
        sink.upsert(records(2))
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"Chroma at {url}"):
        sink.count()
    assert time.monotonic() - start < 5
    sink.close()


def test_invalid_collection_name_is_a_configuration_error(tmp_path: Path) -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    with pytest.raises(ConfigurationError, match="a!"):
        ChromaSink(str(tmp_path / "c"), "a!")


# -- layouts: what each one stores, and how an existing collection's layout is found ---------


@pytest.mark.integration
@pytest.mark.parametrize("layout", ["e5", "langchain", "llama-index"])
def test_each_layout_stores_rows_as_its_framework_does(
    chroma_sink: SinkFactory[ChromaSink], layout: str
) -> None:
    from e5_integrations.ingest._layout import CHUNK_ID_KEY, uuid_id

    sink = chroma_sink(layout=layout)
    sink.ensure_collection(DIM)
    metadata = {CONTENT_HASH_KEY: "h", "document_id": "docs/a.txt", "chunk_index": 0, "tags": ["x", "y"]}
    [record] = [Record("docs/a.txt#0", "the text", metadata, records(1)[0].embedding)]
    sink.upsert([record])
    collection = sink._client.get_collection(sink.collection)
    row = collection.get(include=["documents", "metadatas"])
    stored = row["metadatas"][0]
    assert row["documents"] == ["the text"]
    json_keys = {"tags": '["x", "y"]', "e5_json_keys": '["tags"]'}
    if layout == "e5":  # unchanged since before layouts
        assert collection.metadata == {"e5_dim": DIM}
        assert row["ids"] == ["docs/a.txt#0"]
        assert stored == {**metadata, **json_keys}
        return
    assert collection.metadata == {"e5_dim": DIM, "e5_layout": layout}
    assert row["ids"] == [uuid_id("docs/a.txt#0")]
    if layout == "langchain":
        assert stored == {**metadata, CHUNK_ID_KEY: "docs/a.txt#0", **json_keys}
    else:
        node = json.loads(stored.pop("_node_content"))
        assert stored == {
            **metadata,
            CHUNK_ID_KEY: "docs/a.txt#0",
            **json_keys,
            "_node_type": "TextNode",
            "doc_id": "docs/a.txt",
            "ref_doc_id": "docs/a.txt",
        }
        assert (node["id_"], node["text"], node["metadata"]["tags"]) == (
            uuid_id("docs/a.txt#0"),
            "",
            ["x", "y"],
        )
    [hit] = sink.search(record.embedding, 1)
    assert (hit.id, hit.text, dict(hit.metadata)) == (record.id, "the text", metadata)


@pytest.mark.integration
def test_the_layout_of_a_collection_e5_did_not_make_is_read_from_its_rows(
    chroma_sink: SinkFactory[ChromaSink],
) -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    vectors = [r.embedding for r in records(2)]
    suffix = uuid.uuid4().hex[:8]
    cases = {
        "empty": ([], None),
        "plain": ([{"lang": "en"}, None], "langchain"),
        "node": ([{"lang": "en"}, {"_node_content": "{}", "document_id": "d"}], "llama-index"),
        "e5row": ([{CONTENT_HASH_KEY: "h"}, {"lang": "en"}], "e5"),
    }
    for name, (metadatas, expected) in cases.items():
        sink = chroma_sink(f"foreign_{name}_{suffix}")
        collection = sink._client.create_collection(
            sink.collection, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        if metadatas:
            collection.add(ids=["a", "b"], embeddings=vectors, documents=["x", "y"], metadatas=metadatas)
        assert sink.detect_layout() == expected, name
        assert chroma_sink(sink.collection).layout.name == (expected or "e5"), name
    sink = chroma_sink(f"foreign_empty_{suffix}", layout="llama-index")
    sink.ensure_collection(DIM)  # an empty foreign collection takes the requested layout
    sink.upsert(records(1))
    again = ChromaSink(sink.uri, sink.collection)
    try:
        assert again.layout.name == "llama-index"  # from its rows: no e5 metadata on it
    finally:
        again.close()


@pytest.mark.integration
def test_a_collection_made_by_e5_before_layouts_is_in_the_e5_layout(
    chroma_sink: SinkFactory[ChromaSink],
) -> None:
    sink = chroma_sink()
    sink._client.create_collection(
        sink.collection,
        configuration={"hnsw": {"space": "cosine"}},
        metadata={"e5_dim": DIM},
        embedding_function=None,
    )
    assert chroma_sink(sink.collection).layout.name == "e5"  # empty, but e5's
    with pytest.raises(SchemaMismatchError, match="e5 layout"):
        chroma_sink(sink.collection, layout="langchain").ensure_collection(DIM)


@pytest.mark.integration
def test_scan_in_the_llama_index_layout_gives_nodes_without_a_ref_doc_no_document(
    chroma_sink: SinkFactory[ChromaSink],
) -> None:
    sink = chroma_sink(layout="llama-index")
    sink.ensure_collection(DIM)
    with_doc, without = records(2)
    with_doc = Record(
        with_doc.id, "a", {**with_doc.metadata, "document_id": "docs/a.txt"}, with_doc.embedding
    )
    sink.upsert([with_doc, without])
    assert sorted(pair for page in sink.scan() for pair in page) == [
        (with_doc.id, "docs/a.txt"),
        (without.id, None),
    ]


@pytest.mark.parametrize(
    ("layout", "field", "refused"),
    [
        ("e5", "chroma:x", True),
        ("langchain", "#x", True),
        ("llama-index", "$x", True),
        ("llama-index", "_node_content", True),
        ("llama-index", "ref_doc_id", True),
        ("langchain", "_node_content", False),
        ("e5", "lang", False),
    ],
)
def test_check_document_per_layout(layout: str, field: str, refused: bool) -> None:
    from e5_integrations.ingest._sources import Document
    from e5_integrations.sinks.chroma import ChromaSink

    message = ChromaSink.check_document(Document("d", "text", "s", {field: 1}), layout=layout)
    assert (message is not None) == refused, message
    if refused:
        assert repr(field) in (message or "")


@pytest.mark.integration
@pytest.mark.parametrize("layout", ["langchain", "llama-index"])
def test_framework_rows_do_not_depend_on_the_metadata_key_order(
    chroma_sink: SinkFactory[ChromaSink], layout: str
) -> None:
    """The local and the Ray engine hand over metadata in different key orders; the rows a
    framework layout stores serialised (``_node_content``, JSON values) must be the same."""
    vector = records(1)[0].embedding
    one = {CONTENT_HASH_KEY: "h", "source": "s", "nested": {"b": 1, "a": [{"y": 1, "x": 2}]}}
    two = {"nested": {"a": [{"x": 2, "y": 1}], "b": 1}, "source": "s", CONTENT_HASH_KEY: "h"}
    stored = []
    for metadata in (one, two):
        sink = chroma_sink(layout=layout)
        sink.ensure_collection(DIM)
        sink.upsert([Record("same", "t", metadata, vector)])
        stored.append(sink._client.get_collection(sink.collection).get(include=["metadatas"])["metadatas"][0])
    assert stored[0] == stored[1]  # string values (JSON, _node_content) compared exactly
