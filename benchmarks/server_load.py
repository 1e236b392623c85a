"""Load on ``e5 serve``: requests/s and p50/p99 latency at 1, 8 and 64 concurrent clients, side by
side with in-process encoding of the same texts in the same run; optionally queries under mixed
traffic (``--mixed``) and the server's speed at several torch thread counts (``--compare-threads``).

    python benchmarks/server_load.py                                   # CPU, tiny model (default)
    python benchmarks/server_load.py --config e5-mistral --device cuda --dtype bf16   # GPU, 7B random
    python benchmarks/server_load.py --clients "" --mixed --compare-threads --out figures.json

Each client sends one query per request, waits for the answer, sends the next. In-process,
the same number of threads call ``E5Encoder.encode_queries([query])`` on one shared encoder
(what N threads of one app do without a server). The server's ``/metrics`` gives the forward
passes it ran, so the table shows how many requests shared one pass.

``--mixed``: query clients send 6-40-word queries alone, then again while bulk clients send
batches of 1-64 mixed-length documents (some over 4096 tokens, float and base64) back to back;
it reports the queries' p50/p99 alone and mixed. ``--compare-threads``: one client sending
16-document batches, against a server at its default thread count, at ``--threads 1`` and at
torch's own default (``--threads 0``), each started fresh.

Writes ``--out``: a ``.json`` path is the file; anything else is a folder that gets
``server-load-<device>-<date>.json``. Only ratios from one run are meaningful.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_throughput import build_model_dir  # the random-weights model builder


def make_queries(n: int, seed: int = 0) -> list[str]:
    """Search-style queries of 6-40 words."""
    rng = np.random.default_rng(seed)
    words = ["how", "protein", "river", "summit", "vector", "garden", "signal", "ledger", "orbit", "define"]
    return [" ".join(rng.choice(words, size=int(rng.integers(6, 40)))) for _ in range(n)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_document_batches(n: int, seed: int = 1) -> list[list[str]]:
    """Bulk requests: 1-64 documents each, mostly 20-300 words, some 300-1500, a few of 5000
    words (over the 4096-token limit: truncated, as the encoder does)."""
    rng = np.random.default_rng(seed)
    words = ["ledger", "orbit", "garden", "signal", "protein", "river", "vector", "summit", "the", "of"]
    batches = []
    for _ in range(n):
        size = int(rng.integers(1, 65))
        lengths = []
        for _ in range(size):
            draw = rng.random()
            if draw < 0.03:
                lengths.append(5000)
            elif draw < 0.18:
                lengths.append(int(rng.integers(300, 1500)))
            else:
                lengths.append(int(rng.integers(20, 300)))
        batches.append([" ".join(rng.choice(words, size=length)) for length in lengths])
    return batches


def start_server(
    model_dir: Path, device: str, dtype: str, port: int, threads: int | None, *extra: str
) -> subprocess.Popen[str]:
    """``e5 serve`` on ``port``; ``threads`` None: the server's default (the usable CPUs)."""
    import httpx

    command = [sys.executable, "-m", "e5_integrations.cli", "serve", "--model", str(model_dir)]
    command += ["--device", device, "--dtype", dtype, "--port", str(port), *extra]
    if threads is not None:
        command += ["--threads", str(threads)]
    env = dict(os.environ, E5_API_KEY="")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"e5 serve exited with {process.returncode}: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("e5 serve did not become healthy in 900 s")


def forward_passes(url: str) -> float:
    import httpx

    text = httpx.get(url + "/metrics", timeout=30).text
    match = re.search(r"^e5_forward_passes_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def summarize(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": p99 * 1000,
    }


class _Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a client with no pool to contend on
    (an httpx pool shared by 64 tasks costs more CPU than the server itself on a small machine)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> bytes:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        await self.writer.drain()
        status = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length)
        if b" 200 " not in status:
            raise RuntimeError(f"{status!r}: {data[:300]!r}")
        return data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def send_queries(connection: _Connection, queries: list[str], latencies: list[float]) -> None:
    """One client: ``queries`` one request each, back to back; each latency is appended."""
    for query in queries:
        started = time.perf_counter()
        await connection.post("/v1/embeddings", {"input": [query], "input_type": "query"})
        latencies.append(time.perf_counter() - started)


def run_server_level(port: int, queries: list[str], clients: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []

    def client(connection: _Connection, mine: list[str]) -> Any:
        return send_queries(connection, mine, latencies)

    async def run() -> None:
        connections = [_Connection(port) for _ in range(clients)]
        await asyncio.gather(*(c.post("/v1/embeddings", {"input": ["warm-up"]}) for c in connections))
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(client(connections[i], queries[i::clients]) for i in range(clients)))
        timing["seconds"] = time.perf_counter() - started
        for connection in connections:
            connection.close()

    timing: dict[str, float] = {}
    before = forward_passes(url)
    asyncio.run(run())
    figures = summarize(latencies, timing["seconds"])
    figures["forward_passes"] = forward_passes(url) - before  # warm-up passes included
    return figures


