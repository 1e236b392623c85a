"""Run the server under uvicorn: ``e5 serve`` and :func:`serve`."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from e5_integrations.server._app import ServerLimits, _require_starlette, create_app
from e5_integrations.server._cpus import default_threads

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
    served_model_name: str | None = None,
    threads: int | None = None,
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
        limits: queue bound, inputs per request, payload limit, timeouts and connection cap.
        log_level: uvicorn's log level.
        served_model_name: the ``model`` every answer and ``/v1/models`` name (default: the
            model's folder name or hub id, never a local path).
        threads: torch intra-op CPU threads (default: the CPUs this process may use, from its
            affinity mask and cgroup quota, less one for the event loop and the tokenizer, see
            :func:`~e5_integrations.server._cpus.default_threads`; 0 leaves torch's default,
            one per host core).
    """
    _require_starlette()
    import uvicorn

    from e5_integrations import E5Encoder

    key = api_key if api_key is not None else os.environ.get("E5_API_KEY") or None
    limits = limits or ServerLimits()
    _set_threads(default_threads() if threads is None else threads)
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
        lambda: E5Encoder(model, **options),
        limits=limits,
        api_key=key,
        on_load_error=on_load_error,
        served_model_name=served_model_name,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=DRAIN_TIMEOUT_S,
        timeout_keep_alive=max(1, math.ceil(limits.idle_timeout)),
        limit_concurrency=limits.max_connections,
        http=_with_header_timeout(limits.header_timeout),
        lifespan="on",
    )
    # After Config: it (re)configures uvicorn's loggers when it is built.
    logging.getLogger("uvicorn.access").addFilter(_RedactQueryString())

    class _DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.drain()  # requests still sending their body get 503 now, not after the drain timeout
            await super().shutdown(sockets)

    server = _DrainingServer(config)
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


def _set_threads(threads: int) -> None:
    """torch's intra-op thread count for the forward passes (0: leave torch's default)."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: torch's default), got {threads}")
    if threads == 0:
        return
    import torch

    torch.set_num_threads(threads)
    logger.info("torch intra-op threads: %d", threads)


class _RedactQueryString(logging.Filter):
    """Drops query strings from uvicorn's access log: a client that sends its key as
    ``?api_key=...`` must not find it in the log (the README promises the key is never logged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            path = args[2].split("?", 1)[0]
            record.args = (*args[:2], path + "?<redacted>", *args[3:])
        return True


def _with_header_timeout(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class, closing connections that take more than ``seconds`` to
    send a request's headers (uvicorn only times out idle kept-alive connections, so a client
    that connects and sends nothing, or a byte a minute, would hold a connection forever)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # no httptools: uvicorn's pure-Python h11 protocol
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class HeaderTimeoutProtocol(Base):
        _header_timer: asyncio.TimerHandle | None = None

        def _between_requests(self) -> bool:
            return self.cycle is None or bool(self.cycle.response_complete)

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self._between_requests() and not self.transport.is_closing():
                self.transport.close()

        # uvicorn's protocols take an asyncio.Transport, narrowing asyncio's BaseTransport (and
        # ignore the override check for it too)
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._between_requests():
                self._arm()  # the headers of a request are arriving (or nothing yet)
            else:
                self._disarm()  # a request is in progress: the body timeout takes over

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol
