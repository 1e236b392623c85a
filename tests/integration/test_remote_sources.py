"""``e5 ingest s3://...`` against a real S3-compatible server (moto in server mode on
127.0.0.1) through the real s3fs client, into embedded Chroma with the tiny model.

Downloads are counted at the server: a proxy in front of moto logs every request the code
under test makes (``tests/integration/_s3_server.py``) and injects the faults (503
SlowDown, a connection reset mid-object, AccessDenied).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e5_integrations import SourceError
from e5_integrations.ingest import Sink, open_sink
from e5_integrations.ingest._chunking import chunk_id
from e5_integrations.ingest._fingerprint import parse_stored_hash
from e5_integrations.ingest._pipeline import ingest
from tests.integration._s3_server import S3Server, dummy_credentials, s3_server
from tests.integration.test_fingerprint_skip import _DiesBeforeSeals

pytestmark = pytest.mark.integration

CHUNK_TOKENS = 16
LONG = " ".join(f"word{i} sentence about storage buckets and vectors." for i in range(40))


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    saved = {key: os.environ.get(key) for key in dummy_credentials()}
    os.environ.update(dummy_credentials())
    try:
        with s3_server() as server:
            yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"e5-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    s3.clear_faults()
    s3.reset_log()
    return name


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    with open_sink("chroma", str(tmp_path / "chroma"), "remote") as opened:
        yield opened


def _parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


#: key -> body; ``ids.jsonl`` carries its own ids, so it cannot be skipped unread.
def _corpus() -> dict[str, bytes]:
    return {
        "docs/a.txt": b"Alpha document about buckets.",
        "docs/b.md": b"# Beta\n\nA markdown document about prefixes.",
        "docs/long.txt": LONG.encode(),
        "docs/sub/lines.jsonl": b'{"text": "first line record"}\n{"text": "second line record"}\n',
        "docs/sub/ids.jsonl": b'{"id": "rec-1", "text": "record one"}\n{"id": "rec-2", "text": "record two"}\n',
        "docs/table.csv": b"text,lang\nrow one text,en\nrow two text,fr\n",
        "docs/shard.parquet": _parquet_bytes([{"text": "parquet row one"}, {"text": "parquet row two"}]),
        "docs/skip.bin": b"\x00\x01",
        "docs/.hidden/x.txt": b"never read",
        "other/c.txt": b"outside the prefix",
    }


def _put(s3: S3Server, bucket: str, objects: dict[str, bytes]) -> None:
    client = s3.client()
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


def _run(sink: Sink, encoder: Any, s3: S3Server, bucket: str, prefix: str = "docs/", **options: Any) -> Any:
    return ingest(
        f"s3://{bucket}/{prefix}",
        sink,
        encoder,
        chunk_tokens=CHUNK_TOKENS,
        storage_options=s3.storage_options,
        retry_seconds=20,
        **options,
    )


def _stored(sink: Sink) -> dict[str, str | None]:
    return {record_id: document_id for page in sink.scan() for record_id, document_id in page}


def _documents(bucket: str) -> set[str]:
    url = f"s3://{bucket}/docs"
    return {
        f"{url}/a.txt",
        f"{url}/b.md",
        f"{url}/long.txt",
        f"{url}/sub/lines.jsonl:1",
        f"{url}/sub/lines.jsonl:2",
        "rec-1",
        "rec-2",
        f"{url}/table.csv:2",
        f"{url}/table.csv:3",
        f"{url}/shard.parquet:1",
        f"{url}/shard.parquet:2",
    }


def _gets(s3: S3Server) -> set[str]:
    return {request.path.split("/", 2)[2] for request in s3.object_gets()}


def test_prefix_of_mixed_files_then_rerun_downloads_only_what_it_must(
    s3: S3Server, bucket: str, sink: Sink, encoder: Any
) -> None:
    _put(s3, bucket, _corpus())
    first = _run(sink, encoder, s3, bucket)
    assert first.documents == 11
    assert first.skipped_unsupported == 1  # skip.bin, reported, never downloaded
    assert first.embedded == first.chunks > 11  # long.txt has several chunks
    stored = _stored(sink)
    assert set(stored.values()) == _documents(bucket)  # ids are canonical s3:// URLs
    assert len(stored) == first.chunks
    assert _gets(s3) == {
        f"docs/{name}"
        for name in (
            "a.txt",
            "b.md",
            "long.txt",
            "sub/lines.jsonl",
            "sub/ids.jsonl",
            "table.csv",
            "shard.parquet",
        )
    }

    s3.reset_log()
    again = _run(sink, encoder, s3, bucket)
    # every object whose document ids follow from its URL is skipped unread; the one with its
    # own ids is read again, and its chunks are found unchanged by content hash
    assert again.objects_unchanged == 6
    assert _gets(s3) == {"docs/sub/ids.jsonl"}
    assert again.embedded == 0 and again.written == 0
    assert again.skipped_unchanged == 2
    assert _stored(sink) == stored


def test_include_and_exclude_filter_objects(s3: S3Server, bucket: str, sink: Sink, encoder: Any) -> None:
    _put(s3, bucket, _corpus())
    report = _run(sink, encoder, s3, bucket, include=["*.txt", "sub/*"], exclude=["long.*"])
    assert set(_stored(sink).values()) == {
        f"s3://{bucket}/docs/a.txt",
        f"s3://{bucket}/docs/sub/lines.jsonl:1",
        f"s3://{bucket}/docs/sub/lines.jsonl:2",
        "rec-1",
        "rec-2",
    }
    assert report.skipped_unsupported == 0
    assert _gets(s3) == {"docs/a.txt", "docs/sub/lines.jsonl", "docs/sub/ids.jsonl"}


def test_modified_and_deleted_objects_stale_chunks_and_prune(
    s3: S3Server, bucket: str, sink: Sink, encoder: Any
) -> None:
    _put(s3, bucket, _corpus())
    _run(sink, encoder, s3, bucket)
    before = _stored(sink)
    long_chunks = sum(1 for doc in before.values() if doc == f"s3://{bucket}/docs/long.txt")
    assert long_chunks > 2
    client = s3.client()
    client.put_object(Bucket=bucket, Key="docs/long.txt", Body=b"Now a short text.")
    client.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"Alpha, rewritten.")
    client.delete_object(Bucket=bucket, Key="docs/b.md")
    s3.reset_log()

    report = _run(sink, encoder, s3, bucket, prune=True)
    assert _gets(s3) == {"docs/long.txt", "docs/a.txt", "docs/sub/ids.jsonl"}
    assert report.objects_unchanged == 3  # lines.jsonl, table.csv, shard.parquet
    assert report.deleted_stale == long_chunks - 1
    assert report.pruned == 1  # b.md's one chunk
    after = _stored(sink)
    assert set(after.values()) == _documents(bucket) - {f"s3://{bucket}/docs/b.md"}
    assert sum(1 for doc in after.values() if doc == f"s3://{bucket}/docs/long.txt") == 1

    # and the next run has nothing to do
    s3.reset_log()
    report = _run(sink, encoder, s3, bucket, prune=True)
    assert report.embedded == 0 and report.pruned == 0 and report.objects_unchanged == 5
    assert _gets(s3) == {"docs/sub/ids.jsonl"}


def test_a_run_that_dies_inside_a_changed_object_leaves_no_stale_seal_to_trust(
    s3: S3Server, bucket: str, sink: Sink, encoder: Any
) -> None:
    """v1 of an object stored and sealed; v2 partly written (the run dies before the object's
    probe chunk and marks are); the object goes back to v1, byte for byte (the same ETag):
    the re-run must read it again, not trust v1's seal over v2's chunks."""
    v1 = {"docs/long.txt": LONG.encode()}
    _put(s3, bucket, v1)
    first = _run(sink, encoder, s3, bucket)
    probe = chunk_id(f"s3://{bucket}/docs/long.txt", 0)
    stored_v1 = sink.fetch_hashes([chunk_id(probe[:-2], i) for i in range(first.chunks)])
    assert parse_stored_hash(stored_v1[probe]).seal, "the first run seals the object"

    _put(s3, bucket, {"docs/long.txt": LONG.replace("sentence", "phrase").encode()})
    with pytest.raises(RuntimeError, match="killed before the marks"):
        _run(_DiesBeforeSeals(sink), encoder, s3, bucket)
    partly = sink.fetch_hashes(list(stored_v1))
    assert partly != stored_v1  # some v2 chunks were written
    assert probe not in partly or parse_stored_hash(partly[probe]).seal is None

    _put(s3, bucket, v1)  # reverted
    again = _run(sink, encoder, s3, bucket)
    assert again.objects_unchanged == 0 and again.embedded > 0
    restored = sink.fetch_hashes(list(stored_v1))
    assert {key: parse_stored_hash(value).content_hash for key, value in restored.items()} == {
        key: parse_stored_hash(value).content_hash for key, value in stored_v1.items()
    }
    assert parse_stored_hash(restored[probe]).seal, "sealed again once read whole"
    assert _run(sink, encoder, s3, bucket).objects_unchanged == 1


def test_missing_bucket_fails_before_the_store_is_touched(s3: S3Server, sink: Sink, encoder: Any) -> None:
    with pytest.raises(SourceError, match=r"s3://e5-no-such-bucket/docs/.*does not exist"):
        _run(sink, encoder, s3, "e5-no-such-bucket")
    assert sink.dimension() is None  # the collection was never created


def test_throttling_and_resets_mid_object_are_retried(
    s3: S3Server, bucket: str, sink: Sink, encoder: Any
) -> None:
    _put(s3, bucket, _corpus())
    s3.inject("503", "docs/a.txt", times=3)
    s3.inject("reset", "docs/long.txt", times=2)
    s3.inject("503", f"/{bucket}", times=1)  # the first listing page is throttled too
    report = _run(sink, encoder, s3, bucket)
    assert report.documents == 11 and report.skipped_invalid == 0
    assert set(_stored(sink).values()) == _documents(bucket)
    throttled = s3.object_gets("docs/a.txt")
    assert len(throttled) >= 4  # three refused, then served


def test_access_denied_fails_naming_the_url_or_is_skipped_keeping_what_is_stored(
    s3: S3Server, bucket: str, sink: Sink, encoder: Any
) -> None:
    _put(s3, bucket, _corpus())
    _run(sink, encoder, s3, bucket)
    before = _stored(sink)
    s3.client().put_object(Bucket=bucket, Key="docs/a.txt", Body=b"Alpha, changed, but unreadable now.")

    s3.inject("403", "docs/a.txt", times=100)
    with pytest.raises(SourceError, match=rf"access denied .*s3://{bucket}/docs/a.txt"):
        _run(sink, encoder, s3, bucket)

    report = _run(sink, encoder, s3, bucket, on_error="skip", prune=True)
    assert report.skipped_invalid == 1
    assert f"s3://{bucket}/docs/a.txt" in str(report.problems[0])
    assert report.pruned == 0 and any("prune skipped" in warning for warning in report.warnings)
    assert _stored(sink) == before  # nothing stored was deleted because a read failed

    s3.clear_faults()
    report = _run(sink, encoder, s3, bucket, on_error="skip", prune=True)
    assert report.embedded == 1 and report.objects_unchanged == 5


def test_object_deleted_between_listing_and_reading(
    s3: S3Server, bucket: str, sink: Sink, encoder: Any
) -> None:
    objects = {f"docs/{i:03d}.txt": f"document number {i}".encode() for i in range(3)}
    _put(s3, bucket, objects)
    _run(sink, encoder, s3, bucket)
    client = s3.client()
    for key in objects:
        client.put_object(Bucket=bucket, Key=key, Body=b"changed " + objects[key])
    s3.state.after_list = lambda: client.delete_object(Bucket=bucket, Key="docs/001.txt")
    try:
        with pytest.raises(SourceError, match=rf"s3://{bucket}/docs/001.txt.*not found"):
            _run(sink, encoder, s3, bucket)
        client.put_object(Bucket=bucket, Key="docs/001.txt", Body=b"back again")
        report = _run(sink, encoder, s3, bucket, on_error="skip", prune=True)
    finally:
        s3.state.after_list = None
    assert report.skipped_invalid == 1 and report.pruned == 0
    # the object's stored chunks are kept; the others are updated
    assert f"s3://{bucket}/docs/001.txt" in _stored(sink).values()
    assert report.embedded + report.objects_unchanged == 2


def test_cli_kill_9_mid_run_then_resume(
    s3: S3Server, bucket: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    n = 80
    _put(
        s3,
        bucket,
        {f"corpus/doc{i:04d}.txt": f"Document {i} is about topic {i % 17}.".encode() for i in range(n)},
    )
    command = [
        sys.executable,
        "-m",
        "e5_integrations.cli",
        "ingest",
        f"s3://{bucket}/corpus/",
        "--storage-option",
        f"endpoint_url={s3.endpoint}",
        "--storage-option",
        "key=testing",
        "--storage-option",
        "secret=not-a-real-secret-value",
        "--model",
        str(tiny_model_dir),
        "--batch-tokens",
        "64",
        "--collection",
        "crash",
        "--no-progress",
        "--json",
        "-v",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # --storage-option gives them here
        env.pop(name)
    with subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stderr is not None
        deadline = time.monotonic() + 240
        seen = []
        try:
            for line in process.stderr:
                seen.append(line)
                if "upserted" in line:
                    os.kill(process.pid, signal.SIGKILL)
                    break
                assert time.monotonic() < deadline, "no write within 240 s"
            else:
                pytest.fail("the run ended before any write:\n" + "".join(seen[-20:]))
        finally:
            process.kill()
            process.wait(timeout=60)
    assert "not-a-real-secret-value" not in "".join(seen)
    s3.reset_log()
    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "not-a-real-secret-value" not in rerun.stderr + rerun.stdout
    report = json.loads(rerun.stdout)
    # the killed run sealed some objects; the rerun downloaded only the others
    assert 0 < report["objects_unchanged"] < n
    assert len(s3.object_gets()) == n - report["objects_unchanged"]
    with open_sink("chroma", str(tmp_path / ".e5-store" / "chroma"), "crash") as sink:
        assert sink.count() == n
        ids = [f"s3://{bucket}/corpus/doc{i:04d}.txt#0" for i in range(n)]
        assert set(sink.fetch_hashes(ids)) == set(ids)
    # and a third run downloads nothing
    s3.reset_log()
    third = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert third.returncode == 0, third.stderr[-3000:]
    assert json.loads(third.stdout)["objects_unchanged"] == n
    assert s3.object_gets() == []


def test_https_style_single_file_url_is_skipped_unread_when_unchanged(
    tmp_path: Path, sink: Sink, encoder: Any
) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    served = tmp_path / "site"
    served.mkdir()
    (served / "handbook.md").write_text("# Handbook\n\nRotate keys every 90 days.", encoding="utf-8")
    gets: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            gets.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/handbook.md"
        signed = url + "?X-Amz-Signature=feedface&X-Amz-Credential=AKIA%2Fscope"
        first = ingest(signed, sink, encoder, chunk_tokens=CHUNK_TOKENS)
        assert first.documents == 1
        assert set(_stored(sink).values()) == {url}  # the id has no signature
        gets.clear()
        again = ingest(signed, sink, encoder, chunk_tokens=CHUNK_TOKENS)
        assert again.objects_unchanged == 1 and gets == []  # size + Last-Modified from a HEAD
    finally:
        server.shutdown()
        server.server_close()
