"""A Chroma HTTP client whose every request has a timeout.

chromadb's ``FastAPI`` client opens its ``httpx.Client`` with ``timeout=None``, so a server
that accepts the connection and never answers hangs the caller forever, already inside
``chromadb.HttpClient(...)`` (it asks the server for the tenant and database). chromadb
accepts no other API implementation and has no timeout setting, so :func:`connect` first
asks the server for its heartbeat with the timeout (a silent server fails there), then
builds the client and sets the timeout on its HTTP sessions for every later request.
Imported only by the Chroma sink (it imports chromadb).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

__all__ = ["connect"]


def connect(host: str, port: int, ssl: bool, timeout: float, user: str | None, password: str | None) -> Any:
    """A chromadb ``HttpClient`` for the server at ``host:port`` whose requests time out
    after ``timeout`` seconds; ``user``/``password`` (from the URI) go as HTTP basic auth.

    Raises:
        httpx.TransportError: the server did not answer the heartbeat in time (or refused).
    """
    import chromadb

    headers: dict[str, str] = {}
    if user is not None or password is not None:
        token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    netloc = f"[{host}]" if ":" in host else host
    scheme = "https" if ssl else "http"
    httpx.get(f"{scheme}://{netloc}:{port}/api/v2/heartbeat", headers=headers, timeout=timeout)
    client = chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=headers or None)
    for owner in (client, getattr(client, "_admin_client", None)):
        session = getattr(getattr(owner, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            session.timeout = httpx.Timeout(timeout)
    return client
