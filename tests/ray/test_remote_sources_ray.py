"""The Ray engine reading an S3 prefix (moto on 127.0.0.1, real s3fs) on its workers:
the same rows as the local engine, objects fetched by the read tasks, not the driver."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from e5_integrations import ConfigurationError
from e5_integrations.ingest import ingest, open_sink
from e5_integrations.ingest._fingerprint import parse_stored_hash
from e5_integrations.ingest._remote import SEAL_SEPARATOR
from tests.integration._s3_server import S3Server, s3_server
from tests.ray.conftest import dump_rows
from tests.ray.test_ray_engine import _Chunking

pytestmark = pytest.mark.integration

CHUNK: _Chunking = {"chunk_tokens": 48, "chunk_overlap": 8}
#: Credentials as storage options: the Ray workers started before this module set any environment.
CREDENTIALS = {"key": "testing", "secret": "testing", "client_kwargs": {"region_name": "us-east-1"}}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def _corpus(s3: S3Server) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    bucket = f"e5-ray-{uuid.uuid4().hex[:10]}"
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    records = "".join(
        json.dumps({"id": f"doc-{i}", "text": f"Record {i} about shards and replicas. " * (1 + i % 9)}) + "\n"
        for i in range(30)
    )
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{"text": f"parquet row {i} on vectors"} for i in range(5)]), buffer)
    objects = {
        "data/records.jsonl": records.encode(),
        "data/notes.txt": ("Plain notes about buckets. " * 40).encode(),
        "data/guide.md": b"# Guide\n\nRotate the key every 90 days.\n",
        "data/table.csv": b"text,lang\nfirst csv row,en\nsecond csv row,de\n",
        "data/shard.parquet": buffer.getvalue(),
    }
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/data/"


def _comparable(metadata: dict[str, Any]) -> dict[str, Any]:
    """The local engine seals each object's probe chunk and the engines mark different chunk 0s;
    the row is otherwise the same."""
    return {**metadata, "e5_content_hash": parse_stored_hash(str(metadata["e5_content_hash"])).content_hash}


def test_s3_prefix_through_ray_gives_the_local_engines_rows(
    ray_session: Any, s3: S3Server, pg_dsn: str, tiny_model_dir: Any, encoder: Any
) -> None:
    from e5_integrations.ray import ingest_ray

    url = _corpus(s3)
    options = {**CREDENTIALS, "endpoint_url": s3.endpoint}
    collection = f"e5_ray_s3_{uuid.uuid4().hex[:8]}"
    with open_sink("pgvector", pg_dsn, collection + "_local") as sink:
        try:
            local = ingest(url, sink, encoder, storage_options=options, **CHUNK)
            local_rows = dump_rows("pgvector", pg_dsn, collection + "_local")
        finally:
            sink.drop()
    s3.reset_log()
    try:
        report = ingest_ray(
            url,
            store="pgvector",
            uri=pg_dsn,
            collection=collection,
            model=str(tiny_model_dir),
            dtype="fp32",
            storage_options=options,
            embed_batch_rows=16,
            **CHUNK,
        )
        ray_rows = dump_rows("pgvector", pg_dsn, collection)
        # every object was fetched once, by a read task
        gets = [r.path for r in s3.object_gets()]
        assert sorted(set(gets)) == sorted(
            f"/{url[5:]}{name}".replace("//", "/")
            for name in ("guide.md", "notes.txt", "records.jsonl", "shard.parquet", "table.csv")
        )
        assert (report.chunks, report.embedded) == (local.chunks, local.chunks)
        assert sorted(ray_rows) == sorted(local_rows)
        for id_, (text, metadata, vector) in local_rows.items():
            ray_text, ray_metadata, ray_vector = ray_rows[id_]
            assert (ray_text, _comparable(ray_metadata)) == (text, _comparable(metadata)), id_
            assert np.allclose(ray_vector, vector, atol=1e-5), id_
        assert any(SEAL_SEPARATOR in str(m["e5_content_hash"]) for _, m, _ in local_rows.values())

        again = ingest_ray(
            url,
            store="pgvector",
            uri=pg_dsn,
            collection=collection,
            model=str(tiny_model_dir),
            dtype="fp32",
            storage_options=options,
            **CHUNK,
        )
        assert again.embedded == 0 and again.skipped_unchanged == local.chunks
    finally:
        with open_sink("pgvector", pg_dsn, collection) as sink:
            sink.drop()


def test_skipped_records_and_files_of_urls_are_counted_as_on_the_local_engine(
    ray_session: Any, s3: S3Server, pg_dsn: str, tiny_model_dir: Any, encoder: Any
) -> None:
    """Under ``on_error="skip"`` a remote object's bad records and a file without a reader are
    in the Ray report's problems and skip counters, as in the local engine's, not only logged."""
    from e5_integrations.ray import ingest_ray

    bucket = f"e5-ray-{uuid.uuid4().hex[:10]}"
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    lines = [
        json.dumps({"id": "good-1", "text": "A good record about shards."}),
        "{not json",
        json.dumps({"id": "no-text", "body": "the text field is missing"}),
        json.dumps({"id": "empty", "text": "   "}),
        json.dumps({"id": "good-2", "text": "Another good record about replicas."}),
    ]
    objects = {
        "data/records.jsonl": ("\n".join(lines) + "\n").encode(),
        "data/more.jsonl": (json.dumps({"id": 7, "text": ["not", "a", "string"]}) + "\n").encode(),
        "data/notes.txt": b"Plain notes about buckets.",
        "data/image.bin": b"\x00\x01 no reader for this",
    }
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    url = f"s3://{bucket}/data/"
    options = {**CREDENTIALS, "endpoint_url": s3.endpoint}
    collection = f"e5_ray_s3_skip_{uuid.uuid4().hex[:8]}"
    with open_sink("pgvector", pg_dsn, collection + "_local") as sink:
        try:
            local = ingest(url, sink, encoder, storage_options=options, on_error="skip", **CHUNK)
        finally:
            sink.drop()
    try:
        report = ingest_ray(
            url,
            store="pgvector",
            uri=pg_dsn,
            collection=collection,
            model=str(tiny_model_dir),
            dtype="fp32",
            storage_options=options,
            on_error="skip",
            **CHUNK,
        )
        stored = dump_rows("pgvector", pg_dsn, collection)
    finally:
        with open_sink("pgvector", pg_dsn, collection) as sink:
            sink.drop()
    counters = ("skipped_invalid", "skipped_empty", "skipped_unsupported", "skipped_unreadable", "chunks")
    assert {name: getattr(report, name) for name in counters} == {
        name: getattr(local, name) for name in counters
    }
    assert report.skipped_invalid >= 3 and report.skipped_unsupported == 1  # the test's own bad objects
    assert sorted(map(str, report.problems)) == sorted(map(str, local.problems))
    assert any("records.jsonl:2" in str(problem) for problem in report.problems)
    assert report.skipped == local.skipped
    assert sorted(text for text, _, _ in stored.values()) == [
        "A good record about shards.",
        "Another good record about replicas.",
        "Plain notes about buckets.",
    ]


def test_prune_with_urls_is_refused_on_ray(tmp_path: Any) -> None:
    from e5_integrations.ray import ingest_ray

    with pytest.raises(ConfigurationError, match="prune with the local engine"):
        ingest_ray("s3://bucket/prefix/", store="pgvector", uri="postgresql://u@h/db", prune=True)
