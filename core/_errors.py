"""Every exception the package raises on purpose, in one tree.

::

    E5Error
    ├── ConfigurationError (ValueError)      bad argument: device, dtype, max_length, store options
    │   └── UnknownTaskError                 a registered-looking task name that is not registered
    ├── InputError (TypeError)               an input that is not a string (names the index)
    ├── ModelLoadError (OSError)             the model or tokenizer could not be loaded
    ├── OutOfMemoryError (RuntimeError)      one text does not fit on the device even alone
    ├── SourceError (ValueError)             a malformed input file (names file and line)
    └── StoreError                           anything a vector store sink reports
        ├── StoreUnavailableError (ConnectionError)   unreachable after retries with back-off
        └── SchemaMismatchError (ValueError)          the collection exists with another dim/metric

Every message says what was received, what was expected and how to fix it.
"""

from __future__ import annotations

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
]


class E5Error(Exception):
    """Base class of every error raised on purpose by e5-integrations."""


class ConfigurationError(E5Error, ValueError):
    """An argument or setting has a value the package cannot use."""


class UnknownTaskError(ConfigurationError):
    """A task name (no spaces) that is not in the instruction table."""


class InputError(E5Error, TypeError):
    """An input item is not a string; the message names its index."""


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
