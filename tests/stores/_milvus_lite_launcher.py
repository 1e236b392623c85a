"""Run the C++ Milvus Lite 2.5 server until killed (started by the ``milvus_server`` fixture).

Usage: ``VENV/bin/python _milvus_lite_launcher.py DBFILE PORT``, with a venv that has
``milvus-lite==2.5.1`` (see ``tests/stores/_milvus_server.py``). Exits 1 if the server does not
start; on SIGTERM/SIGINT it stops the server process and exits 0.
"""

from __future__ import annotations

import signal
import sys
import threading


def main(argv: list[str]) -> int:
    """Start the server on 127.0.0.1:PORT for DBFILE and block until a signal arrives."""
    db_file, port = argv[1], int(argv[2])
    from milvus_lite.server import Server  # only in the milvus-lite 2.5 venv

    server = Server(db_file, address=f"127.0.0.1:{port}")
    if not server.start():
        print(f"milvus-lite server failed to start for {db_file} on port {port}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"milvus-lite listening on 127.0.0.1:{port}", flush=True)
    while not stop.wait(0.2):  # a bounded wait lets the signal handler run
        if server._p is not None and server._p.poll() is not None:
            print("milvus-lite server exited", file=sys.stderr)
            return 1
    if server._p is not None:
        server._p.terminate()  # Server.stop() alone waits 2 s before killing it
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
