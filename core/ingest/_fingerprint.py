"""Per-document fingerprints: skip an unchanged document before it is tokenized.

A re-run over a corpus that mostly did not change should cost one cheap store lookup per
batch of documents, not a tokenization and a lookup per chunk. So every document gets a
*fingerprint*: a hash of everything its stored chunks depend on (its id, source, text and
metadata, the model, ``max_length``, the resolved chunk size and overlap, and the recipe
key). The fingerprint and the document's chunk count ride on its chunk 0, appended to that
chunk's ``e5_content_hash`` value as a *mark*::

    "<content hash of chunk 0> d1:<chunk count>:<document fingerprint>"

Keeping the mark inside ``e5_content_hash`` means every store and every layout already
stores it and every ``Sink.fetch_hashes`` already reads it: the mark lookup of a batch of
documents is one ``fetch_hashes`` of their ``"{id}#0"`` ids, with no store-specific code.
The content hash itself (the first 64 characters) is unchanged by the mark, so a chunk is
never re-embedded because a mark was added, and rows written before marks existed (no mark)
are simply looked up chunk by chunk, as before.

The mark's promise is "every chunk of this document, as fingerprinted, is stored". The
engines keep it across a crash (kill -9) by writing it last:

* the local engine emits chunk 0 after the document's other chunks and upserts marked
  records in a request after the plain ones, so a mark is acknowledged only after all of
  its document's other chunks are;
* the Ray engine, whose writers run in parallel, marks only documents of a single chunk
  (the mark then travels with the only chunk) and writes other chunk 0s unmarked;
* the probe chunk of a remote object (chunk 0 of its first document, see ``_remote``) holds
  the object's *seal* instead (``"<content hash>~object:<seal>"``): it is written after
  every other chunk of the object, marks included;
* before a document whose stored mark no longer matches is rewritten in parts, its chunk 0
  (and with it the stale mark) is deleted, so a run killed halfway cannot leave an old
  mark over new chunks (which a later revert of the source would wrongly trust).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from e5_integrations.ingest._chunking import chunk_id
from e5_integrations.ingest._remote import SEAL_SEPARATOR

__all__ = [
    "MARK_VERSION",
    "StoredMark",
    "document_fingerprint",
    "fetch_marks",
    "mark_value",
    "parse_stored_hash",
    "stored_unchanged",
]

#: The mark's format version; a mark of another version is ignored (the document is chunked).
MARK_VERSION = "d1"
_SEPARATOR = " "


@dataclass(frozen=True)
class StoredMark:
    """What a stored ``e5_content_hash`` value holds.

    Attributes:
        content_hash: the chunk's own content hash.
        fingerprint: the document fingerprint of the mark, ``None`` when unmarked.
        chunks: the document's chunk count recorded with the mark (0 when unmarked).
        seal: the remote object's seal when this is its probe chunk, else ``None``.
    """

    content_hash: str
    fingerprint: str | None = None
    chunks: int = 0
    seal: str | None = None

    @property
    def plain(self) -> bool:
        """Neither a mark nor a seal: the value is the content hash alone."""
        return self.fingerprint is None and self.seal is None


def document_fingerprint(
    document_id: str,
    source: str,
    text: str,
    metadata: Mapping[str, Any],
    *,
    model: str,
    max_length: int,
    chunk_tokens: int,
    overlap: int,
    recipe: str | None,
) -> str:
    """Hash of everything the stored chunks of a document depend on.

    Equal fingerprints → the document would be split into the same chunks with the same
    metadata and embedded the same way, so a stored mark with this fingerprint means the
    document can be skipped without tokenizing it. ``chunk_tokens`` and ``overlap`` are the
    resolved sizes (defaults filled in), so a change of default re-chunks too.
    """
    items = [
        "e5-document",
        MARK_VERSION,
        model,
        max_length,
        chunk_tokens,
        overlap,
        recipe,
        document_id,
        source,
        metadata,
    ]
    head = json.dumps(items, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(head.encode("utf-8"))
    digest.update(b"\x00")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def mark_value(content_hash: str, fingerprint: str, chunks: int) -> str:
    """The ``e5_content_hash`` value of a marked chunk 0."""
    return f"{content_hash}{_SEPARATOR}{MARK_VERSION}:{chunks}:{fingerprint}"


def parse_stored_hash(value: str) -> StoredMark:
    """Split a stored ``e5_content_hash`` value into the content hash and the mark, if any.

    A value without a (well-formed, current-version) mark is all content hash; an object's
    seal (``~object:...``, see ``_remote``) is split off first.
    """
    body, sealed, seal = value.partition(SEAL_SEPARATOR)
    content, separator, mark = body.partition(_SEPARATOR)
    found_seal = seal if sealed else None
    if not separator:
        return StoredMark(body, seal=found_seal)
    version, _, rest = mark.partition(":")
    count, _, fingerprint = rest.partition(":")
    if version != MARK_VERSION or not count.isdigit() or not fingerprint:
        return StoredMark(content, seal=found_seal)
    return StoredMark(content, fingerprint, int(count), found_seal)


def stored_unchanged(stored: str | None, expected: str) -> bool:
    """Whether a chunk stored with ``e5_content_hash == stored`` need not be written again
    to hold ``expected`` (its content hash, marked or not).

    Equal values are unchanged. A stored row with neither mark nor seal whose content hash
    equals the expected one is unchanged too: rows written before marks existed are not
    re-embedded just to add one. A stored mark or seal that differs from the expected value
    needs the chunk written again, so neither ever claims what is not stored.
    """
    if stored is None:
        return False
    if stored == expected:
        return True
    old = parse_stored_hash(stored)
    return old.plain and old.content_hash == parse_stored_hash(expected).content_hash


def fetch_marks(
    fetch_hashes: Callable[[Sequence[str]], dict[str, str]], document_ids: Sequence[str]
) -> dict[str, StoredMark]:
    """``{document id: stored mark}`` for the documents whose chunk 0 is stored, in one
    ``fetch_hashes`` call over their ``"{id}#0"`` ids (the caller bounds the batch)."""
    if not document_ids:
        return {}
    first = {chunk_id(document_id, 0): document_id for document_id in document_ids}
    stored = fetch_hashes(list(first))
    return {first[key]: parse_stored_hash(value) for key, value in stored.items() if key in first}
