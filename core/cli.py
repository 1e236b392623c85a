"""The ``e5`` command: ``e5 ingest SOURCE...``, ``e5 search QUERY`` and ``e5 serve``.

With no ``--store``/``--uri`` both use an embedded Chroma store in ``./.e5-store``, so::

    e5 ingest ./docs
    e5 search "how do I rotate the API key?"

works with no server. ``e5 ingest --engine ray`` runs the same job as a Ray Data pipeline on a
Ray cluster (see :func:`e5_integrations.ray.ingest_ray`). Exit status: 0 on success, 2 for bad
arguments or input (a message on stderr, no traceback), 1 when the model or the store fails,
130 on Ctrl-C.

Everything that can be checked without the model's weights is checked before they load
(minutes for a 7B model): the flags, the store (reached, and an existing collection's
dimension and metric), and every input record.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from e5_integrations._errors import ConfigurationError, E5Error, InputError, SourceError, cli_front
from e5_integrations._redact import RedactingFormatter, redact, secrets_of
from e5_integrations.ingest._chunking import DEFAULT_CHUNK_OVERLAP
from e5_integrations.ingest._registry import STORES, infer_store, open_sink
from e5_integrations.ingest._remote import is_remote, parse_storage_options, storage_option_secrets
from e5_integrations.ingest._sink import DEFAULT_RETRY_SECONDS, Hit, Sink

if TYPE_CHECKING:
    from e5_integrations._encoder import DeferredEncoder
    from e5_integrations.ingest._report import IngestReport
    from e5_integrations.server import RemoteEncoder

__all__ = ["DEFAULT_COLLECTION", "build_parser", "main"]

DEFAULT_COLLECTION = "e5_docs"
#: Errors caused by what the user passed: exit status 2, like argparse's own errors.
_USAGE_ERRORS = (ConfigurationError, InputError, SourceError)


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log progress to stderr (-vv: debug)"
    )


def _add_store_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("store")
    group.add_argument(
        "--store", choices=sorted(STORES), help="vector store (default: embedded Chroma in ./.e5-store)"
    )
    group.add_argument(
        "--uri",
        help="store location: a path (Chroma, Qdrant local), a .db file (Milvus Lite), "
        "http(s)://host:port (server), postgresql://... (pgvector); default ./.e5-store/<store>",
    )
    group.add_argument(
        "--collection", default=DEFAULT_COLLECTION, help="collection or table name (default: %(default)s)"
    )
    group.add_argument("--api-key", help="Qdrant API key (default: the QDRANT_API_KEY environment variable)")
    group.add_argument(
        "--retry-seconds",
        type=_non_negative_float,
        metavar="SECONDS",
        help="how long to keep retrying a store that cannot be reached (a restart, a failover) "
        f"before giving up; 0: no retries (default: {DEFAULT_RETRY_SECONDS:g})",
    )


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        help="model name or local directory (default: $E5_MODEL, else intfloat/e5-mistral-7b-instruct)",
    )
    group.add_argument("--device", help="torch device, e.g. cuda, cuda:1, cpu (default: the best available)")
    group.add_argument("--dtype", default="auto", help="auto, bf16, fp16 or fp32 (default: %(default)s)")
    group.add_argument(
        "--recipe",
        type=_recipe_name,
        help="how the model embeds: e5-mistral, sgpt, echo, prompteol, llm2vec, gritlm, qwen3-embedding, ... "
        "(default: the model's preset, else its sentence-transformers prompts, else e5-mistral)",
    )
    _add_server_arguments(parser)


def _recipe_name(text: str) -> str:
    """``--recipe``: a built-in recipe name, checked before any model is loaded."""
    from e5_integrations._recipe import available_recipes

    if text.strip().lower() not in available_recipes():
        raise argparse.ArgumentTypeError(
            f"unknown recipe {text!r}; valid recipes: {', '.join(available_recipes())}"
        )
    return text.strip().lower()


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("remote model (e5 serve)")
    group.add_argument(
        "--server",
        default=os.environ.get("E5_SERVER") or None,
        help="embed through an `e5 serve` server at this URL instead of loading the model (default: $E5_SERVER)",
    )
    group.add_argument("--server-api-key", help="API key of that server (default: $E5_API_KEY)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``e5`` (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="e5", description="Embed documents with e5-mistral and search them."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="chunk, embed and store documents (idempotent, resumable)")
    ingest.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="files, directories or URLs (s3://bucket/prefix/, gs://, az://, https://) of "
        ".txt .md .jsonl .csv .parquet; .pdf and the other document formats with the [documents] extra",
    )
    _add_common_arguments(ingest)
    _add_store_arguments(ingest)
    ingest.add_argument(
        "--layout",
        choices=_layout_choices(),
        help=f"whose schema the collection follows: {_layouts_described()}. Default: the existing "
        "collection's, else e5",
    )
    _add_model_arguments(ingest)
    ingest.add_argument(
        "--batch-tokens", type=_positive, help="padded tokens per forward pass (default: the encoder's)"
    )
    ingest.add_argument(
        "--chunk-tokens", type=_positive, help="tokens per chunk (default: 512, capped to max length)"
    )
    ingest.add_argument(
        "--chunk-overlap",
        type=_non_negative,
        help=f"tokens shared by consecutive chunks (default: {DEFAULT_CHUNK_OVERLAP}, "
        "at most a quarter of a chunk)",
    )
    ingest.add_argument(
        "--text-field", default="text", help="JSONL/CSV/parquet field with the text (default: %(default)s)"
    )
    ingest.add_argument(
        "--id-field", help="JSONL/CSV/parquet field with the document id (default: id, when present)"
    )
    ingest.add_argument(
        "--id-root",
        metavar="DIR",
        help="file ids relative to DIR, portable across machines (default: each file's absolute real path)",
    )
    ingest.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="read only files or objects matching GLOB (repeatable); a GLOB with a / matches the path "
        "under the source, one without the file name, e.g. '*.jsonl' or 'exports/2024-*/*.parquet'",
    )
    ingest.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="do not read files or objects matching GLOB (repeatable; as --include)",
    )
    ingest.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the s3/gcs/azure filesystem (repeatable), e.g. endpoint_url=http://minio:9000 "
        "for an S3-compatible store, anon=true, account_name=NAME; credentials otherwise come the cloud's "
        "usual way (environment, profile, instance role). Values of secret keys are never printed",
    )
    ingest.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="malformed records and unreadable files (encrypted, corrupt, a parser crash or timeout): fail, "
        "or skip and report them; an unreadable file's stored chunks are always kept (default: %(default)s)",
    )
    documents = ingest.add_argument_group("documents (PDF, Office, HTML...)")
    documents.add_argument(
        "--ocr",
        action="store_true",
        help="read PDF pages without a text layer (scans) with Tesseract (needs the tesseract program); "
        "default: report them",
    )
    documents.add_argument(
        "--parse-workers",
        type=_non_negative,
        help="processes parsing documents while the model embeds (default: min(CPUs, 4); 0: in this "
        "process, without a time limit)",
    )
    documents.add_argument(
        "--parse-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="seconds one file may take to parse before it is reported as unreadable (default: 120)",
    )
    ingest.add_argument(
        "--prune",
        action="store_true",
        help="delete stored chunks of documents no longer in the sources "
        "(give every source of the collection)",
    )
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    ingest.add_argument("--json", action="store_true", help="print the final report as one JSON object")
    engine = ingest.add_argument_group("engine")
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process and its GPUs; ray: a Ray Data job on a Ray cluster (default: %(default)s)",
    )
    engine.add_argument(
        "--ray-address",
        help="Ray cluster to join: auto, ray://HOST:10001 (default: $RAY_ADDRESS, else a local Ray instance)",
    )
    engine.add_argument(
        "--gpus-per-worker",
        type=_non_negative_float,
        help="GPUs per embedding actor (default: 1 when the cluster has GPUs, else 0: CPU)",
    )
    engine.add_argument(
        "--workers", type=_positive, help="embedding actors (default: cluster GPUs / --gpus-per-worker)"
    )
    engine.add_argument("--writers", type=_positive, help="concurrent write tasks on the store (default: 2)")

    search = commands.add_parser("search", help="search a collection with a question")
    search.add_argument("query", metavar="QUERY")
    _add_common_arguments(search)
    _add_store_arguments(search)
    _add_model_arguments(search)
    search.add_argument(
        "--task", help="task name (e.g. NQ) or instruction for the query (default: web search)"
    )
    search.add_argument("-k", type=_positive, default=10, help="number of results (default: %(default)s)")
    search.add_argument("--json", action="store_true", help="one JSON object per hit per line")
    _add_serve_parser(commands)
    return parser


def _add_serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="serve the model over an OpenAI-compatible HTTP API")
    _add_common_arguments(serve)
    serve.add_argument(
        "--model",
        help="model name or local directory (default: $E5_MODEL, else intfloat/e5-mistral-7b-instruct)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    serve.add_argument("--port", type=_positive, default=8080, help="TCP port (default: %(default)s)")
    serve.add_argument(
        "--device",
        action="append",
        help="torch device, e.g. cuda, cuda:1, cpu; repeat it to use several GPUs (default: the best available)",
    )
    serve.add_argument("--dtype", default="auto", help="auto, bf16, fp16 or fp32 (default: %(default)s)")
    serve.add_argument(
        "--batch-tokens", type=_positive, help="padded tokens per forward pass (default: 16384)"
    )
    serve.add_argument(
        "--max-length",
        type=_positive,
        help="token limit per input, special tokens included (default: the recipe's, 4096 for e5-mistral)",
    )
    serve.add_argument(
        "--recipe",
        type=_recipe_name,
        help="how the model embeds (default: the model's preset, else its sentence-transformers prompts, "
        "else e5-mistral)",
    )
    serve.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on every route but /health and /metrics "
        "(default: $E5_API_KEY; none: open)",
    )
    serve.add_argument(
        "--max-queue-tokens",
        type=_positive,
        default=262144,
        help="tokens queued before new requests get 429 with Retry-After (default: %(default)s)",
    )
    serve.add_argument(
        "--max-inputs", type=_positive, default=2048, help="inputs per request (default: %(default)s)"
    )
    serve.add_argument(
        "--max-payload-bytes",
        type=_positive,
        default=2_000_000,
        help="request body size limit (default: %(default)s)",
    )
    serve.add_argument(
        "--served-model-name",
        help="the model name answers and GET /v1/models give (default: the model's folder name or hub id; "
        "a local path is never shown)",
    )
    serve.add_argument(
        "--threads",
        type=_non_negative,
        help="torch CPU threads for the forward passes (default: the CPUs this process may use, from its "
        "affinity and cgroup quota, less one for the event loop and tokenizer; 0: torch's default, one per "
        "host core)",
    )
    serve.add_argument(
        "--priority-tokens",
        type=_non_negative,
        default=1024,
        help="requests of at most this many tokens, and every query, run ahead of bulk work "
        "(default: %(default)s)",
    )
    serve.add_argument(
        "--header-timeout",
        type=_positive_float,
        default=10.0,
        help="seconds a connection may take to send a request's headers before it is closed "
        "(default: %(default)s)",
    )
    serve.add_argument(
        "--body-timeout",
        type=_positive_float,
        default=60.0,
        help="seconds to receive a request's whole body; past it, 408 (default: %(default)s)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=5.0,
        help="seconds a kept-alive connection may stay idle between requests (default: %(default)s)",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive,
        default=1024,
        help="open connections (or requests in flight) beyond which requests get 503 (default: %(default)s)",
    )


def _layout_choices() -> list[str]:
    from e5_integrations.ingest._layout import layout_names

    return list(layout_names())


def _layouts_described() -> str:
    """``e5 (e5's own schema), ..., langchain-legacy (pgvector only: ...)``, from the registry."""
    from e5_integrations.ingest._layout import get_layout, layout_names

    described = []
    for name in layout_names():
        layout = get_layout(name, (name,))
        only = f"{' and '.join(layout.stores)} only: " if layout.stores else ""
        described.append(f"{name} ({only}{layout.description})")
    return ", ".join(described)


def _open_sink(args: argparse.Namespace, existing: bool = False) -> Sink:
    """The store the flags name; ``existing`` (search) opens only a store that is there."""
    options: dict[str, Any] = {}
    if args.api_key is not None:
        store, _ = infer_store(args.store, args.uri, existing=existing)
        if store != "qdrant":
            raise ConfigurationError(
                f"--api-key is a Qdrant option; the store here is {store} (--store qdrant)"
            )
        options["api_key"] = args.api_key
    return open_sink(
        args.store,
        args.uri,
        args.collection,
        existing=existing,
        retry_seconds=args.retry_seconds,
        layout=getattr(args, "layout", None),
        **options,
    )


def _remote_encoder(args: argparse.Namespace) -> RemoteEncoder:
    from e5_integrations.server import RemoteEncoder

    given = (("--model", "model"), ("--device", "device"), ("--recipe", "recipe"))
    local = [flag for flag, name in given if getattr(args, name, None)]
    if local:
        raise ConfigurationError(
            f"{', '.join(local)} configure a local model, but --server (or E5_SERVER) embeds with the server's "
            "model and recipe; drop one of them"
        )
    return RemoteEncoder(args.server, api_key=args.server_api_key)


def _encoder(args: argparse.Namespace) -> DeferredEncoder | RemoteEncoder:
    """The encoder the flags ask for, checked but not loaded: the weights (minutes for a 7B
    model) load at the first embedding, after the input and the store were checked."""
    from e5_integrations._encoder import DeferredEncoder

    if getattr(args, "server", None):
        return _remote_encoder(args)

    options: dict[str, Any] = {"device": args.device, "dtype": args.dtype}
    if getattr(args, "batch_tokens", None) is not None:
        options["batch_tokens"] = args.batch_tokens
    if getattr(args, "recipe", None) is not None:
        options["recipe"] = args.recipe
    return DeferredEncoder(args.model, **options)


def _check_paths(sources: Sequence[str]) -> None:
    """Fail on a mistyped source before spending minutes loading a 7B model (URLs are
    listed by the engine, before the model loads too)."""
    for source in sources:
        if not is_remote(source) and not os.path.exists(source):
            raise SourceError(f"source {source!r} does not exist; pass files or directories to ingest")


_RAY_ONLY = ("ray_address", "gpus_per_worker", "workers", "writers")


def _job_options(args: argparse.Namespace) -> dict[str, Any]:
    """What both engines take from the command line besides the store and the model."""
    return {
        "chunk_tokens": args.chunk_tokens,
        "chunk_overlap": args.chunk_overlap,
        "text_field": args.text_field,
        "id_field": args.id_field,
        "id_root": args.id_root,
        "on_error": args.on_error,
        "ocr": args.ocr,
        "parse_workers": args.parse_workers,
        "parse_timeout": args.parse_timeout,
        "progress": False if args.no_progress else None,
        "prune": args.prune,
        "include": list(args.include),
        "exclude": list(args.exclude),
        "storage_options": parse_storage_options(args.storage_option),
    }


def _ingest_ray(args: argparse.Namespace) -> IngestReport:
    from e5_integrations.ray import ingest_ray

    if args.device is not None:
        raise ConfigurationError(
            "--device is for --engine local; with --engine ray, Ray places each embedding actor on its own "
            "GPUs (see --gpus-per-worker)"
        )
    options: dict[str, Any] = {}
    if args.api_key is not None:
        options["api_key"] = args.api_key
    if args.retry_seconds is not None:
        options["retry_seconds"] = args.retry_seconds
    ray_options = {name: getattr(args, name) for name in _RAY_ONLY if getattr(args, name) is not None}
    if args.batch_tokens is not None:
        ray_options["batch_tokens"] = args.batch_tokens
    return ingest_ray(
        args.sources,
        layout=args.layout,
        store=args.store,
        uri=args.uri,
        collection=args.collection,
        sink_options=options,
        model=args.model,
        dtype=args.dtype,
        recipe=args.recipe,
        retry_seconds=args.retry_seconds,
        **_job_options(args),
        **ray_options,
    )


def _ingest_local(args: argparse.Namespace) -> IngestReport:
    from e5_integrations.ingest._pipeline import ingest

    given = [f"--{name.replace('_', '-')}" for name in _RAY_ONLY if getattr(args, name) is not None]
    if given:
        raise ConfigurationError(f"{', '.join(given)} only apply to --engine ray")
    encoder = _encoder(args)  # flags checked; the weights load at the first embedding, after
    with _open_sink(args) as sink:  # the store was reached, the input checked and the collection checked
        return ingest(args.sources, sink, encoder, retry_seconds=args.retry_seconds, **_job_options(args))


def _run_ingest(args: argparse.Namespace, out: TextIO) -> int:
    _check_paths(args.sources)
    if args.engine == "ray":
        # Ray's driver prints its cluster's news (a node that died, a worker's log) on stdout;
        # they go to stderr, so stdout holds only the report (`e5 ingest --json | jq` works)
        with contextlib.redirect_stdout(sys.stderr):
            report = _ingest_ray(args)
    else:
        report = _ingest_local(args)
    if not report.collection:
        report.collection = args.collection
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False), file=out)
    else:
        print(report.summary(), file=out)
    return 0


