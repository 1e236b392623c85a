"""One table of stores: a fifth store is one module plus ``register_store``, and ``--store``,
``open_sink``, the check pass and the layouts all see it without another edit."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from e5_integrations.cli import main
from e5_integrations.ingest import STORES, Document, Hit, Record, Sink, StoreEntry, register_store
from e5_integrations.ingest._registry import document_check, infer_store, is_shared_store, open_sink
from e5_integrations.ingest._sink import e5_document_id

_TABLES: dict[tuple[str, str], dict[str, tuple[Record, str]]] = {}


class MemorySink(Sink):
    """A toy store kept in this process (``memory://NAME``), in the ``e5`` or ``langchain`` layout."""

    name: ClassVar[str] = "memory"
    layouts: ClassVar[tuple[str, ...]] = ("e5", "langchain")

    def __init__(
        self, uri: str, collection: str, *, retry_seconds: float | None = None, layout: str | None = None
    ) -> None:
        self.uri, self.collection, self.requested_layout = uri, collection, layout
        self._key = (uri, collection)

    @classmethod
    def check_document(cls, document: Document, layout: str = "e5") -> str | None:
        if "forbidden" in document.metadata:
            return "field 'forbidden': the memory store refuses it"
        return super().check_document(document, layout)

    def detect_layout(self) -> str | None:
        rows = _TABLES.get(self._key)
        return next(iter(rows.values()))[1] if rows else None

    def _rows(self) -> dict[str, tuple[Record, str]]:
        return _TABLES.get(self._key, {})

    def ensure_collection(self, dim: int) -> None:
        self.layout  # noqa: B018 - resolves the layout first: a mismatch writes nothing
        _TABLES.setdefault(self._key, {})

    def max_batch_records(self, dim: int) -> int:
        return 100

    def fetch_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        rows = self._rows()
        return {i: rows[i][0].metadata["e5_content_hash"] for i in ids if i in rows}

    def upsert(self, records: Sequence[Record]) -> None:
        for record in records:
            _TABLES[self._key][record.id] = (record, self.layout.name)

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        rows = [record for record, _ in self._rows().values()]
        rows.sort(key=lambda r: -float(np.dot(r.embedding, vector)))
        return [Hit(r.id, float(np.dot(r.embedding, vector)), r.text, dict(r.metadata)) for r in rows[:k]]

    def count(self) -> int:
        return len(self._rows())

    def scan(self, page_size: int = 1000) -> Iterator[list[tuple[str, str | None]]]:
        rows = list(self._rows().values())
        if rows:
            yield [(r.id, e5_document_id(r.metadata)) for r, _ in rows]

    def delete(self, ids: Iterable[str]) -> None:
        for i in ids:
            self._rows().pop(i, None)

    def drop(self) -> None:
        _TABLES.pop(self._key, None)
        self.forget_layout()


@pytest.fixture
def memory_store() -> Iterator[None]:
    register_store(
        "memory", StoreEntry(f"{__name__}:MemorySink", "memory", uri_schemes=("memory://",), server_only=True)
    )
    try:
        yield
    finally:
        STORES.pop("memory")
        _TABLES.clear()


@pytest.mark.usefixtures("memory_store")
def test_a_registered_store_is_known_everywhere(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert infer_store(None, "memory://kb") == ("memory", "memory://kb")
    assert is_shared_store("memory", "memory://kb")  # what the Ray engine asks
    refused = document_check("memory", "langchain")(Document("d", "t", "f", {"forbidden": 1}))
    assert refused is not None and "memory store" in refused
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "\n".join(json.dumps({"id": f"d{i}", "text": f"topic {i} text", "lang": "en"}) for i in range(5))
        + "\n"
    )
    model = ["--model", str(tiny_model_dir)]
    argv = [
        "ingest",
        str(docs),
        "--store",
        "memory",
        "--uri",
        "memory://kb",
        "--layout",
        "langchain",
        *model,
        "--json",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert (report["store"], report["layout"], report["written"]) == ("memory", "langchain", 5)
    # the layout is found again from the collection; a disagreeing one is a usage error, nothing written
    assert main(argv[:6] + argv[8:]) == 0
    assert json.loads(capsys.readouterr().out)["skipped_unchanged"] == 5
    assert main([*argv[:6], "--layout", "e5", *model]) == 2
    assert "in the langchain layout" in capsys.readouterr().err
    assert main([*argv[:6], "--layout", "llama-index", *model]) == 2
    assert "unknown layout 'llama-index' for the memory store" in capsys.readouterr().err
    assert main(["search", "topic 3", "--uri", "memory://kb", *model, "--json", "-k", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    with open_sink(None, "memory://kb", "e5_docs") as sink:
        assert sink.layout.name == "langchain" and sink.count() == 5


def test_the_store_flag_lists_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ingest", "x", "--store", "nope"])
    err = capsys.readouterr().err
    assert all(name in err for name in STORES)


def test_unknown_and_store_specific_layouts_are_refused_before_connecting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit):
        main(["ingest", str(tmp_path), "--layout", "langchian"])
    assert "invalid choice: 'langchian'" in capsys.readouterr().err
    (tmp_path / "a.txt").write_text("text")
    store = tmp_path / "store"
    assert main(["ingest", str(tmp_path / "a.txt"), "--uri", str(store), "--layout", "langchain-legacy"]) == 2
    err = capsys.readouterr().err
    assert "unknown layout 'langchain-legacy' for the chroma store" in err and "only on pgvector" in err
    assert not store.exists()  # refused before the store was opened
