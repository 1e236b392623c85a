"""A layout is one registered record: a toy layout and a toy store, written here as a package
outside e5 would write them, through the public sink-author API only (``e5_integrations.sinks``)
plus the public fronts (``ingest``, the ``e5`` command), get every guarantee of the pipeline.

The toy layout ``toy-kv`` keeps a row's metadata nested (``{"toy_version": 1, "chunk": ...,
"fields": {...}}``), refuses a user field ``toy_note``, and is recognised from a row by
``toy_version``; its rows have UUID ids like the framework layouts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from e5_integrations.cli import main
from e5_integrations.ingest import ingest
from e5_integrations.sinks import (
    CHUNK_ID_KEY,
    CONTENT_HASH_KEY,
    LAYOUTS,
    ConfigurationError,
    Hit,
    Layout,
    Record,
    Sink,
    StoreEntry,
    e5_document_id,
    get_layout,
    layout_names,
    layout_of_metadata,
    register_layout,
    register_store,
)

TOY = "toy-kv"


def _toy_encode(layout: Layout, record: Record, remove_text: bool) -> dict[str, Any]:
    return {"toy_version": 1, "chunk": record.id, "fields": dict(record.metadata)}


def _toy_decode(text: str | None, metadata: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    fields = dict(metadata.get("fields") or {})
    return text, {**fields, CHUNK_ID_KEY: metadata.get("chunk")} if "chunk" in metadata else fields


def _toy_shows(metadata: Mapping[str, Any]) -> bool:
    return "toy_version" in metadata


def _toy_layout() -> Layout:
    return Layout(
        TOY,
        TOY,
        "a toy nested key-value schema",
        reserved=("toy_note",),
        encode=_toy_encode,
        decode=_toy_decode,
        shows=_toy_shows,
    )


#: (uri, collection) -> row id -> (text, stored metadata, vector): the toy store's "server".
_TABLES: dict[tuple[str, str], dict[str, tuple[str, dict[str, Any], np.ndarray]]] = {}


class ToySink(Sink):
    """An in-memory store (``toy://NAME``) with the ``e5`` and ``toy-kv`` layouts; like a real
    sink it stores what the layout's codec gives and reads back through ``layout.hit``."""

    name: ClassVar[str] = "toy"
    layouts: ClassVar[tuple[str, ...]] = ("e5", TOY)

    def __init__(
        self, uri: str, collection: str, *, retry_seconds: float | None = None, layout: str | None = None
    ) -> None:
        self.uri, self.collection, self.requested_layout = uri, collection, layout
        self._key = (uri, collection)

    def _rows(self) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]:
        return _TABLES.get(self._key, {})

    def _hit(self, row_id: str, score: float = 0.0) -> Hit:
        text, metadata, _ = self._rows()[row_id]
        return self.layout.hit(row_id, score, text, metadata)

    def detect_layout(self) -> str | None:
        rows = self._rows()
        return layout_of_metadata(next(iter(rows.values()))[1]) if rows else None

    def ensure_collection(self, dim: int) -> None:
        self.layout  # noqa: B018 - resolves the layout first: a mismatch writes nothing
        _TABLES.setdefault(self._key, {})

    def max_batch_records(self, dim: int) -> int:
        return 3

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        found = {}
        for chunk in ids:
            row = self.layout.row_id(chunk)
            if row in self._rows():
                value = self._hit(row).metadata.get(CONTENT_HASH_KEY)
                if isinstance(value, str):
                    found[chunk] = value
        return found

    def upsert(self, records: Sequence[Record]) -> None:
        assert len(records) <= 3
        for record in records:
            _TABLES[self._key][self.layout.row_id(record.id)] = (
                record.text,
                self.layout.metadata(record),
                record.embedding,
            )

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        scored = sorted(
            ((float(np.dot(v, vector)), row) for row, (_, _, v) in self._rows().items()), reverse=True
        )
        return [self._hit(row, score) for score, row in scored[:k]]

    def count(self) -> int:
        return len(self._rows())

    def scan(self, page_size: int = 1000) -> Iterator[list[tuple[str, str | None]]]:
        hits = [self._hit(row) for row in self._rows()]
        if hits:
            yield [(hit.id, e5_document_id(hit.metadata)) for hit in hits]

    def delete(self, ids: Iterable[str]) -> None:
        for chunk in ids:
            self._rows().pop(self.layout.row_id(chunk), None)

    def drop(self) -> None:
        _TABLES.pop(self._key, None)
        self.forget_layout()


class _Embedder:
    """A deterministic encoder with the tiny model's tokenizer (for the chunker)."""

    model_name, dimension, max_length, batch_tokens, recipe = "toy-model", 4, 64, 256, None

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.embedded = 0

    def encode_documents(self, texts: Sequence[str], task: Any = None) -> np.ndarray:
        self.embedded += len(texts)
        rows = np.array(
            [[len(t), sum(map(ord, t)) % 97 + 1, t.count(" ") + 1, 1.0] for t in texts], np.float32
        )
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def encode_queries(self, texts: Sequence[str], task: Any = None) -> np.ndarray:
        return self.encode_documents(texts)