def _print_hits(hits: Sequence[Hit], as_json: bool, out: TextIO) -> None:
    for rank, hit in enumerate(hits, start=1):
        if as_json:
            line = {"id": hit.id, "score": float(hit.score), "text": hit.text, "metadata": dict(hit.metadata)}
            print(json.dumps(line, ensure_ascii=False, default=str), file=out)
        else:
            snippet = " ".join(hit.text.split())
            if len(snippet) > 200:
                snippet = snippet[:199] + "…"
            print(f"{rank:>3}. {hit.score:.4f}  {hit.id}\n     {snippet}", file=out)


def _run_search(args: argparse.Namespace, out: TextIO) -> int:
    from e5_integrations.ingest._pipeline import search

    encoder = _encoder(args)
    with _open_sink(args, existing=True) as sink:  # a search never creates a store
        if sink.count() == 0:
            raise ConfigurationError(
                f"collection {args.collection!r} is empty or does not exist in this store; "
                "run `e5 ingest SOURCE...` first with the same --store/--uri/--collection"
            )
        hits = search(args.query, sink, encoder, k=args.k, task=args.task)  # loads the model here
    _print_hits(hits, args.json, out)
    return 0


def _run_serve(args: argparse.Namespace, out: TextIO) -> int:
    from e5_integrations.server import ServerLimits, serve

    limits = ServerLimits(
        max_queue_tokens=args.max_queue_tokens,
        max_inputs=args.max_inputs,
        max_payload_bytes=args.max_payload_bytes,
        priority_tokens=args.priority_tokens,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
    )
    devices = args.device
    return serve(
        args.model,
        host=args.host,
        port=args.port,
        device=devices[0] if devices and len(devices) == 1 else devices,
        dtype=args.dtype,
        batch_tokens=args.batch_tokens,
        max_length=args.max_length,
        recipe=args.recipe,
        api_key=args.api_key,
        limits=limits,
        log_level="debug" if args.verbose > 1 else "info",
        served_model_name=args.served_model_name,
        threads=args.threads,
    )


