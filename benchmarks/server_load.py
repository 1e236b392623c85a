"""Load on ``e5 serve``: requests/s and p50/p99 latency at 1, 8 and 64 concurrent clients, side by
side with in-process encoding of the same texts in the same run.

    python benchmarks/server_load.py                                   # CPU, tiny model (default)
    python benchmarks/server_load.py --config e5-mistral --device cuda --dtype bf16   # GPU, 7B random

Each client sends one query per request, waits for the answer, sends the next. In-process,
the same number of threads call ``E5Encoder.encode_queries([query])`` on one shared encoder
(what N threads of one app do without a server). The server's ``/metrics`` gives the forward
passes it ran, so the table shows how many requests shared one pass. Writes
``results/server-load-<device>-<date>.json``. Only ratios from one run are meaningful.
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


def start_server(model_dir: Path, device: str, dtype: str, port: int, threads: int) -> subprocess.Popen[str]:
    import httpx

    command = [sys.executable, "-m", "e5_integrations.cli", "serve", "--model", str(model_dir)]
    command += ["--device", device, "--dtype", dtype, "--port", str(port)]
    env = dict(os.environ, E5_API_KEY="")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
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


def run_server_level(port: int, queries: list[str], clients: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []

    async def client(connection: _Connection, mine: list[str]) -> None:
        for query in mine:
            started = time.perf_counter()
            await connection.post("/v1/embeddings", {"input": [query], "input_type": "query"})
            latencies.append(time.perf_counter() - started)

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=("tiny", "e5-mistral"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--requests", type=int, default=512, help="requests per concurrency level")
    parser.add_argument("--clients", default="1,8,64", help="concurrency levels")
    parser.add_argument("--model-dir", type=Path, help="an existing model directory (skips building one)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads for both sides (default: 1 on CPU, so a shared machine's other load does not "
        "stall OpenMP barriers; 0: torch's default)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    levels = [int(level) for level in args.clients.split(",")]
    threads = args.threads if args.threads is not None else (1 if args.device == "cpu" else 0)
    if threads:
        import torch

        torch.set_num_threads(threads)

    from e5_integrations import E5Encoder

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or build_model_dir(args.config, Path(tmp))
        port = _free_port()
        server = start_server(model_dir, args.device, args.dtype, port, threads)
        try:
            encoder = E5Encoder(str(model_dir), device=args.device, dtype=args.dtype, show_progress=False)
            queries = make_queries(args.requests)
            rows = []
            for clients in levels:
                remote = run_server_level(port, queries, clients)
                local = run_in_process_level(encoder, queries, clients)
                rows.append({"clients": clients, "server": remote, "in_process": local})
        finally:
            server.terminate()
            server.wait(timeout=120)

    print(
        f"{args.config} on {args.device} ({args.dtype}, torch threads {threads or 'default'}), "
        f"{args.requests} one-query requests per level"
    )
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
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = args.out / f"server-load-{args.device.replace(':', '')}-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "config": args.config,
                "device": args.device,
                "dtype": args.dtype,
                "threads": threads,
                "requests": args.requests,
                "levels": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