@pytest.fixture
def toy_layout() -> Iterator[Layout]:
    layout = register_layout(_toy_layout())
    register_store("toy", StoreEntry(f"{__name__}:ToySink", "toy", uri_schemes=("toy://",), server_only=True))
    yield layout
    # test isolation only: a real plugin registers once, at import
    from e5_integrations.ingest import STORES, _layout

    _layout._REGISTRY.pop(TOY, None)
    STORES.pop("toy", None)
    _TABLES.clear()


@pytest.fixture
def embedder(tiny_model_dir: Path) -> _Embedder:
    from transformers import AutoTokenizer

    return _Embedder(AutoTokenizer.from_pretrained(str(tiny_model_dir)))


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_a_registered_layout_is_known_everywhere(toy_layout: Layout) -> None:
    assert get_layout(TOY, ToySink.layouts, "toy") is toy_layout
    assert TOY in layout_names() and TOY not in LAYOUTS  # LAYOUTS: the built-ins every store has
    assert layout_of_metadata(_toy_encode(toy_layout, Record("a#0", "t", {}, np.ones(4)), True)) == TOY
    assert layout_of_metadata({CONTENT_HASH_KEY: "h"}) == "e5"  # the built-ins are still found
    with pytest.raises(ConfigurationError, match="toy-kv.*registered already.*replace=True"):
        register_layout(_toy_layout())
    with pytest.raises(ConfigurationError, match=r"unknown layout 'toy-kv' for the chroma store"):
        get_layout(TOY, LAYOUTS, "chroma")  # a store that does not list it


def test_every_registered_layout_pickles(toy_layout: Layout) -> None:
    """Layouts travel to Ray workers inside sinks: records of module-level functions pickle."""
    import pickle

    for name in layout_names():
        layout = get_layout(name, (name,))
        assert pickle.loads(pickle.dumps(layout)) == layout


def test_ingest_into_a_toy_layout_embeds_once_and_keeps_every_guarantee(
    toy_layout: Layout, embedder: _Embedder, tmp_path: Path
) -> None:
    long_text = " ".join(f"sentence {n} of a document long enough for several chunks." for n in range(12))
    docs: list[dict[str, Any]] = [
        {"id": "a", "text": long_text, "lang": "en", "year": 2024},
        {"id": "b", "text": "a short one", "lang": "de"},
    ]
    source = _write(tmp_path / "docs.jsonl", docs)
    sink = ToySink("toy://kb", "col", layout=TOY)
    first = ingest(source, sink, embedder, chunk_tokens=16, chunk_overlap=4)
    chunks = sink.count()
    assert first.layout == TOY and first.embedded == chunks >= 4
    # stored in the toy layout's form, under UUID row ids, and read back through its codec
    row_id, (_, stored, _) = next(iter(_TABLES[("toy://kb", "col")].items()))
    assert stored["toy_version"] == 1 and stored["fields"][CONTENT_HASH_KEY]
    assert row_id == toy_layout.row_id(stored["chunk"]) != stored["chunk"]
    [hit] = sink.search(embedder.encode_documents(["a short one"])[0], 1)
    assert (hit.id, hit.text, hit.metadata["lang"], hit.metadata["document_id"]) == (
        "b#0",
        "a short one",
        "de",
        "b",
    )

    again = ingest(source, ToySink("toy://kb", "col"), embedder, chunk_tokens=16, chunk_overlap=4)
    assert (again.layout, again.embedded, again.skipped_unchanged) == (TOY, 0, chunks)

    # a shrunk document loses its stale chunks; a removed one is pruned
    _write(source, [{"id": "a", "text": "now short", "lang": "en", "year": 2024}])
    third = ingest(source, ToySink("toy://kb", "col"), embedder, chunk_tokens=16, chunk_overlap=4, prune=True)
    assert third.embedded == 1 and third.deleted_stale == chunks - 2 and third.pruned == 1
    assert sink.count() == 1


def test_a_toy_layout_refuses_its_reserved_field_before_writing(
    toy_layout: Layout, embedder: _Embedder, tmp_path: Path
) -> None:
    from e5_integrations import SourceError

    source = _write(
        tmp_path / "docs.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y", "toy_note": 1}]
    )
    sink = ToySink("toy://kb", "refused", layout=TOY)
    with pytest.raises(SourceError, match="toy_note.*toy-kv layout.*rename the field"):
        ingest(source, sink, embedder)
    assert sink.count() == 0


def test_the_command_takes_a_registered_layout(
    toy_layout: Layout, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path / "docs.jsonl", [{"id": f"d{i}", "text": f"topic {i}"} for i in range(3)])
    argv = [
        "ingest",
        str(source),
        "--uri",
        "toy://cli",
        "--layout",
        TOY,
        "--model",
        str(tiny_model_dir),
        "--json",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert (report["store"], report["layout"], report["written"]) == ("toy", TOY, 3)
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["skipped_unchanged"] == 3
