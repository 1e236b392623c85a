"""Every exception the package raises on purpose, in one tree.

::

    E5Error
    ├── ConfigurationError (ValueError)      bad argument: device, dtype, max_length, store options
    │   └── UnknownTaskError                 a registered-looking task name that is not registered
    ├── InputError (TypeError)               an input that is not a string, or gives no vector (names the index)
    ├── ModelLoadError (OSError)             the model or tokenizer could not be loaded
    ├── OutOfMemoryError (RuntimeError)      one text does not fit on the device even alone
    ├── SourceError (ValueError)             a malformed input file (names file and line)
    └── StoreError                           anything a vector store sink reports
        ├── StoreUnavailableError (ConnectionError)   unreachable after retries with back-off
        └── SchemaMismatchError (ValueError)          the collection exists with another dim/metric

Every message says what was received, what was expected and how to fix it, naming an option
that exists where the message is read: a flag of the ``e5`` command when the command runs,
else the Python parameter. Messages spell options with :func:`option` and :func:`for_front`
for that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "ConfigurationError",
    "E5Error",
    "InputError",
    "ModelLoadError",
    "OutOfMemoryError",
    "SchemaMismatchError",
    "SourceError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownTaskError",
    "cli_front",
    "for_front",
    "option",
    "rebuild_hint",
]

#: Python parameter -> the ``e5`` flag that sets it. A parameter missing here has no flag.
CLI_FLAGS: dict[str, str] = {
    "api_key": "--api-key",
    "batch_tokens": "--batch-tokens",
    "chunk_overlap": "--chunk-overlap",
    "chunk_tokens": "--chunk-tokens",
    "collection": "--collection",
    "device": "--device",
    "dtype": "--dtype",
    "exclude": "--exclude",
    "gpus_per_worker": "--gpus-per-worker",
    "id_field": "--id-field",
    "id_root": "--id-root",
    "include": "--include",
    "layout": "--layout",
    "model": "--model",
    "on_error": "--on-error",
    "ocr": "--ocr",
    "parse_timeout": "--parse-timeout",
    "parse_workers": "--parse-workers",
    "prune": "--prune",
    "ray_address": "--ray-address",
    "recipe": "--recipe",
    "retry_seconds": "--retry-seconds",
    "storage_options": "--storage-option",
    "store": "--store",
    "text_field": "--text-field",
    "uri": "--uri",
    "workers": "--workers",
    "writers": "--writers",
}

_UNSET: Any = object()
_front = ["python"]  # process-wide, not a contextvar: errors are also built on worker threads


@contextmanager
def cli_front() -> Iterator[None]:
    """While the ``e5`` command runs: messages name its flags instead of Python parameters."""
    _front.append("cli")
    try:
        yield
    finally:
        _front.pop()


def for_front(python: str, cli: str) -> str:
    """``cli`` while the ``e5`` command runs, else ``python``: for hints that differ in more
    than an option's spelling (an option the command does not have, say)."""
    return cli if _front[-1] == "cli" else python


def rebuild_hint() -> str:
    """What to do about a collection that exists with another schema (every sink says it)."""
    return f"use another {option('collection')} name, or drop the collection to rebuild it" + for_front(
        " (open_sink(...).drop())", " (with the store's own tools: e5 never drops a collection)"
    )


def option(name: str, value: Any = _UNSET) -> str:
    """How the user sets parameter ``name`` (to ``value``) where the message will be read:
    ``--chunk-tokens 256`` under the ``e5`` command, ``chunk_tokens=256`` from Python
    (``--prune`` for ``prune=True``).

    A parameter without a flag is spelled the Python way in both.
    """
    flag = CLI_FLAGS.get(name)
    if _front[-1] == "cli" and flag is not None:
        return flag if value is _UNSET or value is True else f"{flag} {value}"
    return f"{name}=" if value is _UNSET else f"{name}={value!r}"


class E5Error(Exception):
    """Base class of every error raised on purpose by e5-integrations."""


class ConfigurationError(E5Error, ValueError):
    """An argument or setting has a value the package cannot use."""


class UnknownTaskError(ConfigurationError):
    """A task name (no spaces) that is not in the instruction table."""


class InputError(E5Error, TypeError):
    """An input item cannot be embedded: it is not a string, it leaves the recipe no token
    to pool (``""`` under GritLM), or the model gives it a zero or non-finite vector. The
    message names its index, and so does :attr:`index` where it is known."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        #: The position of the input in the call, where the error is about one input.
        self.index = index


class ModelLoadError(E5Error, OSError):
    """The model or its tokenizer could not be loaded."""


class OutOfMemoryError(E5Error, RuntimeError):
    """A single text does not fit in device memory, even in a batch of its own."""


class SourceError(E5Error, ValueError):
    """An input file is malformed; the message names the file and the line."""


class StoreError(E5Error):
    """A vector store refused or failed an operation."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The store could not be reached, even after retrying with back-off."""


class SchemaMismatchError(StoreError, ValueError):
    """The collection exists with another dimension or metric; nothing was written."""


class LayoutMismatchError(SchemaMismatchError, ConfigurationError):
    """``layout=`` (``--layout``) names another layout than the existing collection's; nothing
    was written. A usage error: ``e5`` exits with status 2."""
