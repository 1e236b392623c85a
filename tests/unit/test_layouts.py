"""The store-independent part of the layouts (``e5_integrations.ingest._layout``)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from e5_integrations import ConfigurationError, SchemaMismatchError
from e5_integrations.ingest import (
    CHUNK_ID_KEY,
    CONTENT_HASH_KEY,
    DOCUMENT_ID_KEY,
    Document,
    Record,
    get_layout,
)
from e5_integrations.ingest._layout import (
    ID_NAMESPACE,
    layout_of_metadata,
    resolve_layout,
    uuid_id,
    with_content_hash,
)
from e5_integrations.sinks.qdrant import POINT_ID_NAMESPACE, point_id

BOOKKEEPING = {"source": "docs/a.txt", DOCUMENT_ID_KEY: "docs/a.txt", "chunk_index": 2, CONTENT_HASH_KEY: "h"}
RECORD = Record("docs/a.txt#2", "the chunk text", {"lang": "en", **BOOKKEEPING}, np.ones(4, np.float32))


def test_framework_row_ids_are_uuid5_of_the_chunk_id_and_e5_keeps_chunk_ids() -> None:
    assert get_layout("e5").row_id("a#0") == "a#0"
    for name in ("langchain", "llama-index"):
        row = get_layout(name).row_id("a#0")
        assert uuid.UUID(row).version == 5 and row == str(uuid.uuid5(ID_NAMESPACE, "a#0"))
    # one namespace: a framework row id is the point id Qdrant's e5 layout already used
    assert ID_NAMESPACE == POINT_ID_NAMESPACE and uuid_id("x#1") == point_id("x#1")
    assert get_layout("langchain").row_id("a#0") != get_layout("langchain").row_id("a#1")


def test_langchain_metadata_is_flat_with_the_chunk_id() -> None:
    metadata = get_layout("langchain").metadata(RECORD)
    assert metadata == {**RECORD.metadata, CHUNK_ID_KEY: "docs/a.txt#2"}
    assert get_layout("e5").metadata(RECORD) == dict(RECORD.metadata)


def test_llama_index_metadata_is_what_node_to_metadata_dict_writes_and_parses_back() -> None:
    from llama_index.core.schema import MetadataMode, TextNode
    from llama_index.core.vector_stores.utils import metadata_dict_to_node

    layout = get_layout("llama-index")
    stored = layout.metadata(RECORD, remove_text=True)
    assert stored["_node_type"] == "TextNode"
    assert stored[DOCUMENT_ID_KEY] == stored["doc_id"] == stored["ref_doc_id"] == "docs/a.txt"
    assert stored["lang"] == "en" and stored[CHUNK_ID_KEY] == "docs/a.txt#2"
    assert json.loads(stored["_node_content"])["text"] == ""  # the store keeps the text elsewhere
    node = metadata_dict_to_node(stored, text="the chunk text")
    assert isinstance(node, TextNode)
    assert (node.node_id, node.ref_doc_id, node.text) == (
        layout.row_id(RECORD.id),
        "docs/a.txt",
        "the chunk text",
    )
    assert node.metadata["lang"] == "en"
    # the bookkeeping stays out of what the app's LLM and embedder see
    shown = node.get_content(MetadataMode.LLM) + node.get_content(MetadataMode.EMBED)
    assert "lang: en" in shown and CONTENT_HASH_KEY not in shown and CHUNK_ID_KEY not in shown
    kept = layout.metadata(RECORD, remove_text=False)
    assert json.loads(kept["_node_content"])["text"] == "the chunk text"


@pytest.mark.parametrize("name", ["e5", "langchain", "llama-index"])
@pytest.mark.parametrize("remove_text", [True, False])
def test_a_new_content_hash_is_the_metadata_the_layout_writes_for_it(name: str, remove_text: bool) -> None:
    """What ``Sink.set_content_hashes`` writes back equals, byte for byte, what the layout
    encodes for the record with the new hash (in ``_node_content`` too)."""
    layout = get_layout(name)
    sealed = "h~object:0123456789abcdef01234567:1:3"
    resealed = Record(RECORD.id, RECORD.text, {**RECORD.metadata, CONTENT_HASH_KEY: sealed}, RECORD.embedding)
    stored = layout.metadata(RECORD, remove_text=remove_text)
    updated = with_content_hash(stored, sealed)
    assert updated == layout.metadata(resealed, remove_text=remove_text)
    assert json.dumps(updated, ensure_ascii=False) == json.dumps(
        layout.metadata(resealed, remove_text=remove_text), ensure_ascii=False
    )
    assert stored[CONTENT_HASH_KEY] == "h"  # the stored dict is not changed in place
    assert with_content_hash({"_node_content": "not json", CONTENT_HASH_KEY: "h"}, "x") == {
        "_node_content": "not json",
        CONTENT_HASH_KEY: "x",
    }


def test_hits_decode_the_chunk_id_text_and_user_metadata() -> None:
    llama = get_layout("llama-index")
    stored = llama.metadata(RECORD, remove_text=False)
    hit = llama.hit("row-uuid", 0.5, None, stored)
    assert (hit.id, hit.text, hit.score) == ("docs/a.txt#2", "the chunk text", 0.5)
    assert dict(hit.metadata) == dict(RECORD.metadata)
    # a node the app added itself: its own id, no chunk id, no "None" document id
    app = llama.hit("node-1", 0.1, "app text", {"_node_content": "{}", DOCUMENT_ID_KEY: "None", "k": 1})
    assert (app.id, app.text, dict(app.metadata)) == ("node-1", "app text", {"k": 1})
    langchain = get_layout("langchain")
    hit = langchain.hit("row", 1.0, "t", langchain.metadata(RECORD))
    assert (hit.id, dict(hit.metadata)) == ("docs/a.txt#2", dict(RECORD.metadata))


def test_rows_show_their_layout() -> None:
    assert layout_of_metadata(get_layout("llama-index").metadata(RECORD)) == "llama-index"
    assert layout_of_metadata(get_layout("langchain").metadata(RECORD)) == "langchain"
    assert layout_of_metadata(dict(RECORD.metadata)) == "e5"
    assert layout_of_metadata({"lang": "en"}) is None
    assert layout_of_metadata(None) is None


def test_a_layout_that_disagrees_with_the_collection_is_refused() -> None:
    assert resolve_layout(None, None, "c") == "e5"
    assert resolve_layout("langchain", None, "c") == "langchain"
    assert resolve_layout(None, "llama-index", "c") == "llama-index"
    assert resolve_layout("llama-index", "llama-index", "c") == "llama-index"
    with pytest.raises(
        SchemaMismatchError,
        match=r"qdrant collection 'kb' is in the langchain layout .*layout='e5'.*nothing was written.*layout='langchain'",
    ):
        resolve_layout("e5", "langchain", "qdrant collection 'kb'")


def test_unknown_layouts_name_the_valid_ones() -> None:
    with pytest.raises(
        ConfigurationError, match=r"unknown layout 'langchian'.*\['e5', 'langchain', 'llama-index'\]"
    ):
        get_layout("langchian")
    with pytest.raises(
        ConfigurationError, match=r"'langchain-legacy' for the chroma store.*only on pgvector"
    ):
        get_layout("langchain-legacy", store="chroma")
    assert get_layout("langchain-legacy", ("langchain-legacy",)).family == "langchain"


@pytest.mark.parametrize("key", ["_node_content", "_node_type", "doc_id", "ref_doc_id"])
def test_llama_index_refuses_user_fields_it_keeps_for_itself(key: str) -> None:
    document = Document(id="d", text="t", source="f", metadata={key: "mine"})
    assert get_layout("e5").check_document(document) is None
    assert get_layout("langchain").check_document(document) is None
    refused = get_layout("llama-index").check_document(document)
    assert refused is not None and repr(key) in refused and "rename" in refused


@pytest.mark.parametrize("name", ["langchain", "llama-index"])
def test_framework_metadata_does_not_depend_on_key_order(name: str) -> None:
    """The Ray engine hands metadata over with sorted keys, the local one in source order:
    both must store the same bytes (``_node_content`` is serialised JSON)."""
    shuffled = Record(
        RECORD.id,
        RECORD.text,
        dict(reversed(list({**RECORD.metadata, "n": {"b": 1, "a": [{"y": 2, "x": 1}]}}.items()))),
        RECORD.embedding,
    )
    ordered = Record(
        RECORD.id, RECORD.text, {k: shuffled.metadata[k] for k in sorted(shuffled.metadata)}, RECORD.embedding
    )
    layout = get_layout(name)
    assert json.dumps(layout.metadata(shuffled)) == json.dumps(layout.metadata(ordered))


def test_a_llama_index_node_without_a_ref_doc_has_no_document_id() -> None:
    """LlamaIndex stores the string "None" as the ref doc id of such a node: prune must not
    take it for a document that left the sources."""
    from e5_integrations.ingest._sink import e5_document_id

    orphan = Record("x#0", "t", {CONTENT_HASH_KEY: "h"}, np.ones(4, np.float32))
    stored = get_layout("llama-index").metadata(orphan)
    assert stored[DOCUMENT_ID_KEY] == "None"
    assert e5_document_id(stored) is None
    assert e5_document_id(get_layout("llama-index").metadata(RECORD)) == "docs/a.txt"
