"""The ASGI app of ``e5 serve``: an OpenAI-compatible ``/v1/embeddings`` that keeps the instructions.

Routes:

- ``POST /v1/embeddings``: the OpenAI schema (``input`` as a string, strings, token ids or
  lists of token ids; ``encoding_format`` ``float``/``base64``; ``dimensions``; ``user``), plus
  two extension fields sent with the official client's ``extra_body``: ``input_type``
  (``"query"`` | ``"document"``, default ``"document"``) and ``task`` (a registered task name
  or a one-sentence instruction; default web search). Symmetric tasks apply the instruction to
  documents too, exactly as :meth:`E5Encoder.encode_documents` does.
- ``POST /embed``: ``{"queries": [...]}`` or ``{"documents": [...]}``, plus ``task``.
- ``POST /tokenize``: the model input ids a text becomes (template, BOS, truncation, EOS).
- ``GET /v1/models``: the served model name (``e5 serve --served-model-name``), as OpenAI lists it.
- ``GET /tokenizer``: the served model's tokenizer files, for remote clients that chunk text.
- ``GET /info``, ``GET /health`` (503 until the model is loaded), ``GET /metrics`` (Prometheus).

Status codes: 400 for a body that is not JSON (or nests too deep) and for a well-formed request
this model cannot serve (``dimensions``, token ids for a query); 422 for a field of the wrong
type or an unknown value (the message names the field and, for inputs, the index); 415 for a
body that is not ``application/json``; 401, 408, 413, 429, 503 as their names say; 500 only for
a bug (logged with its traceback, counted in ``e5_requests_total``, never sent to the client).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hmac
import json
import logging
import os
import re
import reprlib
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from e5_integrations._errors import E5Error, InputError
from e5_integrations._tasks import DEFAULT_TASK, resolve_task
from e5_integrations.server._batcher import DynamicBatcher, Overloaded
from e5_integrations.server._metrics import ServerMetrics

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from e5_integrations._encoder import E5Encoder
    from e5_integrations._recipe import Template
    from e5_integrations._tasks import Task

__all__ = ["ENDPOINTS", "ServerLimits", "create_app", "default_served_name"]

logger = logging.getLogger("e5_integrations.server")

#: A UTF-16 surrogate on its own (``"\ud800"`` in JSON): not Unicode, no tokenizer takes it.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Short previews of bad values in error messages (a 100k-deep list must not blow the stack).
_PREVIEW = reprlib.Repr()
_PREVIEW.maxlevel = 3
_PREVIEW.maxstring = 60
_PREVIEW.maxother = 60


def _require_starlette() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"e5 serve needs Starlette and uvicorn ({exc.name} is missing); "
            "install them with: pip install 'e5-integrations[server]'"
        ) from exc


@dataclass(frozen=True)
class ServerLimits:
    """Backpressure and request limits.

    Attributes:
        max_queue_tokens: tokens accepted and not yet embedded; past it, 429 with ``Retry-After``.
        max_inputs: inputs in one request; more gives 413.
        max_payload_bytes: request body size; more gives 413.
        priority_tokens: requests of at most this many tokens (and every query) run ahead of
            bulk work in the batcher.
        body_timeout: seconds to receive a whole request body once its headers arrived; past
            it, 408 and the connection is closed.
        header_timeout: seconds a connection may take to send a request's headers (a new
            connection, or the next request on a kept-alive one); past it, it is closed.
        idle_timeout: seconds a kept-alive connection may sit idle between requests.
        max_connections: open connections (or requests in flight) beyond which a request gets 503.
    """

    max_queue_tokens: int = 262144
    max_inputs: int = 2048
    max_payload_bytes: int = 2_000_000
    priority_tokens: int = 1024
    body_timeout: float = 60.0
    header_timeout: float = 10.0
    idle_timeout: float = 5.0
    max_connections: int = 1024


class _HTTPError(Exception):
    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", **headers: str
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = {name.replace("_", "-"): value for name, value in headers.items()}


class _State:
    """What the routes share: the encoder once loaded, the batcher, the tokenizer thread."""

    def __init__(self, limits: ServerLimits, api_key: str | None, served_model_name: str | None) -> None:
        self.limits = limits
        self.api_key = api_key
        self.served_model_name = served_model_name
        self.metrics = ServerMetrics()
        self.encoder: E5Encoder | None = None
        self.batcher: DynamicBatcher | None = None
        self.tokenizer_files: dict[str, str] = {}
        self.load_error: str | None = None
        self.draining = asyncio.Event()  # set when SIGTERM starts the graceful shutdown
        # One thread per tokenizer: a Hugging Face fast tokenizer must not be used by two
        # threads at once. Priority requests (queries, short texts) have a lane of their own,
        # with a copy of the tokenizer, so they never wait behind a bulk request's tokenizing.
        self.tokenize_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="e5-tokenize")
        self.priority_tokenize_pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="e5-tokenize-priority"
        )
        self.priority_encoder: E5Encoder | None = None  # the encoder with its own tokenizer copy

    def ready(self) -> tuple[E5Encoder, DynamicBatcher]:
        if self.encoder is None or self.batcher is None:
            detail = f"failed to load: {self.load_error}" if self.load_error else "still loading"
            raise _HTTPError(
                503, f"the model is {detail}; poll GET /health", "service_unavailable", retry_after="5"
            )
        return self.encoder, self.batcher


# -- request parsing -------------------------------------------------------------------------


def _parse_inputs(value: object, field: str, max_inputs: int) -> tuple[list[str] | list[list[int]], bool]:
    """``(items, are_token_ids)`` from an OpenAI ``input``: str, [str], [int] or [[int]]."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise _HTTPError(422, f"{field} must be a string or a list of strings, got {type(value).__name__}")
    if not items:
        raise _HTTPError(422, f"{field} is an empty list; send at least one input")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in items):
        items = [items]  # one sequence of token ids
    if len(items) > max_inputs:
        raise _HTTPError(
            413,
            f"{field} has {len(items)} inputs, more than the {max_inputs} one request may carry "
            "(e5 serve --max-inputs); split it into several requests",
        )
    token_ids = isinstance(items[0], list)
    for index, item in enumerate(items):
        if token_ids:
            if not isinstance(item, list) or not all(
                isinstance(t, int) and not isinstance(t, bool) for t in item
            ):
                raise _HTTPError(
                    422, f"{field}[{index}] is not a list of token ids; do not mix text and token ids"
                )
            if not item:
                raise _HTTPError(422, f"{field}[{index}] is an empty list of token ids")
        else:
            if not isinstance(item, str):
                raise _HTTPError(
                    422,
                    f"{field}[{index}] is {type(item).__name__} ({_PREVIEW.repr(item)}), expected a string",
                )
            if not item.strip():
                raise _HTTPError(
                    422, f"{field}[{index}] is empty or whitespace-only; drop it or send some text"
                )
            _check_unicode(item, f"{field}[{index}]")
    return items, token_ids


