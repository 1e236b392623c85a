"""The per-layout records of the Milvus, Qdrant and Chroma sinks, without a server: each
sink has one record per layout it supports, and what a record makes (a Milvus schema, a
Qdrant payload, a Chroma collection tag) is recognised as that record's layout again, so
creation and detection cannot drift apart when a layout is added."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from e5_integrations.sinks import (
    CHUNK_ID_KEY,
    CONTENT_HASH_KEY,
    DOCUMENT_ID_KEY,
    Record,
    get_layout,
    layout_names,
)


def _record() -> Record:
    return Record(
        id="doc.txt#0",
        text="Hallo Welt",
        metadata={DOCUMENT_ID_KEY: "doc.txt", CONTENT_HASH_KEY: "h0", "lang": "de"},
        embedding=np.array([0.6, 0.8], dtype=np.float32),
    )


def test_milvus_has_one_record_per_layout_and_recognises_its_schemas() -> None:
    pytest.importorskip("pymilvus")
    from e5_integrations.sinks import milvus

    assert sorted(milvus._SHAPES) == sorted(milvus.MilvusSink.layouts)
    assert milvus.MilvusSink.layouts == layout_names("milvus")  # the registered ones, in order
    for name, shape in milvus._SHAPES.items():
        assert shape.name == name
        fields = [
            {"name": c.name, "is_primary": dict(c.options).get("is_primary", False)} for c in shape.columns
        ]
        assert milvus._layout_of_schema({"fields": fields}) == name
        assert sum(1 for c in shape.columns if dict(c.options).get("is_primary")) == 1
        assert {shape.primary, shape.vector} <= {c.name for c in shape.columns}
    # the LangChain collection whose keys Milvus assigns: rows found by e5_chunk_id
    assigned = milvus._SHAPES["langchain"].assigned
    assert assigned is not None and assigned.key is None and assigned.chunk_field == CHUNK_ID_KEY
    assert milvus._layout_of_schema({"fields": [{"name": "x", "is_primary": True}]}) is None


@pytest.mark.parametrize("layout", ["e5", "langchain", "llama-index"])
def test_milvus_rows_round_trip_through_their_record(layout: str) -> None:
    pytest.importorskip("pymilvus")
    if layout == "llama-index":
        pytest.importorskip("llama_index.core")
    from e5_integrations.sinks import milvus

    shape, found = milvus._SHAPES[layout], _record()
    row = shape.encode(found, get_layout(layout), shape, True)
    assert {shape.primary, shape.vector, shape.text} <= row.keys()
    hit = shape.decode({"entity": dict(row), "distance": 0.5}, get_layout(layout), shape, 0.5)
    assert (hit.id, hit.text, hit.score) == ("doc.txt#0", "Hallo Welt", 0.5)
    assert hit.metadata["lang"] == "de"
    assert milvus._chunk_id(row, shape) == "doc.txt#0"


@pytest.mark.parametrize("layout", ["e5", "langchain", "llama-index"])
def test_qdrant_payloads_show_their_record(layout: str) -> None:
    pytest.importorskip("qdrant_client")
    if layout == "llama-index":
        pytest.importorskip("llama_index.core")
    from e5_integrations.sinks import qdrant

    assert sorted(qdrant._SHAPES) == sorted(qdrant.QdrantSink.layouts)
    assert qdrant.QdrantSink.layouts == layout_names("qdrant")  # the registered ones, in order
    payload: dict[str, Any] = qdrant._SHAPES[layout].encode(_record(), get_layout(layout))
    assert qdrant._kind(payload) == layout
    assert qdrant._chunk_id("point", payload) == "doc.txt#0"
    assert qdrant._flat_metadata(payload)[CONTENT_HASH_KEY] == "h0"
    hit = qdrant._hit("point", 0.25, payload)
    assert (hit.id, hit.text, hit.score, hit.metadata["lang"]) == ("doc.txt#0", "Hallo Welt", 0.25, "de")


def test_chroma_has_one_record_per_layout() -> None:
    pytest.importorskip("chromadb")
    from e5_integrations.sinks import chroma

    assert sorted(chroma._SHAPES) == sorted(chroma.ChromaSink.layouts)
    assert chroma.ChromaSink.layouts == layout_names("chroma")  # the registered ones, in order
    assert [name for name, shape in chroma._SHAPES.items() if not shape.tagged] == ["e5"]
    assert chroma._scanned("row", {CHUNK_ID_KEY: "c#0"}, chroma._SHAPES["langchain"].chunk_key) == (
        "c#0",
        None,
    )
    assert chroma._scanned("c#0", {CHUNK_ID_KEY: "x"}, chroma._SHAPES["e5"].chunk_key) == ("c#0", None)
