"""``e5 serve``: one process holds the model, every app embeds over HTTP.

- :func:`serve` / ``e5 serve``: an OpenAI-compatible ``/v1/embeddings`` that applies the e5
  instruction (``input_type`` and ``task`` extension fields), dynamic token-budget batching
  across clients, backpressure (429), API key auth, Prometheus ``/metrics``.
- :class:`RemoteEncoder`: the client (sync and async, retries on 429/503) that adapters
  (``base_url=``) and ``e5 ingest/search --server`` use instead of loading a model.

The server needs the ``[server]`` extra (Starlette, uvicorn, prometheus-client, httpx); the
client only httpx. Both are imported lazily.
"""

from __future__ import annotations

from e5_integrations.server._app import ServerLimits, create_app
from e5_integrations.server._client import RemoteEncoder, ServerAuthError, ServerError, ServerUnavailableError
from e5_integrations.server._serve import serve

__all__ = [
    "RemoteEncoder",
    "ServerAuthError",
    "ServerError",
    "ServerLimits",
    "ServerUnavailableError",
    "create_app",
    "serve",
]