def _check_unicode(text: str, where: str) -> None:
    """422 for a lone surrogate, as ``e5 ingest`` refuses it (a chunker that cut an emoji's
    UTF-16 pair in half sends one)."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise _HTTPError(
            422,
            f"{where} holds a lone surrogate (\\u{ord(found.group()):04x} at character {found.start()}), "
            "which is not Unicode (a UTF-16 pair cut in half, e.g. half an emoji); "
            "send whole characters or drop that one",
        )


def _parse_task(body: dict[str, Any]) -> Task:
    task = body.get("task")
    if task is None:
        return resolve_task(DEFAULT_TASK)
    if not isinstance(task, str) or not task.strip():
        raise _HTTPError(
            422,
            f"task must be a non-empty string (a task name or an instruction), got {_PREVIEW.repr(task)}",
        )
    _check_unicode(task, "task")
    try:
        return resolve_task(task)
    except E5Error as exc:
        raise _HTTPError(422, str(exc)) from exc


def _input_type(body: dict[str, Any]) -> str:
    """``input_type``: ``"query"`` or ``"document"``; absent or null means a document."""
    return _choice(body, "input_type", ("query", "document"), "document")


def _instruction_for(input_type: str, task: Task) -> str | None:
    """The instruction applied to the inputs, as ``encode_queries``/``encode_documents`` decide."""
    if input_type == "query":
        return str(task.instruction)
    return str(task.instruction) if task.symmetric else None


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's own tokens (e.g. ``[BOS]``, ``[]``)."""
    probe = "hello world"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


