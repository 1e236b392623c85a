"""A real S3-compatible server on 127.0.0.1 for tests: moto in server mode, behind a small
HTTP proxy that counts the requests that reach it and can inject faults.

The client under test (s3fs, through ``--storage-option endpoint_url=...``) talks to the
proxy; the fixture's own setup (creating buckets, putting objects) talks to moto directly,
so the proxy's log holds only what the code under test asked for.

Faults the proxy injects, for the next requests that match a rule:
- ``"503"``: an S3 ``503 SlowDown`` error (a throttled request);
- ``"reset"``: the response headers and part of the body, then the connection is reset
  (a connection reset mid-object);
- ``"403"``: an ``AccessDenied`` error.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Fault:
    kind: str
    method: str
    path_contains: str
    times: int


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    range: str | None

    @property
    def is_object_get(self) -> bool:
        """A GetObject (a download), not a listing: a GET on /bucket/key."""
        parts = [p for p in self.path.split("/") if p]
        return self.method == "GET" and len(parts) >= 2 and "list-type" not in self.query


@dataclass
class ProxyState:
    upstream: tuple[str, int]
    log: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Called after a listing request was answered (a test deletes an object there).
    after_list: Callable[[], Any] | None = None

    def take_fault(self, method: str, path: str) -> str | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path_contains in path:
                    fault.times -= 1
                    return fault.kind
        return None


def _handler(state: ProxyState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _forward(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            request = Request(self.command, parts.path, parse_qs(parts.query), self.headers.get("Range"))
            with state.lock:
                state.log.append(request)
            fault = state.take_fault(self.command, parts.path)
            if fault in ("503", "403"):
                code, name = (503, "SlowDown") if fault == "503" else (403, "AccessDenied")
                payload = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{name}</Code>'
                    f"<Message>{name} (injected)</Message></Error>"
                ).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return
            upstream = http.client.HTTPConnection(*state.upstream, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
            finally:
                upstream.close()
            self.send_response(response.status)
            head = self.command == "HEAD"  # keeps the object's Content-Length
            for key, value in response.getheaders():
                if key.lower() not in _HOP and (head or key.lower() != "content-length"):
                    self.send_header(key, value)
            if not head:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if fault == "reset" and len(data) > 1:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                # RST, not FIN: the client sees a connection reset mid-body
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            self.wfile.write(data)
            self.wfile.flush()
            if request.method == "GET" and "list-type" in request.query and state.after_list is not None:
                state.after_list()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


@dataclass
class S3Server:
    """What a test gets: the endpoint for the client under test, a boto3 client on moto
    itself for setup, and the proxy's request log and fault rules."""

    endpoint: str
    moto_endpoint: str
    state: ProxyState
    process: subprocess.Popen[bytes]

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.moto_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint}

    def object_gets(self, key_contains: str = "") -> list[Request]:
        with self.state.lock:
            return [r for r in self.state.log if r.is_object_get and key_contains in r.path]

    def reset_log(self) -> None:
        with self.state.lock:
            self.state.log.clear()

    def inject(self, kind: str, path_contains: str, times: int = 1, method: str = "GET") -> None:
        with self.state.lock:
            self.state.faults.append(Fault(kind, method, path_contains, times))

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start ``python -m moto.server`` on a free port and the proxy in front of it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        state = ProxyState(("127.0.0.1", port))
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        proxy.daemon_threads = True
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            yield S3Server(
                f"http://127.0.0.1:{proxy.server_address[1]}", f"http://127.0.0.1:{port}", state, process
            )
        finally:
            proxy.shutdown()
            proxy.server_close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def dummy_credentials() -> dict[str, str]:
    """The environment an S3 client needs against moto (no real account is reached)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def env_without_aws() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