def _secrets(args: argparse.Namespace) -> list[str]:
    """What must never be printed: the password and secret parameters of ``--uri`` and the API keys."""
    keys = [
        getattr(args, "api_key", None),
        getattr(args, "server_api_key", None),
        os.environ.get("QDRANT_API_KEY"),
        os.environ.get("E5_API_KEY"),
    ]
    try:
        options = parse_storage_options(getattr(args, "storage_option", None) or [])
    except ConfigurationError:  # reported by the command itself, redacted
        options = {}
    return [
        *secrets_of(getattr(args, "uri", None)),
        *(key for key in keys if key),
        *storage_option_secrets(options),
        *(secret for source in getattr(args, "sources", None) or [] for secret in secrets_of(source)),
    ]


def _configure_logging(verbosity: int, secrets: Sequence[str] = ()) -> None:
    package = logging.getLogger("e5_integrations")
    for old in [h for h in package.handlers if isinstance(h.formatter, RedactingFormatter)]:
        package.removeHandler(old)  # an earlier main() in this process (tests) installed it
    if verbosity <= 0:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    package.addHandler(handler)
    package.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``e5``; returns the exit status (see the module docs)."""
    args = build_parser().parse_args(argv)
    secrets = _secrets(args)
    _configure_logging(args.verbose, secrets)
    commands = {"ingest": _run_ingest, "search": _run_search, "serve": _run_serve}
    try:
        with cli_front():  # hints in messages name this command's flags
            return commands[args.command](args, sys.stdout)
    except _USAGE_ERRORS as exc:
        print(f"e5 {args.command}: error: {redact(str(exc), secrets)}", file=sys.stderr)
        return 2
    except E5Error as exc:
        print(f"e5 {args.command}: error: {redact(str(exc), secrets)}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"e5 {args.command}: error: {redact(str(exc), secrets)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"e5 {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
