"""Misbehaving servers on 127.0.0.1 for the store fault tests, each bounded in time.

- :func:`silent_server`: accepts TCP connections and never answers (a hung server, a
  half-open firewall); it closes everything by itself after ``lifetime`` seconds.
- :func:`http_status_server`: answers every HTTP request with one status and a Qdrant-style
  JSON error body (a server that refuses an API key, or fails).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator

__all__ = ["http_status_server", "silent_server"]


@contextlib.contextmanager
def silent_server(lifetime: float = 30.0) -> Iterator[int]:
    """Listen on a free port of 127.0.0.1, accept and never answer; yield the port.

    Every accepted connection stays open (unread, unanswered) until the block exits or
    ``lifetime`` seconds have passed, whichever comes first, so a client without a timeout
    hangs for ``lifetime`` and no test can hang forever.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    port = int(listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        held: list[socket.socket] = []
        deadline = time.monotonic() + lifetime
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    conn, _ = listener.accept()
                    held.append(conn)
                except TimeoutError:
                    continue
        finally:
            for conn in held:
                conn.close()
            listener.close()

    thread = threading.Thread(target=serve, name="silent-server", daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)


@contextlib.contextmanager
def http_status_server(status: int, error: str) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering every request with ``status`` and the body
    ``{"status": {"error": error}, "time": 0}``; yield its ``http://127.0.0.1:PORT`` URL and
    record the requests' ``api-key`` headers in ``server.api_keys``."""
    body = json.dumps({"status": {"error": error}, "time": 0.0}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
