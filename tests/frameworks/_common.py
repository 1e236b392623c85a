"""What the framework tests of every store share: the corpus, the ``e5`` CLI in-process, and
the checks that a framework's results are ``e5 search``'s."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from e5_integrations.cli import main
from e5_integrations.ingest import CHUNK_ID_KEY
from e5_integrations.ingest._layout import uuid_id

__all__ = [
    "APP_TEXTS",
    "HANDBOOK",
    "LANGS",
    "QUERY",
    "RECORD_3",
    "assert_llama_index_finds_the_hits",
    "cli",
    "corpus",
    "e5_ingest",
    "e5_ingest_status",
    "e5_search",
    "record_text",
    "user_fields",
]

LANGS = ("en", "de", "fr")
QUERY = "How does the ingester keep vector stores in sync?"
HANDBOOK = " ".join(f"Handbook sentence {i} explains step {i} of running the ingester." for i in range(20))
#: Texts an app adds with the framework class itself.
APP_TEXTS = [
    "The app added this note about caching answers.",
    "A second app note: retries use exponential back-off.",
    "Third app note on rate limits of the chat model.",
]


def record_text(i: int) -> str:
    return f"Record {i} is about subject {i * 7 % 11} and the vector store number {i}."


RECORD_3 = record_text(3)


def corpus(folder: Path, n: int = 24, handbook: bool = True) -> Path:
    """``n`` one-chunk JSONL records with ``lang`` and ``topic``, plus a several-chunk handbook."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": f"rec-{i}", "text": record_text(i), "lang": LANGS[i % 3], "topic": f"t{i % 4}"}
        for i in range(n)
    ]
    if handbook:
        rows.append({"id": "handbook", "text": HANDBOOK, "lang": "en", "topic": "manual"})
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def cli(*argv: str) -> tuple[int, str, str]:
    """``e5 ARGV`` in this process: ``(exit status, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def e5_ingest_status(
    model: Path, store: Sequence[str], collection: str, source: Path, *extra: str
) -> tuple[int, str, str]:
    """``e5 ingest SOURCE`` (``store``: the ``--store``/``--uri`` flags) with small chunks, ``--json``."""
    return cli(
        "ingest", str(source), "--model", str(model), "--no-progress", "--json", *store,
        "--collection", collection, "--chunk-tokens", "32", *extra,
    )  # fmt: skip


def e5_ingest(
    model: Path, store: Sequence[str], collection: str, source: Path, *extra: str
) -> dict[str, Any]:
    """:func:`e5_ingest_status` that must succeed: its report."""
    code, out, err = e5_ingest_status(model, store, collection, source, *extra)
    assert code == 0, err
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


def e5_search(
    model: Path, store: Sequence[str], collection: str, query: str = QUERY, k: int = 100
) -> list[dict[str, Any]]:
    """``e5 search QUERY --json``: its hits."""
    code, out, err = cli(
        "search", query, "--model", str(model), *store, "--collection", collection, "--json", "-k", str(k)
    )
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def user_fields(metadata: dict[str, Any]) -> dict[str, Any]:
    """The corpus's own fields of a row's metadata."""
    return {k: v for k, v in metadata.items() if k in ("lang", "topic")}


def assert_llama_index_finds_the_hits(index: Any, hits: list[dict[str, Any]]) -> None:
    """A LlamaIndex ``VectorStoreIndex`` over an e5 ingest returns ``e5 search``'s top 5 as
    ``TextNode``s (ids, texts, cosine scores, top-level metadata, ref doc ids, no bookkeeping
    in the LLM text), and a ``MetadataFilters`` on ``lang`` selects exactly those hits."""
    from llama_index.core.schema import MetadataMode, TextNode
    from llama_index.core.vector_stores import MetadataFilter, MetadataFilters

    found = index.as_retriever(similarity_top_k=5).retrieve(QUERY)
    assert [n.node.metadata[CHUNK_ID_KEY] for n in found] == [h["id"] for h in hits[:5]]
    for scored, hit in zip(found, hits, strict=False):
        node = scored.node
        assert isinstance(node, TextNode) and node.text == hit["text"]
        assert scored.score == pytest.approx(hit["score"], abs=1e-4)
        assert user_fields(node.metadata) == user_fields(hit["metadata"]) and node.metadata["lang"] in LANGS
        assert node.node_id == uuid_id(hit["id"]) and node.ref_doc_id == hit["metadata"]["document_id"]
        # e5's bookkeeping stays out of what the LLM and the embedder see
        assert "e5_content_hash" not in node.get_content(metadata_mode=MetadataMode.LLM)

    german = MetadataFilters(filters=[MetadataFilter(key="lang", value="de")])
    filtered = index.as_retriever(similarity_top_k=100, filters=german).retrieve(QUERY)
    expected = [h["id"] for h in hits if h["metadata"]["lang"] == "de"]
    assert [n.node.metadata[CHUNK_ID_KEY] for n in filtered] == expected and len(expected) == 8
