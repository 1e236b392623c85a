"""Token-aware chunking with the model's own tokenizer.

A text is tokenized once (no special tokens) with character offsets. If it has at most
``chunk_tokens`` tokens it is one chunk, the whole text (trimmed). Otherwise windows of
``chunk_tokens`` tokens advance by ``chunk_tokens - overlap`` tokens, and each chunk is the
slice of the original text its tokens cover, trimmed of surrounding whitespace, so every
chunk is an exact substring of the document. Whitespace-only windows are dropped and the
remaining chunks numbered 0, 1, 2... so chunk ids stay contiguous.

A document with structure (a PDF's pages, an Office file's slides or sections: a
document with spans) is cut at its units' boundaries where one falls in the second half of
a window: a heading or the start of a page, slide, sheet or section first, else a
paragraph (a blank line); the next chunk then starts at that boundary, with no overlap
(the units are whole). A window with no such boundary is cut as before, and the next one
starts at the first boundary inside the overlap if there is one. Plain text and records
(no spans) are cut exactly as before, so their chunk ids and content hashes do not change.

The default size is :data:`DEFAULT_CHUNK_TOKENS` (512) tokens, capped so a chunk plus BOS
and EOS fits the encoder's ``max_length``: a retrieval-sized passage (e5 models are
trained and evaluated on passage retrieval, where passages are a few hundred tokens), a
single last-token vector summarises it well, and the padded batches stay small. A document
that fits is never split.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from e5_integrations._errors import ConfigurationError, for_front, option

__all__ = [
    "BOUNDARY_SLACK",
    "DEFAULT_CHUNK_OVERLAP",
    "DEFAULT_CHUNK_TOKENS",
    "SPECIAL_TOKEN_ROOM",
    "Chunk",
    "Chunker",
    "check_chunk_sizes",
    "structure_boundaries",
    "chunk_id",
    "content_hash",
    "recipe_key",
]

DEFAULT_CHUNK_TOKENS = 512
DEFAULT_CHUNK_OVERLAP = 64
#: Tokens the encoder adds around a document (BOS and EOS).
SPECIAL_TOKEN_ROOM = 2
#: Tokens a default-size chunk leaves free when the recipe's room binds (see check_chunk_sizes).
BOUNDARY_SLACK = 2


#: Strength of a boundary: the start of a heading, page, slide, sheet or section...
UNIT_BOUNDARY = 2
#: ... beats the start of a paragraph.
PARAGRAPH_BOUNDARY = 1
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*(?=\S)")
_HEADING = re.compile(r"^#{1,6} ", re.MULTILINE)


def structure_boundaries(text: str, unit_starts: Iterable[int] = ()) -> dict[int, int]:
    """Where units of ``text`` start, as ``{character offset: strength}``: the given
    ``unit_starts`` (span starts) and Markdown headings (``# ...``) at :data:`UNIT_BOUNDARY`,
    paragraph starts (after a blank line) at :data:`PARAGRAPH_BOUNDARY`."""
    boundaries = {match.end(): PARAGRAPH_BOUNDARY for match in _PARAGRAPH.finditer(text)}
    for match in _HEADING.finditer(text):
        boundaries[match.start()] = UNIT_BOUNDARY
    for start in unit_starts:
        if 0 < start < len(text):
            boundaries[start] = UNIT_BOUNDARY
    boundaries.pop(0, None)
    return boundaries


class _FastTokenizer(Protocol):
    def __call__(self, text: str, **kwargs: Any) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Chunk:
    """One chunk of a document.

    Attributes:
        index: position among the document's chunks, from 0.
        text: exact substring ``document[start:end]``.
        start: character offset of the chunk in the document.
        end: character offset just past the chunk.
        tokens: number of tokens of the window (without special tokens).
    """

    index: int
    text: str
    start: int
    end: int
    tokens: int


def chunk_id(document_id: str, index: int) -> str:
    """The deterministic id of chunk ``index`` of a document: ``"{document_id}#{index}"``."""
    return f"{document_id}#{index}"


def content_hash(
    model: str, max_length: int, text: str, metadata: Mapping[str, Any], recipe: str | None = None
) -> str:
    """Fingerprint of everything a stored row depends on: the model, ``max_length``, the
    chunk text and its metadata (canonical JSON), and the recipe. Equal hash → the stored
    row is identical and the chunk need not be embedded again.

    ``recipe`` is :func:`recipe_key` of the encoder's recipe: ``None`` for the default
    e5-mistral recipe, which leaves the hash exactly as it was before recipes existed (so
    collections already embedded with e5-mistral are not re-embedded), and the recipe's name
    plus a digest of its settings otherwise, so embedding with another recipe (or a changed
    one) re-embeds every chunk.
    """
    items: list[Any] = [model, max_length, text, metadata]
    if recipe is not None:
        items.append({"recipe": recipe})
    payload = json.dumps(items, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def recipe_key(recipe: Any) -> str | None:
    """What :func:`content_hash` records of a recipe: ``None`` for e5-mistral's (the default,
    whose hashes predate recipes), else ``Recipe.fingerprint()``."""
    from e5_integrations._recipe import E5_MISTRAL, Recipe

    if recipe is None or not isinstance(recipe, Recipe) or recipe == E5_MISTRAL:
        return None
    return recipe.fingerprint()


def check_chunk_sizes(
    chunk_tokens: int | None, overlap: int | None, max_length: int, text_limit: int | None = None
) -> tuple[int, int]:
    """``(chunk_tokens, overlap)`` with the defaults filled in, checked against ``max_length``
    and the recipe's ``text_limit`` (:meth:`~e5_integrations.Recipe.text_capacity`: what the
    document template leaves of ``max_length``, and LLM2Vec and Echo cut longer texts whatever
    ``max_length`` is), so no chunk is cut short. Needs no tokenizer, so a run can check the
    sizes against ``max_length`` before loading anything, and again once the capacity is known.

    Raises:
        ConfigurationError: a size out of range.
    """
    limit = max_length - SPECIAL_TOKEN_ROOM
    reason = f"a chunk plus BOS and EOS fits the model's max_length={max_length}"
    if text_limit is not None and text_limit < limit:
        limit = text_limit
        reason = (
            f"the recipe embeds at most {text_limit} tokens of a text within max_length={max_length} "
            "(its document template and special tokens take the rest)"
        )
    if chunk_tokens is None:
        # A window cut out of a document can take a token more at each end once tokenized on
        # its own (SentencePiece's dummy prefix, a merge across the cut): the default leaves
        # room for that where the recipe's room is what binds.
        slack = BOUNDARY_SLACK if text_limit is not None and text_limit <= DEFAULT_CHUNK_TOKENS else 0
        chunk_tokens = max(1, min(DEFAULT_CHUNK_TOKENS, limit - slack))
    if overlap is None:
        overlap = min(DEFAULT_CHUNK_OVERLAP, chunk_tokens // 4)
    if not 1 <= chunk_tokens <= limit:
        fix = for_front(
            f"raise max_length or lower {option('chunk_tokens')}", f"lower {option('chunk_tokens')}"
        )
        raise ConfigurationError(
            f"{option('chunk_tokens', chunk_tokens)}; expected 1..{limit} so {reason} ({fix})"
        )
    if not 0 <= overlap < chunk_tokens:
        raise ConfigurationError(
            f"{option('chunk_overlap', overlap)}; expected 0 <= overlap < the chunk size ({chunk_tokens} "
            f"tokens); lower {option('chunk_overlap')}"
        )
    return chunk_tokens, overlap


class Chunker:
    """Split texts into overlapping token windows that are exact substrings.

    Args:
        tokenizer: a Hugging Face *fast* tokenizer (it must return offset mappings).
        chunk_tokens: tokens per chunk; ``None`` → ``min(512, max_length - 2)``.
        overlap: tokens shared by consecutive chunks; ``0 <= overlap < chunk_tokens``;
            ``None`` → ``min(64, chunk_tokens // 4)``.
        max_length: the encoder's ``max_length``; a chunk plus BOS/EOS must fit in it.
        text_limit: the most tokens of a text the recipe embeds (``Recipe.text_capacity``).

    Raises:
        ConfigurationError: sizes out of range, or a slow tokenizer without offsets.
    """

    def __init__(
        self,
        tokenizer: _FastTokenizer,
        chunk_tokens: int | None = None,
        overlap: int | None = None,
        *,
        max_length: int = 4096,
        text_limit: int | None = None,
    ) -> None:
        chunk_tokens, overlap = check_chunk_sizes(chunk_tokens, overlap, max_length, text_limit)
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigurationError(
                f"chunking needs a fast tokenizer (offset mappings); got {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap

    def _offsets(self, text: str) -> list[tuple[int, int]]:
        encoded = self.tokenizer(
            text,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            truncation=False,
        )
        return [(int(start), int(end)) for start, end in encoded["offset_mapping"]]

    def split(self, text: str, boundaries: Mapping[int, int] | None = None) -> list[Chunk]:
        """The chunks of ``text``, in order; ``[]`` for a whitespace-only text.

        ``boundaries``: :func:`structure_boundaries` of a structured document, the places
        preferred for a cut (see the module docs); ``None``: fixed windows.
        """
        if not text.strip():
            return []
        offsets = self._offsets(text)
        if len(offsets) <= self.chunk_tokens:
            start = len(text) - len(text.lstrip())
            return [Chunk(0, text.strip(), start, start + len(text.strip()), len(offsets))]
        stride = self.chunk_tokens - self.overlap
        cuts = self._token_boundaries(offsets, boundaries) if boundaries else {}
        chunks: list[Chunk] = []
        first = 0
        while True:
            last = min(first + self.chunk_tokens, len(offsets))
            following = first + stride
            if cuts and last < len(offsets):
                last, following = self._cut(cuts, first, last, following)
            chunk = self._slice(text, offsets, first, last, len(chunks))
            if chunk is not None:
                chunks.append(chunk)
            if last == len(offsets):
                return chunks
            first = following

    @staticmethod
    def _token_boundaries(offsets: list[tuple[int, int]], boundaries: Mapping[int, int]) -> dict[int, int]:
        """``{token index: strength}``: a unit starting at character ``b`` starts at the first
        token that ends past ``b``."""
        ends = [end for _, end in offsets]
        cuts: dict[int, int] = {}
        for offset, strength in boundaries.items():
            token = bisect.bisect_right(ends, offset)
            if 0 < token < len(offsets):
                cuts[token] = max(strength, cuts.get(token, 0))
        return cuts

    def _cut(self, cuts: Mapping[int, int], first: int, last: int, following: int) -> tuple[int, int]:
        """Where a full window ``[first, last)`` ends, and where the next one starts."""
        low = first + max(1, self.chunk_tokens // 2)
        inside = [(strength, token) for token, strength in cuts.items() if low < token <= last]
        if inside:
            best = max(inside)  # the strongest boundary, the latest among equals
            return best[1], best[1]
        starts = [token for token in cuts if following <= token < last]
        return last, min(starts) if starts else following

    @staticmethod
    def _slice(text: str, offsets: list[tuple[int, int]], first: int, last: int, index: int) -> Chunk | None:
        start = offsets[first][0]
        end = max(offset_end for _, offset_end in offsets[first:last])
        piece = text[start:end]
        stripped = piece.strip()
        if not stripped:
            return None
        start += len(piece) - len(piece.lstrip())
        return Chunk(index, stripped, start, start + len(stripped), last - first)