def _template_text(template: Template) -> str | list[str]:
    """A template for /info: its format string, or its pieces' texts."""
    text = template.text
    return text if isinstance(text, str) else [getattr(piece, "text", str(piece)) for piece in text]


def _ids_from_tokens(encoder: E5Encoder, rows: list[list[int]]) -> list[list[int]]:
    """Model inputs from a text's own token ids: the tokenizer's special tokens (BOS), the
    recipe's truncation and EOS, exactly as a text with those tokens would get."""
    tokenizer = encoder.tokenizer
    vocab = len(tokenizer)
    prefix, suffix = _special_tokens(tokenizer)
    recipe = encoder.recipe
    if not (recipe.templates_then_tokenize and recipe.document.text == "{text}"):
        raise _HTTPError(
            400,
            f"token-id input needs a recipe that embeds documents as they are; the served recipe "
            f"{recipe.name!r} applies a document template: send text",
        )
    end = recipe.end_token_id(tokenizer)
    limit = encoder.max_length - (1 if end is not None else 0) - len(prefix) - len(suffix)
    out: list[list[int]] = []
    for index, row in enumerate(rows):
        bad = next((t for t in row if t < 0 or t >= vocab), None)
        if bad is not None:
            raise _HTTPError(422, f"input[{index}] holds token id {bad}, outside the vocabulary [0, {vocab})")
        ids = prefix + list(row[:limit]) + suffix
        if end is not None:
            ids.append(end)
        out.append(ids)
    return out


def _tokenizing_twin(encoder: E5Encoder) -> E5Encoder | None:
    """A shallow copy of ``encoder`` with a tokenizer of its own (same model, same recipe),
    for the priority tokenizing lane; ``None`` when the tokenizer cannot be copied."""
    try:
        twin = copy.copy(encoder)
        twin.tokenizer = copy.deepcopy(encoder.tokenizer)
    except Exception as exc:  # a tokenizer that cannot be copied: one shared lane
        logger.warning("no priority tokenizing lane (%s: %s)", type(exc).__name__, exc)
        return None
    return twin


def _looks_short(items: list[Any], token_ids: bool, priority_tokens: int) -> bool:
    """Whether a request is likely under ``priority_tokens`` before it is tokenized (about 4
    characters a token); only the tokenizing lane depends on this guess."""
    if token_ids:
        return sum(len(row) for row in items) <= priority_tokens
    return sum(len(text) for text in items) <= 4 * priority_tokens


async def _model_inputs(
    state: _State,
    encoder: E5Encoder,
    items: list[Any],
    token_ids: bool,
    instruction: str | None,
    priority: bool = False,
) -> list[list[int]]:
    """Token ids for the model, built off the event loop (in the priority lane if asked)."""
    if token_ids and instruction is not None:
        raise _HTTPError(
            400,
            "token-id input is embedded as a document without instruction; send text for queries or "
            "symmetric tasks, so the instruction template can be applied",
        )
    started = time.perf_counter()

    def build() -> list[list[int]]:
        if token_ids:
            return _ids_from_tokens(encoder, items)
        try:
            return list(encoder.tokenize(items, instruction))
        except InputError as exc:  # nothing to pool ("" under GritLM): the input is the client's
            message = str(exc)
            if exc.index is not None:
                message = message.replace(f"texts[{exc.index}]", f"input[{exc.index}]", 1)
            raise _HTTPError(422, message) from exc

    pool = state.tokenize_pool
    if priority and state.priority_encoder is not None:
        encoder, pool = state.priority_encoder, state.priority_tokenize_pool
    ids = await asyncio.get_running_loop().run_in_executor(pool, build)
    state.metrics.tokenize_duration.observe(time.perf_counter() - started)
    return ids


def _encode_vectors(vectors: np.ndarray, encoding_format: str) -> list[str] | list[list[float]]:
    if encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    rows: list[list[float]] = vectors.tolist()
    return rows


def _encoding_format(body: dict[str, Any]) -> str:
    return _choice(body, "encoding_format", ("float", "base64"), "float")


