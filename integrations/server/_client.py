"""``RemoteEncoder``: the encoder API of :class:`~e5_integrations.E5Encoder`, served by ``e5 serve``.

Everything that decides a vector (template, EOS, pooling, normalisation) happens on the server,
with the same code as a local encoder, so the vectors are the same. Only the tokenizer is loaded
here, lazily, for callers that chunk text (the ingest pipeline); its files come from the server
(``GET /tokenizer``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from e5_integrations._errors import ConfigurationError, E5Error
from e5_integrations._tasks import DEFAULT_TASK, Task

if TYPE_CHECKING:
    import httpx

    from e5_integrations._embedder import AsyncEmbedder
    from e5_integrations._recipe import Recipe

    #: What the last attempt of a request got: an answer, a connection error, or nothing yet.
    _Attempt = httpx.Response | Exception | None

__all__ = ["RemoteEncoder", "ServerAuthError", "ServerError", "ServerUnavailableError"]

#: Statuses worth retrying: the queue is full (429) or the model is still loading (503).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Retries of a refused connection (a server that is down stays down; fail fast).
CONNECT_RETRIES = 2


class ServerError(E5Error):
    """The e5 server refused a request (the message is the server's own)."""


class ServerAuthError(ServerError):
    """The e5 server wants an API key, or a different one (HTTP 401)."""


class ServerUnavailableError(ServerError):
    """The e5 server cannot be reached, or stayed overloaded through every retry."""


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise ImportError(
            "remote mode (base_url= / --server) needs httpx; install it with: pip install 'e5-integrations[server]'"
        ) from exc
    return httpx


def _task_text(task: str | Task) -> str:
    return task.instruction if isinstance(task, Task) else str(task)


class RemoteEncoder:
    """Embeds through an ``e5 serve`` server; a drop-in for :class:`~e5_integrations.E5Encoder`
    wherever ``encode_queries``/``encode_documents`` are what is used (adapters, ingest, search).

    Requests are cut to the server's limits (``GET /info``), sent as base64 float32, and
    retried with exponential back-off (honouring ``Retry-After``) on 429 and 503.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8080`` (default ``$E5_SERVER``).
        api_key: bearer key (default ``$E5_API_KEY``). Never printed.
        timeout: seconds per HTTP request.
        max_retries: retries on 429/503 and on a refused connection before giving up.
        tokenizer: a tokenizer to use for chunking instead of loading the server model's one.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 6,
        tokenizer: Any = None,
    ) -> None:
        url = base_url or os.environ.get("E5_SERVER")
        if not url:
            raise ConfigurationError("no e5 server given: pass base_url= (or --server URL), or set E5_SERVER")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"server URL {url!r} must start with http:// or https://")
        if max_retries < 0:
            raise ConfigurationError(
                f"max_retries={max_retries} is negative; expected 0 (one attempt, no retry) or more"
            )
        self.base_url = url.rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("E5_API_KEY") or None
        self.timeout = timeout
        self.max_retries = max_retries
        self._tokenizer = tokenizer
        self._info: dict[str, Any] | None = None
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()  # one pooled client, even when threads share this encoder

    def __repr__(self) -> str:
        return f"RemoteEncoder({self.base_url!r})"

    # -- what the server reports ---------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        """``GET /info``: model, dimension, max_length, batch_tokens, recipe, limits (fetched once)."""
        if self._info is None:
            self._info = self._request("GET", "/info")
        return self._info

    @property
    def model_name(self) -> str:
        """The name the server serves its model under (`e5 serve --served-model-name`)."""
        return str(self.info["model"])

    @property
    def dimension(self) -> int:
        """Size of the vectors."""
        return int(self.info["dimension"])

    @property
    def max_length(self) -> int:
        """Token limit per input, EOS included."""
        return int(self.info["max_length"])

    @property
    def batch_tokens(self) -> int:
        """The server's padded-token budget of one forward pass."""
        return int(self.info["batch_tokens"])

    @property
    def recipe(self) -> Recipe | None:
        """The server's recipe, when it is a built-in one (``None`` otherwise): ingestion's
        content hashes record it, so a server switched to another recipe re-embeds."""
        from e5_integrations._recipe import available_recipes, get_recipe

        name = (self.info.get("recipe") or {}).get("name")
        return get_recipe(name) if name in available_recipes() else None

    @property
    def tokenizer(self) -> Any:
        """The server model's tokenizer, loaded here on first use (chunking needs it locally):
        its files come from ``GET /tokenizer`` (a server older than that route: loaded by the
        model name ``/info`` reports)."""
        if self._tokenizer is None:
            from e5_integrations._encoder import load_tokenizer

            try:
                files = self._request("GET", "/tokenizer")["files"]
            except ServerError as exc:
                if " 404:" not in str(exc):
                    raise
                self._tokenizer = load_tokenizer(self.model_name)
            else:
                with tempfile.TemporaryDirectory(prefix="e5-remote-tokenizer-") as folder:
                    for name, data in files.items():
                        (Path(folder) / Path(name).name).write_bytes(base64.b64decode(data))
                    self._tokenizer = load_tokenizer(folder)
        return self._tokenizer

    # -- encoding -----------------------------------------------------------------------------

    def encode_queries(self, texts: Sequence[str], task: str | Task = DEFAULT_TASK) -> np.ndarray:
        """Embed queries with the task instruction (as :meth:`E5Encoder.encode_queries`)."""
        return self._encode(texts, "query", task)

    def encode_documents(self, texts: Sequence[str], task: str | Task | None = None) -> np.ndarray:
        """Embed documents (as :meth:`E5Encoder.encode_documents`: the instruction only for
        symmetric tasks)."""
        return self._encode(texts, "document", task)

    async def aencode_queries(self, texts: Sequence[str], task: str | Task = DEFAULT_TASK) -> np.ndarray:
        """:meth:`encode_queries` over async HTTP."""
        return await self._aencode(texts, "query", task)

    async def aencode_documents(self, texts: Sequence[str], task: str | Task | None = None) -> np.ndarray:
        """:meth:`encode_documents` over async HTTP."""
        return await self._aencode(texts, "document", task)

    def close(self) -> None:
        """Close the pooled HTTP connections (also done when the encoder is garbage-collected)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> RemoteEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to report to
            self.close()

    # -- internals ----------------------------------------------------------------------------

    def _body(self, texts: list[str], input_type: str, task: str | Task | None) -> dict[str, Any]:
        body: dict[str, Any] = {"input": texts, "input_type": input_type, "encoding_format": "base64"}
        if task is not None:
            body["task"] = _task_text(task)
        return body

    def _slices(self, texts: list[str], limits: dict[str, Any]) -> list[list[str]]:
        """Requests within the server's input count and (with room for JSON escaping) payload size."""
        max_inputs = int(limits.get("max_inputs", 256))
        max_bytes = int(limits.get("max_payload_bytes", 2_000_000)) // 3
        slices: list[list[str]] = []
        current: list[str] = []
        size = 0
        for text in texts:
            length = len(text.encode("utf-8")) + 8
            if current and (len(current) >= max_inputs or size + length > max_bytes):
                slices.append(current)
                current, size = [], 0
            current.append(text)
            size += length
        if current:
            slices.append(current)
        return slices

    @staticmethod
    def _decode(response: dict[str, Any], n: int) -> np.ndarray:
        data = sorted(response["data"], key=lambda row: row["index"])
        if len(data) != n:
            raise ServerError(f"the server answered {len(data)} vectors for {n} inputs")
        rows = [np.frombuffer(base64.b64decode(row["embedding"]), dtype="<f4") for row in data]
        return np.stack(rows).astype(np.float32, copy=False)

    def _check_texts(self, texts: Sequence[str]) -> list[str]:
        from e5_integrations._encoder import _check_texts

        return _check_texts(texts)

    def _encode(self, texts: Sequence[str], input_type: str, task: str | Task | None) -> np.ndarray:
        items = self._check_texts(texts)
        if not items:
            return np.empty((0, self.dimension), dtype=np.float32)
        parts = [
            self._post_embeddings(chunk, input_type, task)
            for chunk in self._slices(items, self.info.get("limits", {}))
        ]
        return np.concatenate(parts, axis=0)

    def _post_embeddings(self, texts: list[str], input_type: str, task: str | Task | None) -> np.ndarray:
        try:
            answer = self._request("POST", "/v1/embeddings", self._body(texts, input_type, task))
        except _TooLarge:
            if len(texts) == 1:
                raise
            half = len(texts) // 2
            return np.concatenate(
                [
                    self._post_embeddings(texts[:half], input_type, task),
                    self._post_embeddings(texts[half:], input_type, task),
                ]
            )
        return self._decode(answer, len(texts))

    async def _aencode(self, texts: Sequence[str], input_type: str, task: str | Task | None) -> np.ndarray:
        items = self._check_texts(texts)
        httpx = _httpx()
        async with httpx.AsyncClient(timeout=self.timeout, headers=self._headers()) as client:
            if self._info is None:
                self._info = await self._arequest(client, "GET", "/info")
            if not items:
                return np.empty((0, self.dimension), dtype=np.float32)
            parts = [
                await self._apost_embeddings(client, chunk, input_type, task)
                for chunk in self._slices(items, self._info.get("limits", {}))
            ]
        return np.concatenate(parts, axis=0)

    async def _apost_embeddings(
        self, client: httpx.AsyncClient, texts: list[str], input_type: str, task: str | Task | None
    ) -> np.ndarray:
        try:
            answer = await self._arequest(
                client, "POST", "/v1/embeddings", self._body(texts, input_type, task)
            )
        except _TooLarge:
            if len(texts) == 1:
                raise
            half = len(texts) // 2
            first = await self._apost_embeddings(client, texts[:half], input_type, task)
            second = await self._apost_embeddings(client, texts[half:], input_type, task)
            return np.concatenate([first, second])
        return self._decode(answer, len(texts))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            retry_after = response.headers.get("retry-after")
            if retry_after and retry_after.replace(".", "", 1).isdigit():
                return min(float(retry_after), 30.0)
        return min(0.25 * 2**attempt, 10.0) * (0.75 + 0.5 * random.random())

    def _outcome(self, response: httpx.Response, path: str) -> dict[str, Any] | None:
        """The JSON answer, ``None`` to retry, or an exception for a final error."""
        if response.status_code == 200:
            answer: dict[str, Any] = response.json()
            return answer
        if response.status_code in RETRY_STATUSES:
            return None
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        if response.status_code == 401:
            raise ServerAuthError(
                f"the e5 server at {self.base_url} refused the request (401): {message} "
                "Pass the server's key as api_key= (LangChain/LlamaIndex), --server-api-key, or E5_API_KEY."
            )
        if response.status_code == 413:
            raise _TooLarge(f"the e5 server at {self.base_url} refused {path} as too large (413): {message}")
        raise ServerError(
            f"the e5 server at {self.base_url} answered {path} with {response.status_code}: {message}"
        )

    def _give_up(self, path: str, last: _Attempt) -> ServerUnavailableError:
        assert last is not None  # max_retries >= 0: every request makes one attempt at least
        if isinstance(last, Exception):
            return ServerUnavailableError(
                f"could not reach the e5 server at {self.base_url} ({type(last).__name__}: {last}); start it with `e5 serve`, or check base_url= / --server / E5_SERVER"
            )
        return ServerUnavailableError(
            f"the e5 server at {self.base_url} still answered {path} with {last.status_code} after "
            f"{self.max_retries} retries (overloaded or still loading); retry later or raise its "
            "--max-queue-tokens"
        )

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        httpx = _httpx()
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, headers=self._headers())
            client = self._client
        last: _Attempt = None
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = client.request(method, self.base_url + path, json=body)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                last = exc
                if attempt >= CONNECT_RETRIES:
                    break
            else:
                last = response
                answer = self._outcome(response, path)
                if answer is not None:
                    return answer
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, response))
        raise self._give_up(path, last)

    async def _arequest(
        self, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        httpx = _httpx()
        last: _Attempt = None
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = await client.request(method, self.base_url + path, json=body)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                last = exc
                if attempt >= CONNECT_RETRIES:
                    break
            else:
                last = response
                answer = self._outcome(response, path)
                if answer is not None:
                    return answer
            if attempt < self.max_retries:
                await asyncio.sleep(self._delay(attempt, response))
        raise self._give_up(path, last)


class _TooLarge(ServerError):
    """413: the caller splits the request in two and tries again."""


if TYPE_CHECKING:  # mypy proves RemoteEncoder is an (async) Embedder

    def _remote_encoder_is_an_embedder(encoder: RemoteEncoder) -> AsyncEmbedder:
        return encoder
