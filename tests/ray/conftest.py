"""Fixtures for the Ray engine tests: a local Ray session (2 CPUs) and the real stores."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.stores._chroma_server import chroma_server_url  # noqa: F401
from tests.stores._pg_server import pg_dsn  # noqa: F401

WORDS = (
    "vector store embedding retrieval query passage ranking cluster shard replica index token model "
    "latency throughput batch kernel memory cache document chunk overlap schema collection upsert"
).split()


@pytest.fixture(scope="session")
def ray_session(tiny_model_dir: Path) -> Iterator[Any]:
    """Ray in local mode with 2 CPUs, as on the CI machine; shared by the module's tests."""
    pytest.importorskip("ray.data", reason="pip install 'e5-integrations[ray]'")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        object_store_memory=512 * 1024 * 1024,
        log_to_driver=False,
        runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}},
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()


def write_corpus(root: Path, documents: int, seed: int = 0) -> Path:
    """A folder with a JSONL file (``documents`` records of 5-120 words, some split into
    several chunks at 48 tokens), a text file and a markdown file."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "records.jsonl").open("w", encoding="utf-8") as handle:
        for index in range(documents):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 120)))
            record = {"id": f"doc-{index:05d}", "text": f"Record {index}: {words}.", "lang": "en", "n": index}
            handle.write(json.dumps(record) + "\n")
    (root / "notes.txt").write_text("Plain notes about shards and replicas. " * 30, encoding="utf-8")
    (root / "guide.md").write_text("# Guide\n\nRotate the API key every 90 days.\n", encoding="utf-8")
    return root


def dump_rows(store: str, uri: str, collection: str) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]:
    """Every stored row ``{id: (text, metadata, vector)}``, read with the store's own client."""
    if store == "pgvector":
        import psycopg
        from psycopg import sql

        with psycopg.connect(uri) as conn:
            rows = conn.execute(
                sql.SQL("SELECT id, text, metadata, embedding::text FROM {}").format(sql.Identifier(collection))
            ).fetchall()
        return {
            row[0]: (row[1], dict(row[2]), np.asarray(json.loads(row[3]), dtype=np.float32)) for row in rows
        }
    if store == "chroma":
        from e5_integrations.ingest import open_sink

        with open_sink("chroma", uri, collection) as sink:  # closes the client's HTTP sessions
            got = sink._client.get_collection(collection).get(include=["documents", "metadatas", "embeddings"])
        return {
            id_: (text, dict(meta), np.asarray(vec, dtype=np.float32))
            for id_, text, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])
        }
    raise AssertionError(f"no dump for {store}")


@pytest.fixture
def store_target(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """``(store, uri, collection)`` on a fresh collection of the parametrised server store."""
    import uuid

    from e5_integrations.ingest import open_sink

    store = request.param
    uri = request.getfixturevalue("pg_dsn" if store == "pgvector" else "chroma_server_url")
    name = f"e5_ray_{uuid.uuid4().hex[:10]}"
    yield store, uri, name
    with open_sink(store, uri, name) as sink:
        try:
            sink.drop()
        except Exception:  # noqa: BLE001 - best-effort cleanup; the collection may not exist
            pass


def env_model(tiny_model_dir: Path) -> dict[str, str]:
    return {**os.environ, "E5_MODEL": str(tiny_model_dir)}