def _choice(body: dict[str, Any], field: str, allowed: tuple[str, ...], default: str) -> str:
    """``body[field]``, one of ``allowed``; absent or null means ``default``; else 422."""
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        names = " or ".join(repr(name) for name in allowed)
        raise _HTTPError(422, f"{field} must be {names} (or absent), got {_PREVIEW.repr(value)}")
    return value


def _check_dimensions(body: dict[str, Any], dimension: int) -> None:
    value = body.get("dimensions")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise _HTTPError(422, f"dimensions must be an integer, got {_PREVIEW.repr(value)}")
    if value is not None and value != dimension:
        raise _HTTPError(
            400,
            f"dimensions={value!r}, but this model only gives {dimension}-dimensional vectors: "
            "e5-mistral is not Matryoshka-trained, so truncated vectors would lose quality; "
            f"omit dimensions or send {dimension}",
        )


# -- the app ---------------------------------------------------------------------------------


def default_served_name(model: str) -> str:
    """The name ``e5 serve`` answers with when ``--served-model-name`` is not given: a local
    model's folder name (never its absolute path), else the hub id as given."""
    path = Path(model)
    if path.is_dir():
        return path.resolve().name
    return model


def _tokenizer_files(tokenizer: Any) -> dict[str, str]:
    """The tokenizer's own files (what ``save_pretrained`` writes), base64-encoded by name."""
    with tempfile.TemporaryDirectory(prefix="e5-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        return {
            name: base64.b64encode((Path(folder) / name).read_bytes()).decode("ascii")
            for name in sorted(os.listdir(folder))
            if (Path(folder) / name).is_file()
        }


# -- request handlers (module level; create_app binds them to its state) ----------------------


