"""Remote sources: objects/s listed and read from a local S3 server against the same files on
local disk, and the peak memory of the streaming pass as the prefix grows.

Starts ``python -m moto.server`` on 127.0.0.1 (needs ``moto[server]``, in the ``test`` extra),
puts N small text objects (60-200 bytes) under one prefix, and measures in this process:

- ``list``: :func:`iter_source_files` over ``s3://bench/p/`` (paginated ``ListObjectsV2``, 1000
  keys a page), objects/s;
- ``read``: :func:`iter_documents` over the URL (listing and one GET per object, the reader
  seam, documents built), objects/s; and the same over the files on local disk;
- ``list_boto3``: boto3's own paginator over the same prefix (the server's share of ``list``);
- ``peak_rss_mib`` / ``growth_mib``: each pass runs in a fresh process; its peak RSS, and how
  much it grew over the process with everything imported. The read pass also keeps the
  document ids as 16-byte digests, as the local engine does for ``--prune``: what grows with
  the prefix. Ray's driver neither lists nor reads (a worker task lists).

Usage::

    .venv/bin/python benchmarks/remote_sources.py --objects 2000 10000 --out results/remote.json
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


def _phase(phase: str, source: str, endpoint: str) -> dict[str, Any]:
    """Run one measured pass in a fresh process: its peak RSS is the pass's own."""
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--source", source, "--endpoint", endpoint],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _peak_rss_mib() -> float:
    """This process's RSS high-water mark (``VmHWM``; ``ru_maxrss`` would carry the parent's
    peak over fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _run_phase(phase: str, source: str, endpoint: str) -> None:
    """The child: import everything first (the baseline RSS), then one pass."""
    from e5_integrations.ingest._sources import DuplicateIds, iter_documents, iter_source_files

    options = {"endpoint_url": endpoint} if source.startswith("s3://") else None
    base = _peak_rss_mib()
    started = time.perf_counter()
    count = 0
    if phase == "list":
        count = sum(1 for _ in iter_source_files([source], storage_options=options))
    else:
        ids = DuplicateIds("fail", None)  # the document ids the local engine keeps for --prune
        for document in iter_documents([source], storage_options=options):
            ids.is_duplicate(document, None)  # type: ignore[arg-type]
            count += 1
    seconds = time.perf_counter() - started
    peak = _peak_rss_mib()
    result = {
        "objects": count,
        "seconds": round(seconds, 2),
        "per_s": round(count / seconds, 1),
        "peak_rss_mib": round(peak, 1),
        "growth_mib": round(peak - base, 1),
    }
    print(json.dumps(result))


def bench(objects: int, endpoint: str, list_only: bool = False) -> dict[str, Any]:
    import boto3

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
    result: dict[str, Any] = {"objects": objects}
    started = time.perf_counter()
    listed = sum(
        len(page.get("Contents", []))
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="p/")
    )
    seconds = time.perf_counter() - started
    result["list_boto3"] = {
        "objects": listed,
        "seconds": round(seconds, 2),
        "per_s": round(listed / seconds, 1),
    }
    print(f"  list_boto3 {result['list_boto3']}", flush=True)
    for name, phase in (("list_s3", "list"), ("read_s3", "read")):
        if list_only and phase == "read":
            return result
        result[name] = _phase(phase, url, endpoint)
        print(f"  {name:<10} {result[name]}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for i in range(objects):
            Path(folder, f"{i:07d}.txt").write_bytes(_body(i))
        result["read_disk"] = _phase("read", folder, endpoint)
        print(f"  read_disk  {result['read_disk']}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[10000])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--list-only", action="store_true", help="measure the listing only (large N)")
    parser.add_argument("--phase", choices=("list", "read"), help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    if args.phase:
        _run_phase(args.phase, args.source, args.endpoint)
        return
    process, endpoint = _start_moto()
    try:
        results = [bench(n, endpoint, args.list_only) for n in args.objects]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print(json.dumps(results, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