def run_mixed(
    port: int, queries: list[str], batches: list[list[str]], query_clients: int, bulk_clients: int
) -> dict[str, Any]:
    """Query latency alone, then while bulk clients keep sending document batches."""

    async def query_phase(connections: list[_Connection]) -> list[float]:
        latencies: list[float] = []
        await asyncio.gather(
            *(
                send_queries(connections[i], queries[i::query_clients], latencies)
                for i in range(query_clients)
            )
        )
        return latencies

    async def run() -> dict[str, Any]:
        connections = [_Connection(port) for _ in range(query_clients)]
        await asyncio.gather(*(c.post("/v1/embeddings", {"input": ["warm-up"]}) for c in connections))
        alone = await query_phase(connections)
        stop = asyncio.Event()
        bulk = {"requests": 0, "documents": 0}

        async def bulk_client(index: int) -> None:
            connection = _Connection(port)
            k = index
            while not stop.is_set():
                documents = batches[k % len(batches)]
                encoding = "base64" if k % 2 else "float"
                await connection.post("/v1/embeddings", {"input": documents, "encoding_format": encoding})
                bulk["requests"] += 1
                bulk["documents"] += len(documents)
                k += bulk_clients
            connection.close()

        bulk_tasks = [asyncio.create_task(bulk_client(i)) for i in range(bulk_clients)]
        await asyncio.sleep(1.0)  # the bulk clients have requests queued
        started = time.perf_counter()
        mixed = await query_phase(connections)
        seconds = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*bulk_tasks)
        for connection in connections:
            connection.close()
        alone_figures = summarize(alone, 1.0)
        mixed_figures = summarize(mixed, seconds)
        for figures in (alone_figures, mixed_figures):
            figures.pop("requests_per_s")
        return {
            "query_clients": query_clients,
            "bulk_clients": bulk_clients,
            "alone": alone_figures,
            "mixed": mixed_figures,
            "p50_ratio": mixed_figures["p50_ms"] / alone_figures["p50_ms"],
            "p99_ratio": mixed_figures["p99_ms"] / alone_figures["p99_ms"],
            "bulk_requests": bulk["requests"],
            "bulk_documents_per_s": bulk["documents"] / seconds,
        }

    return asyncio.run(run())


def run_thread_setting(
    model_dir: Path, device: str, dtype: str, threads: int | None, requests: int
) -> dict[str, Any]:
    """One client sending 16-document batches to a fresh server at this thread setting."""
    import httpx

    port = _free_port()
    server = start_server(model_dir, device, dtype, port, threads)
    try:
        used = httpx.get(f"http://127.0.0.1:{port}/info", timeout=30).json()["threads"]
        batches = make_document_batches(requests + 1, seed=7)
        documents = [(batch * 16)[:16] for batch in batches]

        async def run() -> tuple[list[float], float]:
            connection = _Connection(port)
            await connection.post("/v1/embeddings", {"input": documents[-1]})  # warm-up
            latencies = []
            started = time.perf_counter()
            for batch in documents[:requests]:
                begun = time.perf_counter()
                await connection.post("/v1/embeddings", {"input": batch})
                latencies.append(time.perf_counter() - begun)
            seconds = time.perf_counter() - started
            connection.close()
            return latencies, seconds

        latencies, seconds = asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=120)
    figures: dict[str, Any] = dict(summarize(latencies, seconds))
    label = {None: "default", 0: "torch default"}.get(threads, str(threads))
    figures.update({"setting": label, "threads": used})
    return figures