async def _json_body(request: Request) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        # Browsers post text/plain and form bodies cross-site without a CORS preflight;
        # insisting on JSON keeps any web page from using an open server.
        raise _HTTPError(
            415,
            f"the request body must be JSON sent as 'Content-Type: application/json', got "
            f"{media_type or 'no Content-Type'!r}; set that header (every OpenAI client does)",
        )
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _HTTPError(400, f"the request body is not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise _HTTPError(
            400, "the request body nests JSON arrays or objects too deeply to parse; send flat lists"
        ) from exc
    if not isinstance(body, dict):
        raise _HTTPError(422, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


async def _embed_items(
    state: _State, items: list[Any], token_ids: bool, instruction: str | None, query: bool
) -> tuple[np.ndarray, int]:
    encoder, batcher = state.ready()
    batcher.expect()
    try:
        lane = (query and len(items) == 1) or _looks_short(items, token_ids, state.limits.priority_tokens)
        ids = await _model_inputs(state, encoder, items, token_ids, instruction, lane)
        tokens = sum(len(row) for row in ids)
        if tokens > state.limits.max_queue_tokens:
            raise _HTTPError(
                413,
                f"this request is {tokens} tokens, more than the server queue holds "
                f"({state.limits.max_queue_tokens}, e5 serve --max-queue-tokens); split it into smaller requests",
            )
        # Short requests go first: a single query whatever its length, or anything under
        # --priority-tokens. A request of many queries (an evaluation run) is bulk work,
        # or it would hold every other query behind its passes.
        priority = tokens <= state.limits.priority_tokens or (query and len(ids) == 1)
        future = batcher.enqueue(ids, priority=priority)
    finally:
        batcher.unexpect()
    return await future, tokens


async def _openai_embeddings(state: _State, request: Request) -> Response:
    body = await _json_body(request)
    encoder, _ = state.ready()
    if "input" not in body:
        raise _HTTPError(422, "the request has no 'input' field (a string or a list of strings)")
    items, token_ids = _parse_inputs(body["input"], "input", state.limits.max_inputs)
    input_type = _input_type(body)
    task = _parse_task(body)
    encoding_format = _encoding_format(body)
    _check_dimensions(body, encoder.dimension)
    vectors, tokens = await _embed_items(
        state, items, token_ids, _instruction_for(input_type, task), input_type == "query"
    )
    data = [
        {"object": "embedding", "index": i, "embedding": row}
        for i, row in enumerate(_encode_vectors(vectors, encoding_format))
    ]
    return _json(
        {
            "object": "list",
            "data": data,
            "model": state.served_model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def _native_embed(state: _State, request: Request) -> Response:
    body = await _json_body(request)
    state.ready()
    has_q, has_d = "queries" in body, "documents" in body
    if has_q == has_d:
        raise _HTTPError(422, "send exactly one of 'queries' or 'documents' (a list of strings)")
    field = "queries" if has_q else "documents"
    items, token_ids = _parse_inputs(body[field], field, state.limits.max_inputs)
    if token_ids:
        raise _HTTPError(422, f"{field} must be strings; token ids go to POST /v1/embeddings")
    task = _parse_task(body)
    encoding_format = _encoding_format(body)
    input_type = "query" if has_q else "document"
    vectors, tokens = await _embed_items(state, items, False, _instruction_for(input_type, task), has_q)
    return _json(
        {
            "model": state.served_model_name,
            "embeddings": _encode_vectors(vectors, encoding_format),
            "encoding_format": encoding_format,
            "tokens": tokens,
        }
    )


async def _tokenize(state: _State, request: Request) -> Response:
    body = await _json_body(request)
    encoder, _ = state.ready()
    items, token_ids = _parse_inputs(body.get("inputs"), "inputs", state.limits.max_inputs)
    if token_ids:
        raise _HTTPError(422, "inputs must be strings")
    input_type = _input_type(body)
    ids = await _model_inputs(state, encoder, items, False, _instruction_for(input_type, _parse_task(body)))
    return _json({"tokens": ids, "lengths": [len(row) for row in ids]})


async def _models(state: _State, request: Request) -> Response:
    state.ready()
    return _json(
        {
            "object": "list",
            "data": [
                {
                    "id": state.served_model_name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "e5-integrations",
                }
            ],
        }
    )


async def _tokenizer(state: _State, request: Request) -> Response:
    state.ready()
    return _json({"model": state.served_model_name, "files": state.tokenizer_files})


async def _info(state: _State, request: Request) -> Response:
    encoder, _ = state.ready()
    import torch

    from e5_integrations import __version__

    return _json(
        {
            "model": state.served_model_name,
            "dimension": encoder.dimension,
            "max_length": encoder.max_length,
            "batch_tokens": encoder.batch_tokens,
            "normalize": encoder.normalize,
            "dtype": str(encoder.dtype).replace("torch.", ""),
            "devices": [str(d) for d in encoder.devices],
            "threads": torch.get_num_threads(),
            "recipe": {
                "name": encoder.recipe.name,
                "query_template": _template_text(encoder.recipe.query),
            },
            "default_task": DEFAULT_TASK,
            "limits": asdict(state.limits),
            "version": __version__,
        }
    )


async def _health(state: _State, request: Request) -> Response:
    state.ready()
    return _json({"status": "ok"})


async def _metrics(state: _State, request: Request) -> Response:
    from starlette.responses import Response

    text, content_type = state.metrics.render()
    return Response(text, media_type=content_type)


def _json(content: object) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(content)


# -- the routes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    """One route, declared once: its path and methods, its handler, whether it needs the API
    key, and whether the request metrics observe it (under its own path as the label)."""

    path: str
    methods: tuple[str, ...]
    handler: Callable[[_State, Request], Awaitable[Response]]
    public: bool = False  # callable without the API key (probes and scrapers)
    observed: bool = True  # timed and counted in e5_requests_total (a scrape does not count itself)


#: Every route of the app. The guard reads it too: which paths need the key, and which paths
#: are metrics labels (any other path is "other", so a scanner cannot grow the label set).
ENDPOINTS: tuple[_Endpoint, ...] = (
    _Endpoint("/v1/embeddings", ("POST",), _openai_embeddings),
    _Endpoint("/embeddings", ("POST",), _openai_embeddings),
    _Endpoint("/embed", ("POST",), _native_embed),
    _Endpoint("/tokenize", ("POST",), _tokenize),
    _Endpoint("/v1/models", ("GET",), _models),
    _Endpoint("/tokenizer", ("GET",), _tokenizer),
    _Endpoint("/info", ("GET",), _info),
    _Endpoint("/health", ("GET",), _health, public=True),
    _Endpoint("/metrics", ("GET",), _metrics, public=True, observed=False),
)
#: Routes anyone may call, with or without the API key.
PUBLIC_PATHS = frozenset(endpoint.path for endpoint in ENDPOINTS if endpoint.public)
#: Every route's path: the metrics labels.
KNOWN_PATHS = frozenset(endpoint.path for endpoint in ENDPOINTS)


def _route(state: _State, spec: _Endpoint) -> Route:
    """The Starlette route of ``spec``: its handler bound to ``state``, with the errors every
    handler shares turned into their status codes, and (when observed) timed and counted."""
    from starlette.routing import Route

    path, handler = spec.path, spec.handler

    async def plain(request: Request) -> Response:
        return await handler(state, request)

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        state.metrics.in_progress.inc()
        try:
            response = await handler(state, request)
        except _HTTPError as exc:
            response = _error_response(exc)
        except Overloaded as exc:
            response = _error_response(
                _HTTPError(429, str(exc), "rate_limit_error", retry_after=str(exc.retry_after))
            )
        except InputError as exc:  # an input the model gives no usable vector (batcher)
            response = _error_response(_HTTPError(422, str(exc)))
        except E5Error as exc:
            response = _error_response(_HTTPError(400, str(exc)))
        except Exception:
            # A bug: the traceback goes to the log, the client gets a short answer, and the
            # 500 is counted like any other status (an alert on 5xx must see it).
            logger.exception("%s %s failed", request.method, path)
            response = _error_response(_HTTPError(500, _INTERNAL_ERROR, "server_error"))
        finally:
            state.metrics.in_progress.dec()
        state.metrics.observe_request(path, response.status_code, time.perf_counter() - started)
        return response

    return Route(path, endpoint if spec.observed else plain, methods=list(spec.methods))


def create_app(
    encoder_factory: Callable[[], E5Encoder],
    *,
    limits: ServerLimits | None = None,
    api_key: str | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
    served_model_name: str | None = None,
) -> _Guard:
    """The Starlette app serving one encoder.

    Args:
        encoder_factory: builds the :class:`~e5_integrations.E5Encoder` (called on a thread at
            startup, so ``/health`` answers 503 while the model loads).
        limits: backpressure and request limits.
        api_key: when set, every route but ``/health`` and ``/metrics`` needs
            ``Authorization: Bearer <api_key>``.
        on_load_error: called when the model fails to load (``e5 serve`` exits then).
        served_model_name: the ``model`` of every answer and ``/v1/models`` (default: the
            model's folder name, or its hub id; never a local path).

    Returns:
        An ASGI app; its ``drain()`` tells it a graceful shutdown began (requests still
        sending their body then get 503 instead of holding the shutdown).
    """
    _require_starlette()
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette

    state = _State(limits or ServerLimits(), api_key, served_model_name)

    def load() -> None:
        try:
            encoder = encoder_factory()
            state.tokenizer_files = _tokenizer_files(encoder.tokenizer)
            state.priority_encoder = _tokenizing_twin(encoder)
            state.batcher = DynamicBatcher(encoder, state.limits.max_queue_tokens, state.metrics)
            if state.served_model_name is None:
                state.served_model_name = default_served_name(str(encoder.model_name))
            state.encoder = encoder
            logger.info("model loaded: %r, served as %r", encoder, state.served_model_name)
        except BaseException as exc:
            state.load_error = f"{type(exc).__name__}: {exc}"
            logger.error("could not load the model: %s", state.load_error)
            if on_load_error is not None:
                on_load_error(exc)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loader = threading.Thread(target=load, name="e5-load-model", daemon=True)
        loader.start()
        try:
            yield
        finally:
            # uvicorn has stopped accepting and answered every in-flight request by now;
            # embed what may still be queued, then stop the worker.
            if state.batcher is not None:
                await asyncio.to_thread(state.batcher.close)
            state.tokenize_pool.shutdown(wait=False)
            state.priority_tokenize_pool.shutdown(wait=False)

    app = Starlette(routes=[_route(state, spec) for spec in ENDPOINTS], lifespan=lifespan)
    app.state.e5 = state
    return _Guard(app, state)


#: What a client is told about a bug (the traceback is in the server's log).
_INTERNAL_ERROR = "the server failed on this request (a bug, logged with its traceback); please report it"


def _error_body(status: int, message: str, kind: str) -> bytes:
    # ASCII-only JSON: a message quoting a lone surrogate must still encode.
    return json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode("ascii")


def _error_response(exc: _HTTPError) -> Response:
    from starlette.responses import Response

    return Response(
        _error_body(exc.status, exc.message, exc.kind),
        status_code=exc.status,
        headers=exc.headers,
        media_type="application/json",
    )


class _BodyRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Guard:
    """ASGI middleware run before any route: the API key, the request-body size limit and
    timeout (the body is read here, then replayed to the app), and a short 500 for an
    exception that reaches it before a response started. Route handlers count their own 500s
    (``e5_requests_total``); an error outside them is answered by Starlette's error middleware
    and only logged."""

    def __init__(self, app: ASGIApp, state: _State) -> None:
        self.app = app
        self.state = state

    def drain(self) -> None:
        """A graceful shutdown began: requests still sending their body get 503 now."""
        self.state.draining.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.state.api_key and path not in PUBLIC_PATHS and not self._authorized(scope):
            await self._reject(
                scope,
                send,
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>' with the key the server was "
                "started with (e5 serve --api-key or E5_API_KEY)",
                "authentication_error",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        limit = self.state.limits.max_payload_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(scope, send, 413, self._too_large(int(length), limit), "invalid_request_error")
            return
        try:
            body = await self._read_body(receive, limit)
        except _BodyRejected as exc:
            kind = "service_unavailable" if exc.status == 503 else "invalid_request_error"
            await self._reject(scope, send, exc.status, exc.message, kind)
            return
        except _ClientGone:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, replay, tracking_send)
        except Exception:
            logger.exception("%s %s failed", scope.get("method"), path)
            if started:
                raise
            await self._reject(scope, send, 500, _INTERNAL_ERROR, "server_error")

    async def _read_body(self, receive: Receive, limit: int) -> bytes:
        """The whole request body, within the size limit and ``body_timeout``; 503 as soon as
        a graceful shutdown begins while the client is still sending it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.state.limits.body_timeout
        chunks: list[bytes] = []
        size = 0
        draining = asyncio.ensure_future(self.state.draining.wait())
        try:
            while True:
                message_task = asyncio.ensure_future(receive())
                done, _ = await asyncio.wait(
                    {message_task, draining},
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if message_task not in done:
                    message_task.cancel()
                    if draining in done:
                        raise _BodyRejected(
                            503, "the server is shutting down and this request's body was not complete; retry"
                        )
                    raise _BodyRejected(
                        408,
                        f"the request body did not arrive within {self.state.limits.body_timeout:g} s "
                        "(e5 serve --body-timeout); send it in one go, or raise the limit",
                    )
                message = message_task.result()
                if message["type"] != "http.request":
                    raise _ClientGone()
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > limit:
                    raise _BodyRejected(413, self._too_large(size, limit))
                if not message.get("more_body", False):
                    return b"".join(chunks)
        finally:
            draining.cancel()

    @staticmethod
    def _too_large(size: int, limit: int) -> str:
        return (
            f"the request body is {size} bytes or more, over the limit of {limit} (e5 serve --max-payload-bytes); "
            "send fewer or shorter inputs per request"
        )

    def _authorized(self, scope: Scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        assert self.state.api_key is not None
        # Bytes on both sides: a header with non-ASCII bytes is a wrong key, not a crash.
        return scheme.lower() == b"bearer" and hmac.compare_digest(
            token.strip(), self.state.api_key.encode("utf-8")
        )

    async def _reject(
        self,
        scope: Scope,
        send: Send,
        status: int,
        message: str,
        kind: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = _error_body(status, message, kind)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status in (408, 413, 503):
            # The body may be unread or half-sent: close the connection after answering.
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
        await send({"type": "http.response.body", "body": body})
        path = scope.get("path", "")
        route = path if path in KNOWN_PATHS else "other"
        self.state.metrics.requests.labels(route=route, status=str(status)).inc()


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""
