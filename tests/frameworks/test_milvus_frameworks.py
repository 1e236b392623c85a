"""Milvus in the framework layouts: what ``e5 ingest --layout ...`` writes, the frameworks' own
classes read with their ordinary arguments, and e5 writes into the collections they made.

- LangChain: langchain-milvus ``Milvus`` in this venv (pymilvus 3);
- LlamaIndex: ``MilvusVectorStore`` needs pymilvus<3, so it runs in ``$E5_LLAMA_MILVUS_VENV``
  (``_llama_milvus_reader.py``, fed with embeddings that e5's ``E5MistralEmbedding`` computed
  here). Its reader loads a ``.db`` file's collection first: milvus-lite 3 opens a file with
  every collection released and the class never loads one (the same for a collection it made).

Every test runs on a Milvus Lite file (milvus-lite 3.2.2, shared by both venvs) and on the
C++ Milvus Lite 2.5 server. One ``e5 ingest`` per layout and target serves the reading tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from e5_integrations.ingest._layout import uuid_id
from tests.frameworks._common import HANDBOOK, cli, e5_ingest, e5_ingest_status, e5_search, record_text
from tests.frameworks._common import QUERY as COMMON_QUERY
from tests.frameworks._common import corpus as common_corpus
from tests.frameworks._readme import readme_snippet
from tests.stores._milvus_server import milvus_server_uri  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration

READER = Path(__file__).with_name("_llama_milvus_reader.py")
REPO = Path(__file__).resolve().parents[2]
QUERY = "Which city is the capital of a country?"
LANGS = ("en", "de", "fr")
N_RECORDS = 30
TOPICS = [
    "Paris is the capital of France and sits on the Seine.",
    "Berlin is the capital of Germany; its wall fell in 1989.",
    "The mitochondrion produces most of the ATP of a cell.",
    "Photosynthesis turns light into chemical energy in glucose.",
    "Rust's borrow checker rejects data races at compile time.",
    "Milvus stores vectors in collections with typed fields.",
    "Le Mont Blanc culmine à 4 806 mètres d'altitude.",
    "Python 3.12 removed distutils from the standard library.",
    "The Danube flows through ten countries into the Black Sea.",
    "Tokyo is the capital of Japan and its largest city.",
]


def _records(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"doc{i:02d}",
            "text": f"{TOPICS[i % len(TOPICS)]} Note {i} of the test corpus.",
            "lang": LANGS[i % len(LANGS)],
            "rank": i,
        }
        for i in range(n)
    ]


def _write_corpus(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    (root / "records.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records(n)), encoding="utf-8"
    )
    return root


_e5 = cli  # ``e5 ARGV`` in-process: (status, stdout, stderr)


def _ingest(model: Path, uri: str, collection: str, corpus: Path, *extra: str) -> dict[str, Any]:
    code, out, err = _e5(
        "ingest", str(corpus), "--store", "milvus", "--uri", uri, "--collection", collection,
        "--model", str(model), "--id-root", str(corpus), "--json", "--no-progress", *extra,
    )  # fmt: skip
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def _search(model: Path, uri: str, collection: str, k: int) -> list[dict[str, Any]]:
    code, out, err = _e5(
        "search", QUERY, "--store", "milvus", "--uri", uri, "--collection", collection,
        "--model", str(model), "--json", "-k", str(k),
    )  # fmt: skip
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _count(uri: str, collection: str) -> int:
    from e5_integrations.sinks.milvus import MilvusSink

    with MilvusSink(uri, collection) as sink:
        return sink.count()


def _llama(uri: str, collection: str, *steps: dict[str, Any]) -> list[Any]:
    """Run ``steps`` with LlamaIndex's MilvusVectorStore in its own venv (module docstring)."""
    venv = Path(os.environ.get("E5_LLAMA_MILVUS_VENV") or REPO / ".venv-llama-milvus")
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no LlamaIndex Milvus venv at {venv} (E5_LLAMA_MILVUS_VENV)")
    if "://" not in uri:
        # a .db file is open in one process at a time, and pymilvus keeps milvus-lite serving
        # it in this process after every client closed: stop that server (it restarts on use)
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)
    request = {"uri": uri, "collection": collection, "load": "://" not in uri, "steps": list(steps)}
    done = subprocess.run(
        [str(python), "-W", "ignore", str(READER)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: list[Any] = json.loads(done.stdout.strip().splitlines()[-1])["results"]
    return results


def _langchain(uri: str, collection: str, embeddings: Any) -> Any:
    """langchain-milvus's ``Milvus`` as an app opens e5's collection (the README's arguments)."""
    from langchain_milvus import Milvus

    return Milvus(
        embeddings,
        collection_name=collection,
        connection_args={"uri": uri},
        enable_dynamic_field=True,
    )


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def lc_embeddings(model: Path) -> Any:
    from e5_integrations.langchain import E5MistralEmbeddings

    return E5MistralEmbeddings(model_name=str(model), device="cpu")


@pytest.fixture(scope="module")
def li_embedding(model: Path) -> Any:
    from e5_integrations.llama_index import E5MistralEmbedding

    return E5MistralEmbedding(model_name=str(model), device="cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("corpus") / "docs", N_RECORDS)


_TARGETS = ("langchain", "llama", "lc_made", "li_made", "lc_auto")


@pytest.fixture(scope="module", params=["lite", "server"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Where each layout's collection lives: one ``.db`` file per use on the lite target (a
    file is open in one process at a time, and the LlamaIndex reader is another process)."""
    if request.param == "lite":
        root = tmp_path_factory.mktemp("milvus-lite")
        yield {name: str(root / f"{name}.db") for name in _TARGETS}
    else:
        uri = request.getfixturevalue("milvus_server_uri")
        yield dict.fromkeys(_TARGETS, uri)


@pytest.fixture(scope="module")
def ingested(target: dict[str, str], model: Path, corpus: Path) -> dict[str, tuple[str, str]]:
    """``e5 ingest --layout langchain`` and ``--layout llama-index``: ``{layout: (uri, collection)}``."""
    suffix = uuid.uuid4().hex[:8]
    made = {}
    for layout, key in (("langchain", "langchain"), ("llama-index", "llama")):
        collection = f"kb_{key}_{suffix}"
        report = _ingest(model, target[key], collection, corpus, "--layout", layout)
        assert (report["layout"], report["embedded"], report["chunks"]) == (layout, N_RECORDS, N_RECORDS)
        made[layout] = (target[key], collection)
    return made


def _chunk_lang(chunk_id: str) -> str:
    return LANGS[int(chunk_id.split("#")[0][3:]) % len(LANGS)]


def test_langchain_reads_what_e5_ingest_wrote(
    ingested: dict[str, tuple[str, str]], model: Path, lc_embeddings: Any
) -> None:
    uri, collection = ingested["langchain"]
    expected = _search(model, uri, collection, 5)
    store = _langchain(uri, collection, lc_embeddings)

    found = store.similarity_search_with_score(QUERY, k=5)
    assert [doc.metadata["e5_chunk_id"] for doc, _ in found] == [hit["id"] for hit in expected]
    assert [doc.page_content for doc, _ in found] == [hit["text"] for hit in expected]
    # an L2 collection (the class's default): Milvus gives the squared distance 2 - 2cos
    np.testing.assert_allclose([1 - d / 2 for _, d in found], [hit["score"] for hit in expected], atol=1e-4)
    relevance = store.similarity_search_with_relevance_scores(QUERY, k=5)
    np.testing.assert_allclose(
        [s for _, s in relevance], [(1 + hit["score"]) / 2 for hit in expected], atol=1e-4
    )

    doc = found[0][0]
    chunk = doc.metadata["e5_chunk_id"]
    assert doc.metadata["pk"] == uuid_id(chunk)
    assert (doc.metadata["lang"], doc.metadata["document_id"]) == (_chunk_lang(chunk), chunk.split("#")[0])
    assert doc.metadata["rank"] == int(chunk[3:5]) and "e5_content_hash" in doc.metadata
    assert {k: v for k, v in doc.metadata.items() if k != "pk"} == expected[0]["metadata"] | {
        "e5_chunk_id": chunk
    }

    german = store.similarity_search(QUERY, k=4, expr="lang == 'de'")
    everything = _search(model, uri, collection, N_RECORDS)
    assert [d.metadata["e5_chunk_id"] for d in german] == [
        hit["id"] for hit in everything if hit["metadata"]["lang"] == "de"
    ][:4]


def test_llama_index_reads_what_e5_ingest_wrote(
    ingested: dict[str, tuple[str, str]], model: Path, li_embedding: Any
) -> None:
    uri, collection = ingested["llama-index"]
    expected = _search(model, uri, collection, 5)
    everything = _search(model, uri, collection, N_RECORDS)
    query = li_embedding.get_query_embedding(QUERY)
    retrieved, german, count_before, _, count_after = _llama(
        uri,
        collection,
        {"do": "retrieve", "embedding": query, "k": 5},
        {"do": "query", "embedding": query, "k": 4, "filters": {"lang": "de"}},
        {"do": "count"},
        {"do": "delete_ref_doc", "ref_doc_id": "doc03"},
        {"do": "count"},
    )
    assert [n["metadata"]["e5_chunk_id"] for n in retrieved] == [hit["id"] for hit in expected]
    assert [n["text"] for n in retrieved] == [hit["text"] for hit in expected]
    assert {n["type"] for n in retrieved} == {"TextNode"}
    assert [n["id"] for n in retrieved] == [uuid_id(hit["id"]) for hit in expected]
    # a COSINE collection: LlamaIndex's similarities are e5's scores
    np.testing.assert_allclose([n["score"] for n in retrieved], [hit["score"] for hit in expected], atol=1e-4)
    node = retrieved[0]
    assert node["ref_doc_id"] == node["metadata"]["document_id"] == expected[0]["id"].split("#")[0]
    assert node["metadata"] == expected[0]["metadata"] | {"e5_chunk_id": expected[0]["id"]}
    assert node["metadata"]["lang"] == _chunk_lang(expected[0]["id"])

    assert [n["metadata"]["e5_chunk_id"] for n in german] == [
        hit["id"] for hit in everything if hit["metadata"]["lang"] == "de"
    ][:4]
    # delete_ref_doc deletes exactly that document's chunks
    assert (count_before, count_after) == (N_RECORDS, N_RECORDS - 1)
    remaining = {hit["id"] for hit in _search(model, uri, collection, N_RECORDS)}
    assert remaining == {hit["id"] for hit in everything} - {"doc03#0"}


APP_TEXTS = [
    "Rome is the capital of Italy.",
    "An app's own note about vector stores.",
    "Madrid is the capital of Spain.",
]


def _prune_and_refuse(
    model: Path, uri: str, collection: str, corpus: Path, tmp_path: Path, other: str
) -> None:
    """Shared by both framework-made collections: re-run, prune, a disagreeing --layout."""
    again = _ingest(model, uri, collection, corpus)
    assert (again["embedded"], again["skipped_unchanged"]) == (0, N_RECORDS)
    fewer = _write_corpus(tmp_path / "fewer", N_RECORDS - 5)
    pruned = _ingest(model, uri, collection, fewer, "--prune")
    # embedded: the file's probe chunk only, written again with the new file's seal
    assert (pruned["embedded"], pruned["pruned"]) == (1, 5)
    assert _count(uri, collection) == N_RECORDS - 5 + len(APP_TEXTS)  # the app's rows are kept

    code, _, err = _e5(
        "ingest", str(corpus), "--store", "milvus", "--uri", uri, "--collection", collection,
        "--model", str(model), "--layout", other, "--no-progress",
    )  # fmt: skip
    assert code == 2 and re.search(rf"layout.*--layout {other}.*nothing was written", err, re.S), err
    assert _count(uri, collection) == N_RECORDS - 5 + len(APP_TEXTS)


def test_e5_writes_into_a_collection_langchain_made(
    target: dict[str, str], model: Path, corpus: Path, lc_embeddings: Any, tmp_path: Path
) -> None:
    from langchain_core.documents import Document

    uri, collection = target["lc_made"], f"lc_app_{uuid.uuid4().hex[:8]}"
    app = _langchain(uri, collection, lc_embeddings)
    app_ids = [f"app-{i}" for i in range(len(APP_TEXTS))]
    app.add_documents(
        [Document(page_content=t, metadata={"lang": "it", "origin": "app"}) for t in APP_TEXTS], ids=app_ids
    )
    first = _ingest(model, uri, collection, corpus)  # no --layout: found from the collection
    assert (first["layout"], first["embedded"]) == ("langchain", N_RECORDS)

    # the class reads its own rows and e5's; e5 search reads both with cosine scores
    reader = _langchain(uri, collection, lc_embeddings)
    found = reader.similarity_search_with_score(QUERY, k=N_RECORDS + len(APP_TEXTS))
    assert len(found) == N_RECORDS + len(APP_TEXTS)
    assert {d.metadata["pk"] for d, _ in found if d.metadata.get("origin") == "app"} == set(app_ids)
    hits = _search(model, uri, collection, 8)
    top = found[:8]
    assert [h["id"] for h in hits] == [d.metadata.get("e5_chunk_id", d.metadata["pk"]) for d, _ in top]
    assert [h["text"] for h in hits] == [d.page_content for d, _ in top]
    np.testing.assert_allclose([h["score"] for h in hits], [1 - s / 2 for _, s in top], atol=1e-4)
    vectors = np.array(lc_embeddings.embed_documents(APP_TEXTS))
    cosines = vectors @ np.array(lc_embeddings.embed_query(QUERY))
    for hit in hits:
        if hit["id"] in app_ids:
            assert hit["metadata"] == {"lang": "it", "origin": "app"}
            assert hit["score"] == pytest.approx(cosines[app_ids.index(hit["id"])], abs=1e-4)
    assert any(hit["id"] in app_ids for hit in _search(model, uri, collection, N_RECORDS + 3))

    _prune_and_refuse(model, uri, collection, corpus, tmp_path, "llama-index")


def test_e5_writes_into_a_collection_llama_index_made(
    target: dict[str, str], model: Path, corpus: Path, li_embedding: Any, tmp_path: Path
) -> None:
    uri, collection = target["li_made"], f"li_app_{uuid.uuid4().hex[:8]}"
    vectors = li_embedding.get_text_embedding_batch(APP_TEXTS)
    nodes = [
        {
            "id": str(uuid.uuid4()),
            "text": t,
            "metadata": {"lang": "it"},
            "ref_doc_id": f"app-doc-{i}",
            "embedding": v,
        }
        for i, (t, v) in enumerate(zip(APP_TEXTS, vectors, strict=True))
    ]
    _llama(uri, collection, {"do": "create", "dim": len(vectors[0]), "nodes": nodes})
    first = _ingest(model, uri, collection, corpus)  # no --layout: found from the collection
    assert (first["layout"], first["embedded"]) == ("llama-index", N_RECORDS)

    query = li_embedding.get_query_embedding(QUERY)
    [retrieved] = _llama(uri, collection, {"do": "retrieve", "embedding": query, "k": N_RECORDS + 3})
    assert len(retrieved) == N_RECORDS + len(APP_TEXTS)
    assert {n["text"] for n in retrieved if "e5_chunk_id" not in n["metadata"]} == set(APP_TEXTS)
    hits = _search(model, uri, collection, 8)
    top = retrieved[:8]
    assert [h["id"] for h in hits] == [n["metadata"].get("e5_chunk_id", n["id"]) for n in top]
    assert [h["text"] for h in hits] == [n["text"] for n in top]
    # the class made an IP collection: e5 reads it as cosine (unit vectors), as LlamaIndex does
    np.testing.assert_allclose([h["score"] for h in hits], [n["score"] for n in top], atol=1e-4)
    for hit in _search(model, uri, collection, N_RECORDS + 3):
        app = {n["id"]: n for n in nodes}.get(hit["id"])
        if app is not None:  # its ref doc id stays visible as LlamaIndex's document_id
            assert hit["metadata"] == {"lang": "it", "document_id": app["ref_doc_id"]}
            assert hit["text"] == app["text"]

    _prune_and_refuse(model, uri, collection, corpus, tmp_path, "langchain")


# -- a collection LangChain made without ids: auto_id=True, an INT64 primary key ------------------------


def _auto_id_app(uri: str, collection: str, embeddings: Any, dynamic: bool = True) -> None:
    """An app's collection as langchain-milvus's docs make it: ``from_documents`` without ``ids``,
    so the class makes ``pk`` an INT64 with ``auto_id=True`` and Milvus assigns the keys. With
    ``dynamic=False`` the class's defaults exactly (each metadata key of the first document
    becomes a declared field, and there is no room for e5's bookkeeping)."""
    from langchain_core.documents import Document
    from langchain_milvus import Milvus

    docs = [Document(page_content=t, metadata={"lang": "it", "origin": "app"}) for t in APP_TEXTS]
    extra = {"enable_dynamic_field": True} if dynamic else {}
    Milvus.from_documents(docs, embeddings, collection_name=collection, connection_args={"uri": uri}, **extra)
    schema = _describe(uri, collection)
    [primary] = [f for f in schema["fields"] if f.get("is_primary")]
    assert (primary["name"], primary["type"].name, primary.get("auto_id")) == ("pk", "INT64", True)
    assert bool(schema.get("enable_dynamic_field")) is dynamic


def _describe(uri: str, collection: str) -> dict[str, Any]:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    try:
        return dict(client.describe_collection(collection))
    finally:
        client.close()


def _rows(uri: str, collection: str) -> list[dict[str, Any]]:
    """Every row's ``pk``, ``text`` and ``e5_chunk_id`` (absent on the app's rows), read with
    pymilvus itself, duplicates and all."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    try:
        client.load_collection(collection)
        rows = client.query(
            collection,
            filter="",
            limit=10_000,
            output_fields=["pk", "text", "e5_chunk_id"],
            consistency_level="Strong",
        )
        return [dict(row) for row in rows]
    finally:
        client.close()


def _chunks_per_id(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(row["e5_chunk_id"] for row in rows if "e5_chunk_id" in row)


def _rewrite(path: Path, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Path:
    """The JSONL corpus at ``path`` with each record passed through ``change`` (``None`` drops
    it), in place: the file's path is every chunk's ``source``, so a moved file changes them all."""
    rows = [change(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r is not None), encoding="utf-8")
    return path


def _changed(row: dict[str, Any]) -> dict[str, Any] | None:
    """rec-5 rewritten, the handbook cut to its first four sentences (fewer chunks)."""
    if row["id"] == "rec-5":
        return row | {"text": "Record 5 now says something else about stores entirely."}
    if row["id"] == "handbook":
        return row | {"text": " ".join(HANDBOOK.split(". ")[:4])}
    return row


def test_e5_writes_into_a_collection_langchain_made_without_ids(
    target: dict[str, str], model: Path, lc_embeddings: Any, tmp_path: Path
) -> None:
    uri, collection = target["lc_auto"], f"lc_auto_{uuid.uuid4().hex[:8]}"
    store = ("--store", "milvus", "--uri", uri)
    _auto_id_app(uri, collection, lc_embeddings)
    source = common_corpus(tmp_path / "v1", n=12)

    first = e5_ingest(model, store, collection, source)  # no --layout: found from the collection
    assert (first["layout"], first["embedded"]) == ("langchain", first["chunks"])
    chunks = first["chunks"]
    assert chunks > 13  # 12 records and a handbook of several chunks
    rows = _rows(uri, collection)
    assert len(rows) == chunks + len(APP_TEXTS) and set(_chunks_per_id(rows).values()) == {1}
    assert all(isinstance(row["pk"], int) for row in rows)  # Milvus assigned every key

    # LangChain reads e5's rows and its own; e5 search reads both, in the same order
    reader = _langchain(uri, collection, lc_embeddings)
    found = reader.similarity_search_with_score(COMMON_QUERY, k=100)
    assert len(found) == chunks + len(APP_TEXTS)
    app = [d for d, _ in found if d.metadata.get("origin") == "app"]
    assert sorted(d.page_content for d in app) == sorted(APP_TEXTS)
    assert {d.metadata["e5_chunk_id"] for d, _ in found if "e5_chunk_id" in d.metadata} == set(
        _chunks_per_id(rows)
    )
    hits = e5_search(model, store, collection, k=8)
    top = found[:8]
    assert [h["id"] for h in hits] == [str(d.metadata.get("e5_chunk_id", d.metadata["pk"])) for d, _ in top]
    assert [h["text"] for h in hits] == [d.page_content for d, _ in top]
    np.testing.assert_allclose([h["score"] for h in hits], [1 - s / 2 for _, s in top], atol=1e-4)
    german = reader.similarity_search(COMMON_QUERY, k=100, expr="lang == 'de'")
    assert len(german) == 4 and all(d.metadata["document_id"].startswith("rec-") for d in german)

    again = e5_ingest(model, store, collection, source)
    assert (again["embedded"], again["skipped_unchanged"]) == (0, chunks)

    # a changed record is replaced in place, a shrunk document's stale chunks are deleted
    changed = _rewrite(source, _changed)
    second = e5_ingest(model, store, collection, changed)
    assert second["deleted_stale"] == chunks - second["chunks"] > 0
    assert second["embedded"] + second["skipped_unchanged"] == second["chunks"] and second["embedded"] >= 2
    rows = _rows(uri, collection)
    per_chunk = _chunks_per_id(rows)
    assert len(rows) == second["chunks"] + len(APP_TEXTS) and set(per_chunk.values()) == {1}
    assert len(per_chunk) == second["chunks"]
    assert [r["text"] for r in rows if r.get("e5_chunk_id") == "rec-5#0"] == [
        "Record 5 now says something else about stores entirely."
    ]
    assert e5_ingest(model, store, collection, changed)["embedded"] == 0

    # --prune removes e5's rows of documents that left the sources, never the app's rows
    fewer = _rewrite(changed, lambda r: None if r["id"] in ("rec-0", "rec-1") else r)
    pruned = e5_ingest(model, store, collection, fewer, "--prune")
    assert (pruned["embedded"], pruned["pruned"]) == (0, 2)
    rows = _rows(uri, collection)
    assert len(rows) == second["chunks"] - 2 + len(APP_TEXTS)
    assert sorted(r["text"] for r in rows if "e5_chunk_id" not in r) == sorted(APP_TEXTS)
    assert not {"rec-0#0", "rec-1#0"} & set(_chunks_per_id(rows))


class _Killed(BaseException):
    """The process dies here (kill -9): nothing after this runs, no handler cleans up."""


def test_a_crash_inside_an_auto_id_upsert_ends_exact_after_a_rerun(
    target: dict[str, str], model: Path, lc_embeddings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replaced chunk is inserted first (Milvus assigns a new key), then its old rows are
    deleted: a crash between the two leaves both rows, never none, and the re-run re-embeds
    that chunk and deletes every older row of it."""
    from pymilvus import MilvusClient

    uri, collection = target["lc_auto"], f"lc_crash_{uuid.uuid4().hex[:8]}"
    store = ("--store", "milvus", "--uri", uri)
    _auto_id_app(uri, collection, lc_embeddings)
    source = common_corpus(tmp_path / "v1", n=12, handbook=False)
    assert e5_ingest(model, store, collection, source)["embedded"] == 12
    changed = _rewrite(source, _changed)

    inserted = []
    insert, delete = MilvusClient.insert, MilvusClient.delete

    def inserting(self: Any, *args: Any, **kwargs: Any) -> Any:
        inserted.append(True)
        return insert(self, *args, **kwargs)

    def killed(self: Any, *args: Any, **kwargs: Any) -> Any:
        if inserted:
            raise _Killed  # the upsert's delete of the old rows never happens
        return delete(self, *args, **kwargs)  # deletes before any write (a stale file seal) go through

    with monkeypatch.context() as patch:
        patch.setattr(MilvusClient, "insert", inserting)
        patch.setattr(MilvusClient, "delete", killed)
        with pytest.raises(_Killed):
            e5_ingest(model, store, collection, changed)
    rows = _rows(uri, collection)
    texts = sorted(r["text"] for r in rows if r.get("e5_chunk_id") == "rec-5#0")
    assert texts == sorted([record_text(5), "Record 5 now says something else about stores entirely."])
    # rec-5#0 twice; rec-0#0, the file's probe chunk, was deleted with its stale seal before
    # the file's rows changed, and the run died before writing it again
    assert len(rows) == 12 + 1 - 1 + len(APP_TEXTS)

    rerun = e5_ingest(model, store, collection, changed)
    # the doubled chunk, and the probe chunk the killed run had deleted
    assert (rerun["embedded"], rerun["skipped_unchanged"]) == (2, 10)
    rows = _rows(uri, collection)
    assert len(rows) == 12 + len(APP_TEXTS) and set(_chunks_per_id(rows).values()) == {1}
    assert [r["text"] for r in rows if r.get("e5_chunk_id") == "rec-5#0"] == [
        "Record 5 now says something else about stores entirely."
    ]
    assert e5_ingest(model, store, collection, changed)["embedded"] == 0


#: Chunk ids that a filter expression must quote with care (a line break no engine reads in one).
ODD_CHUNK_IDS = [
    "it's.txt#0",
    'say "hi".md#0',
    "back\\slash#0",
    "日本語 ü 🙂#0",
    "tab\tx#0",
    "line\nbreak#0",
    "line break#0",  # the like pattern of "line\nbreak#0" selects it too
    "\r\n#1",
]


def test_odd_chunk_ids_in_an_auto_id_collection(target: dict[str, str], lc_embeddings: Any) -> None:
    """The sink's own calls on ids with quotes, backslashes, non-ASCII, tabs and line breaks:
    each is found, replaced, scanned and deleted exactly, next to the app's rows."""
    from e5_integrations.ingest import CONTENT_HASH_KEY, DOCUMENT_ID_KEY, Record
    from e5_integrations.sinks.milvus import MilvusSink

    uri, collection = target["lc_auto"], f"lc_odd_{uuid.uuid4().hex[:8]}"
    _auto_id_app(uri, collection, lc_embeddings)
    vectors = np.array(lc_embeddings.embed_documents(ODD_CHUNK_IDS), dtype=np.float32)

    def records(version: str) -> list[Record]:
        return [
            Record(
                i, f"{version} {i}", {DOCUMENT_ID_KEY: i[:-2], CONTENT_HASH_KEY: f"{version}{n}"}, vectors[n]
            )
            for n, i in enumerate(ODD_CHUNK_IDS)
        ]

    with MilvusSink(uri, collection) as sink:
        sink.ensure_collection(vectors.shape[1])
        sink.upsert(records("v1"))
        sink.upsert(records("v2"))  # replaces every chunk: Milvus assigns new keys
        assert sink.fetch_hashes([*ODD_CHUNK_IDS, "absent#0"]) == {
            i: f"v2{n}" for n, i in enumerate(ODD_CHUNK_IDS)
        }
        assert sink.count() == len(ODD_CHUNK_IDS) + len(APP_TEXTS)
        scanned = [row for page in sink.scan() for row in page]
        assert sorted(i for i, doc in scanned if doc is not None) == sorted(ODD_CHUNK_IDS)
        sink.delete(ODD_CHUNK_IDS[:4])
        assert sorted(sink.fetch_hashes(ODD_CHUNK_IDS)) == sorted(ODD_CHUNK_IDS[4:])
        sink.delete(ODD_CHUNK_IDS[4:])
        assert sink.count() == len(APP_TEXTS)  # the app's rows are never touched
    assert sorted(r["text"] for r in _rows(uri, collection)) == sorted(APP_TEXTS)


def test_a_langchain_collection_without_dynamic_fields_is_refused(
    target: dict[str, str], model: Path, lc_embeddings: Any, tmp_path: Path
) -> None:
    """The class's defaults exactly (no ``enable_dynamic_field``): no field can hold e5's
    bookkeeping, so e5 refuses before writing and says which argument makes it writable."""
    uri, collection = target["lc_auto"], f"lc_fixed_{uuid.uuid4().hex[:8]}"
    _auto_id_app(uri, collection, lc_embeddings, dynamic=False)
    code, _, err = e5_ingest_status(
        model, ("--store", "milvus", "--uri", uri), collection, common_corpus(tmp_path / "c", n=3)
    )
    assert code == 1 and "enable_dynamic_field=True" in err and "integer primary key" not in err, err
    assert _count(uri, collection) == len(APP_TEXTS)  # nothing was written


def _ingest_examples(model: Path, uri: str, layout: str) -> None:
    report = _ingest(model, uri, "kb_docs", REPO / "examples" / "docs", "--layout", layout)
    assert report["chunks"] > 0


@pytest.mark.parametrize("layout", ["langchain", "llama-index"])
def test_readme_snippet(
    layout: str, target: dict[str, str], model: Path, li_embedding: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's Milvus snippets, as written, on the server (their URI is a server's)."""
    if "://" not in target["langchain"]:
        pytest.skip("the snippets open a Milvus server")
    from e5_integrations.sinks.milvus import MilvusSink

    uri = target["langchain"]
    code = readme_snippet(f"milvus:{layout}")
    assert code.startswith(
        f"# e5 ingest ./docs --store milvus --uri http://localhost:19530 --collection kb_docs --layout {layout}"
    )
    code = code.replace("http://localhost:19530", uri)
    with MilvusSink(uri, "kb_docs") as old:
        old.drop()
    _ingest_examples(model, uri, layout)
    try:
        if layout == "langchain":
            monkeypatch.setenv("E5_MODEL", str(model))
            scope: dict[str, Any] = {}
            exec(compile(code, "README.md", "exec"), scope)
            docs = scope["docs"]
            assert len(docs) == 3 and all(d.page_content and d.metadata["source"] for d in docs)
        else:
            query = re.search(r'retrieve\("([^"]+)"\)', code)
            assert query is not None
            [nodes] = _llama(
                uri,
                "kb_docs",
                {"do": "snippet", "code": code, "embedding": li_embedding.get_query_embedding(query[1])},
            )
            assert len(nodes) == 3 and all(n["text"] and n["metadata"]["source"] for n in nodes)
            assert {n["type"] for n in nodes} == {"TextNode"}
    finally:
        with MilvusSink(uri, "kb_docs") as sink:
            sink.drop()
