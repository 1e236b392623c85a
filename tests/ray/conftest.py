"""Fixtures for the Ray engine tests: a local Ray session (2 CPUs) and the real stores."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._startup import StartFailed, start_with_retries
from tests.stores._chroma_server import chroma_server_url  # noqa: F401
from tests.stores._pg_server import pg_dsn  # noqa: F401

WORDS = [
    "vector",
    "store",
    "embedding",
    "retrieval",
    "query",
    "passage",
    "ranking",
    "cluster",
    "shard",
    "replica",
    "index",
    "token",
    "model",
    "latency",
    "throughput",
    "batch",
    "kernel",
    "memory",
    "cache",
    "document",
    "chunk",
    "overlap",
    "schema",
    "collection",
    "upsert",
]


#: Ray's processes whose logs explain a failed start, newest lines last.
_RAY_LOGS = (
    "gcs_server.out",
    "gcs_server.err",
    "raylet.out",
    "raylet.err",
    "dashboard_agent.log",
    "runtime_env_agent.log",
)


def _ray_diagnostics(temp_dir: Path) -> str:
    """Which Ray logs exist under ``temp_dir`` and their last lines (a failed start's evidence)."""
    logs = sorted(temp_dir.glob("session_*/logs"))
    if not logs:
        return f"no Ray session folder under {temp_dir}"
    lines = [f"Ray logs in {logs[-1]}: {sorted(p.name for p in logs[-1].iterdir())}"]
    for name in _RAY_LOGS:
        path = logs[-1] / name
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-8:]
            lines.append(f"--- {name} (last lines)\n" + "\n".join(tail))
    return "\n".join(lines)


def _kill_ray_processes(temp_dir: Path) -> None:
    """Kill what a failed start left running: every process whose command line names ``temp_dir``."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(temp_dir) in part for part in proc.info["cmdline"] or ()):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def start_local_ray(ray: Any) -> Path:
    """``ray.init`` in local mode (2 CPUs, as on the CI machine), patiently.

    Ray waits a hard-coded 30 s for its raylet to register with the GCS, and on a busy 2-core
    machine the raylet's start (it waits for its Python agents, which import a lot) can take
    longer: ``ray.init`` then fails with "The current node timed out during startup". So each
    attempt runs in a fresh temp folder of its own (no state shared with an earlier session
    or another run), and a failed attempt is shut down, its leftover processes killed, its
    logs kept for the report, and the start tried again (see tests/_startup.py).
    """

    def attempt(number: int) -> Path:
        # Ray's unix socket paths must stay short: a folder directly under /tmp.
        temp_dir = Path(tempfile.mkdtemp(prefix=f"e5-ray{number}-", dir="/tmp"))
        try:
            ray.init(
                num_cpus=2,
                num_gpus=0,
                include_dashboard=False,
                object_store_memory=512 * 1024 * 1024,
                log_to_driver=False,
                _temp_dir=str(temp_dir),
                runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}},
            )
        except Exception as exc:
            diagnostics = _ray_diagnostics(temp_dir)
            ray.shutdown()
            _kill_ray_processes(temp_dir)
            raise StartFailed(str(exc), diagnostics) from exc
        return temp_dir

    return start_with_retries("a local Ray instance", attempt)


@pytest.fixture(scope="session")
def ray_session(tiny_model_dir: Path) -> Iterator[Any]:
    """Ray in local mode with 2 CPUs, as on the CI machine; shared by the module's tests."""
    pytest.importorskip("ray.data", reason="pip install 'e5-integrations[ray]'")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    temp_dir = start_local_ray(ray)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()
        _kill_ray_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


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
                sql.SQL("SELECT id, text, metadata, embedding::text FROM {}").format(
                    sql.Identifier(collection)
                )
            ).fetchall()
        return {
            row[0]: (row[1], dict(row[2]), np.asarray(json.loads(row[3]), dtype=np.float32)) for row in rows
        }
    if store == "chroma":
        from e5_integrations.ingest import open_sink
        from e5_integrations.sinks.chroma import ChromaSink

        with open_sink("chroma", uri, collection) as sink:  # closes the client's HTTP sessions
            assert isinstance(sink, ChromaSink)
            got = sink._client.get_collection(collection).get(
                include=["documents", "metadatas", "embeddings"]
            )
        return {
            id_: (text, dict(meta), np.asarray(vec, dtype=np.float32))
            for id_, text, meta, vec in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=False
            )
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
    with open_sink(store, uri, name) as sink, contextlib.suppress(Exception):
        sink.drop()  # best-effort cleanup; the collection may not exist


def env_model(tiny_model_dir: Path) -> dict[str, str]:
    return {**os.environ, "E5_MODEL": str(tiny_model_dir)}


def content_only(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata with the stored hash's content hash alone (no document mark, no seal)."""
    from e5_integrations.ingest._fingerprint import parse_stored_hash

    return {**metadata, "e5_content_hash": parse_stored_hash(str(metadata["e5_content_hash"])).content_hash}
