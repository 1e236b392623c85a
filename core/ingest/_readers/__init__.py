"""The reader seam: file extension -> reader module.

Each format is one module here that registers its reader with
:func:`~e5_integrations.ingest._readers._base.register_reader`; importing this package
registers the built-in ones. See ``_base`` for the contract every reader keeps.
"""

from __future__ import annotations

from e5_integrations.ingest._readers import (
    compressed,
    csv,
    docx,
    epub,
    html,
    ipynb,
    jsonl,
    parquet,
    pdf,
    pptx,
    text,
    xlsx,
)
from e5_integrations.ingest._readers._base import (
    READERS,
    WHOLE_FILE_EXTENSIONS,
    Document,
    Fields,
    Item,
    Reader,
    RecordError,
    SourceFile,
    Span,
    Unread,
    is_whole_file,
    reader_for,
    register_reader,
)

__all__ = [
    "READERS",
    "Document",
    "Fields",
    "Item",
    "Reader",
    "RecordError",
    "WHOLE_FILE_EXTENSIONS",
    "SourceFile",
    "Span",
    "Unread",
    "compressed",
    "csv",
    "docx",
    "epub",
    "html",
    "ipynb",
    "is_whole_file",
    "jsonl",
    "parquet",
    "pdf",
    "pptx",
    "reader_for",
    "register_reader",
    "text",
    "xlsx",
]
