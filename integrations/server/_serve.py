"""Run the server under uvicorn: ``e5 serve`` and :func:`serve`."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from e5_integrations.server._app import ServerLimits, _require_starlette, create_app

__all__ = ["serve"]

logger = logging.getLogger("e5_integrations.server")

#: Seconds uvicorn waits for in-flight requests after SIGTERM before closing them.
DRAIN_TIMEOUT_S = 120


def serve(
    model: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    device: str | Sequence[str] | None = None,
    dtype: str = "auto",
    batch_tokens: int | None = None,
    max_length: int | None = None,
    recipe: str | None = None,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    log_level: str = "info",
) -> int:
    """Serve one encoder over HTTP until SIGTERM or Ctrl-C; returns the exit status.

    The model loads on a thread once the socket listens (``GET /health`` is 503 meanwhile).
    SIGTERM (or SIGINT) stops accepting connections, answers every request already received,
    embeds what is queued and returns 0. A model that fails to load returns 1.

    Args:
        model: model id or directory (default ``$E5_MODEL``, else e5-mistral-7b-instruct).
        host: interface to bind; ``0.0.0.0`` exposes the server to the network (set an API key).
        port: TCP port.
        device: as :class:`~e5_integrations.E5Encoder` (one device or a list).
        dtype: as :class:`~e5_integrations.E5Encoder`.
        batch_tokens: padded-token budget of one forward pass (default: the encoder's).
        max_length: token limit per input (default: the encoder's, 4096).
        recipe: how the model embeds (a name from ``available_recipes()``; default: the
            model's preset, as for :class:`~e5_integrations.E5Encoder`).
        api_key: require ``Authorization: Bearer <api_key>`` (default ``$E5_API_KEY``; none: open).
        limits: queue bound, inputs per request and payload limit.
        log_level: uvicorn's log level.
    """
    _require_starlette()
    import uvicorn

    from e5_integrations import E5Encoder

    key = api_key if api_key is not None else os.environ.get("E5_API_KEY") or None
    options: dict[str, Any] = {"device": device, "dtype": dtype, "show_progress": False}
    if batch_tokens is not None:
        options["batch_tokens"] = batch_tokens
    if max_length is not None:
        options["max_length"] = max_length
    if recipe is not None:
        options["recipe"] = recipe
    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(exc: BaseException) -> None:
        failed.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(
        lambda: E5Encoder(model, **options), limits=limits, api_key=key, on_load_error=on_load_error
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=DRAIN_TIMEOUT_S,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    logger.info("e5 serve on http://%s:%d (auth %s)", host, port, "on" if key else "off")
    # uvicorn re-raises the signal it shut down on, once the previous handlers are back; a
    # handler that ignores it makes a graceful SIGTERM exit with status 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed:
        print(f"e5 serve: error: could not load the model: {failed[0]}", file=sys.stderr)
        return 1
    if not server.started:
        return 1  # uvicorn already logged why (e.g. the port is in use)
    return 0