def run_in_process_level(encoder: Any, queries: list[str], clients: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def client(mine: list[str]) -> None:
        for query in mine:
            started = time.perf_counter()
            encoder.encode_queries([query])
            with lock:
                latencies.append(time.perf_counter() - started)

    encoder.encode_queries(["warm-up"])
    threads = [threading.Thread(target=client, args=(queries[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarize(latencies, time.perf_counter() - started)


def _out_path(out: Path, device: str) -> Path:
    """``--out``: a ``.json`` name is the file itself; anything else is a folder."""
    if out.suffix == ".json":
        out.parent.mkdir(parents=True, exist_ok=True)
        return out
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return out / f"server-load-{device.replace(':', '')}-{stamp}.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=("tiny", "e5-mistral"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--requests", type=int, default=512, help="requests per concurrency level")
    parser.add_argument("--clients", default="1,8,64", help='concurrency levels ("": none)')
    parser.add_argument("--model-dir", type=Path, help="an existing model directory (skips building one)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads for both sides (default: the server's default, the CPUs this process may "
        "use less one; 0: torch's default, one per host core)",
    )
    parser.add_argument("--mixed", action="store_true", help="also measure queries alone vs under bulk load")
    parser.add_argument("--query-clients", type=int, default=4, help="--mixed: clients sending queries")
    parser.add_argument(
        "--bulk-clients", type=int, default=2, help="--mixed: clients sending document batches"
    )
    parser.add_argument("--mixed-queries", type=int, default=200, help="--mixed: queries per phase")
    parser.add_argument(
        "--compare-threads",
        action="store_true",
        help="also time 16-document batches at the default thread count, 1 thread and torch's default",
    )
    parser.add_argument(
        "--thread-requests", type=int, default=40, help="--compare-threads: requests per setting"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="a .json file, or a folder for server-load-<device>-<date>.json (default: %(default)s)",
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.clients.split(",") if level.strip()]

    import torch

    from e5_integrations import E5Encoder
    from e5_integrations.server._cpus import default_threads, usable_cpus

    in_process_threads = default_threads() if args.threads is None else args.threads
    if in_process_threads:
        torch.set_num_threads(in_process_threads)
    threads_label = "server default" if args.threads is None else (args.threads or "torch default")

    rows = []
    mixed = None
    compared = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or build_model_dir(args.config, Path(tmp))
        if levels or args.mixed:
            port = _free_port()
            server = start_server(
                model_dir, args.device, args.dtype, port, args.threads, "--max-payload-bytes", "50000000"
            )
            try:
                encoder = E5Encoder(str(model_dir), device=args.device, dtype=args.dtype, show_progress=False)
                queries = make_queries(args.requests)
                for clients in levels:
                    remote = run_server_level(port, queries, clients)
                    local = run_in_process_level(encoder, queries, clients)
                    rows.append({"clients": clients, "server": remote, "in_process": local})
                if args.mixed:
                    mixed = run_mixed(
                        port,
                        make_queries(args.mixed_queries, seed=3),
                        make_document_batches(64),
                        args.query_clients,
                        args.bulk_clients,
                    )
            finally:
                server.terminate()
                server.wait(timeout=120)
        if args.compare_threads:
            for setting in (None, 1, 0):
                compared.append(
                    run_thread_setting(model_dir, args.device, args.dtype, setting, args.thread_requests)
                )

    print(
        f"{args.config} on {args.device} ({args.dtype}, torch threads: {threads_label}, usable CPUs {usable_cpus()})"
    )
    if rows:
        print(f"{args.requests} one-query requests per level")
        header = (
            f"{'clients':>7} | {'server req/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'passes':>7} | "
            f"{'in-process req/s':>16} {'p50 ms':>8} {'p99 ms':>8} | {'server/in-process':>17}"
        )
        print(header)
        print("-" * len(header))
    for row in rows:
        s, p = row["server"], row["in_process"]
        ratio = s["requests_per_s"] / p["requests_per_s"]
        row["throughput_ratio"] = ratio
        print(
            f"{row['clients']:>7} | {s['requests_per_s']:>12.1f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} "
            f"{s['forward_passes']:>7.0f} | {p['requests_per_s']:>16.1f} {p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f} | "
            f"{ratio:>17.2f}"
        )
    if mixed is not None:
        print(
            f"\nmixed: {mixed['query_clients']} query clients, {mixed['bulk_clients']} bulk clients "
            f"(1-64 documents per request), {mixed['mixed']['requests']} queries per phase"
        )
        print(f"{'queries':>8} | {'p50 ms':>8} {'p99 ms':>8}")
        for phase in ("alone", "mixed"):
            print(f"{phase:>8} | {mixed[phase]['p50_ms']:>8.2f} {mixed[phase]['p99_ms']:>8.2f}")
        print(
            f"mixed/alone: p50 {mixed['p50_ratio']:.2f}x, p99 {mixed['p99_ratio']:.2f}x; bulk meanwhile: "
            f"{mixed['bulk_requests']} requests, {mixed['bulk_documents_per_s']:.1f} documents/s"
        )
    if compared:
        print("\n16-document batches, 1 client")
        print(f"{'setting':>14} {'threads':>7} | {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
        for row in compared:
            print(
                f"{row['setting']:>14} {row['threads']:>7} | {row['requests_per_s']:>7.1f} "
                f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}"
            )
    path = _out_path(args.out, args.device)
    path.write_text(
        json.dumps(
            {
                "config": args.config,
                "device": args.device,
                "dtype": args.dtype,
                "threads": args.threads,
                "usable_cpus": usable_cpus(),
                "requests": args.requests,
                "levels": rows,
                "mixed": mixed,
                "threads_compared": compared,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
