"""Remote sources: objects/s listed and read from a local S3 server against the same files on
local disk, and the peak memory of the streaming pass as the prefix grows.

Starts ``python -m moto.server`` on 127.0.0.1 (needs ``moto[server]``, in the ``test`` extra),
puts N small text objects (60-200 bytes) under one prefix, and measures in this process:

- ``list``: :func:`iter_source_files` over ``s3://bench/p/`` (paginated ``ListObjectsV2``, 1000
  keys a page), objects/s;
- ``read``: :func:`iter_documents` over the URL (listing and one GET per object, the reader
  seam, documents built), objects/s; and the same over the files on local disk;
- ``peak_mib``: the peak of Python allocations (``tracemalloc``) during the read pass, which
  also keeps the run's document ids as 16-byte digests as the local engine does for
  ``--prune``: what grows with the prefix. Ray's driver does not list or read at all.

Usage::

    .venv/bin/python benchmarks/remote_sources.py --objects 10000 100000 --out results/remote.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _body(index: int) -> bytes:
    return (f"Object {index} of the benchmark prefix, about topic {index % 97}. " * (1 + index % 3)).encode()


def _measure(label: str, run: Any) -> dict[str, float]:
    tracemalloc.start()
    started = time.perf_counter()
    count = run()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = {"objects": count, "seconds": round(seconds, 2), "per_s": round(count / seconds, 1)}
    result["peak_mib"] = round(peak / 2**20, 1)
    print(f"  {label:<10} {result}", flush=True)
    return result


def bench(objects: int, endpoint: str) -> dict[str, Any]:
    import boto3

    from e5_integrations.ingest._sources import DuplicateIds, iter_documents, iter_source_files

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"bench-{objects}"
    client.create_bucket(Bucket=bucket)
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: client.put_object(Bucket=bucket, Key=f"p/{i:07d}.txt", Body=_body(i)),
                range(objects),
            )
        )
    print(f"{objects} objects put in {time.perf_counter() - started:.0f} s", flush=True)
    url = f"s3://{bucket}/p/"
    options = {"endpoint_url": endpoint}
    result: dict[str, Any] = {"objects": objects}

    result["list"] = _measure(
        "list", lambda: sum(1 for _ in iter_source_files([url], storage_options=options))
    )

    def read(sources: list[Any], storage_options: dict[str, Any] | None) -> int:
        ids = DuplicateIds("fail", None)
        count = 0
        for document in iter_documents(sources, storage_options=storage_options):
            ids.is_duplicate(document, None)  # type: ignore[arg-type]  # kept for prune, as the engine does
            count += 1
        return count

    result["read_s3"] = _measure("read s3", lambda: read([url], options))
    with tempfile.TemporaryDirectory() as folder:
        for i in range(objects):
            Path(folder, f"{i:07d}.txt").write_bytes(_body(i))
        result["read_disk"] = _measure("read disk", lambda: read([folder], None))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[10000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    process, endpoint = _start_moto()
    try:
        results = [bench(n, endpoint) for n in args.objects]
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(json.dumps(results, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
