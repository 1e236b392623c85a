"""Token-aware chunking with the real Mistral tokenizer (from the tiny test model)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from e5_integrations import ConfigurationError
from e5_integrations.ingest._chunking import Chunker, chunk_id, content_hash

TEXT = (
    "Retrieval-augmented generation grounds a language model in documents.  It embeds "
    "passages, stores the vectors, and at question time fetches the nearest ones.\n\n"
    "Unicode matters: naïve café, 東京, emoji 🚀🚀, and tabs\tinside.  "
) * 6


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_a_text_that_fits_is_one_chunk(tokenizer: Any) -> None:
    chunker = Chunker(tokenizer, chunk_tokens=512, overlap=64)
    text = "  A short passage about vector stores.\n"
    chunks = chunker.split(text)
    assert len(chunks) == 1
    assert chunks[0].text == text.strip()
    assert text[chunks[0].start : chunks[0].end] == chunks[0].text
    assert chunks[0].index == 0


@pytest.mark.parametrize(("size", "overlap"), [(16, 0), (16, 4), (40, 10), (7, 6)])
def test_chunks_are_exact_substrings_within_the_token_budget(tokenizer: Any, size: int, overlap: int) -> None:
    chunks = Chunker(tokenizer, chunk_tokens=size, overlap=overlap).split(TEXT)
    assert len(chunks) > 1
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert TEXT[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip() and chunk.text
        assert chunk.tokens <= size
        # re-tokenizing a slice may merge or split one piece at each edge
        assert _n_tokens(tokenizer, chunk.text) <= size + 2
    assert chunks[0].start == 0
    assert chunks[-1].end == len(TEXT.rstrip())


def test_overlap_repeats_text_and_zero_overlap_tiles_it(tokenizer: Any) -> None:
    tiled = Chunker(tokenizer, chunk_tokens=20, overlap=0).split(TEXT)
    for before, after in itertools.pairwise(tiled):
        assert after.start >= before.end - 1  # at most one multi-token character shared
        gap = TEXT[before.end : after.start]
        assert gap.strip() == "", f"text lost between chunks: {gap!r}"

    overlapping = Chunker(tokenizer, chunk_tokens=20, overlap=8).split(TEXT)
    assert len(overlapping) > len(tiled)
    for before, after in itertools.pairwise(overlapping):
        assert after.start < before.end, "consecutive chunks must share text"
        assert after.start > before.start


def test_chunking_is_deterministic_and_whitespace_only_gives_nothing(tokenizer: Any) -> None:
    chunker = Chunker(tokenizer, chunk_tokens=24, overlap=6)
    assert chunker.split(TEXT) == chunker.split(TEXT)
    assert chunker.split(" \n\t ") == []
    # a long run of whitespace between words yields no whitespace-only chunk
    spaced = "alpha " + "\n" * 200 + " omega"
    texts = [chunk.text for chunk in Chunker(tokenizer, chunk_tokens=8, overlap=0).split(spaced)]
    assert texts[0].startswith("alpha") and texts[-1].endswith("omega")
    assert all(text.strip() for text in texts)


def test_default_size_fits_max_length(tokenizer: Any) -> None:
    assert Chunker(tokenizer).chunk_tokens == 512
    assert Chunker(tokenizer).overlap == 64
    small = Chunker(tokenizer, max_length=100)
    assert (small.chunk_tokens, small.overlap) == (98, 24)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_tokens": 0}, "chunk_tokens=0"),
        ({"chunk_tokens": 5000}, "max_length=4096"),
        ({"chunk_tokens": 10, "overlap": 10}, "overlap"),
        ({"chunk_tokens": 10, "overlap": -1}, "overlap"),
    ],
)
def test_bad_sizes_are_configuration_errors(tokenizer: Any, kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Chunker(tokenizer, **kwargs)


def test_ids_and_content_hash() -> None:
    assert chunk_id("docs/a.md", 3) == "docs/a.md#3"
    base = content_hash("m", 4096, "text", {"source": "a"})
    assert base == content_hash("m", 4096, "text", {"source": "a"})
    assert len(base) == 64
    assert base != content_hash("other-model", 4096, "text", {"source": "a"})
    assert base != content_hash("m", 512, "text", {"source": "a"})
    assert base != content_hash("m", 4096, "text!", {"source": "a"})
    assert base != content_hash("m", 4096, "text", {"source": "b"})
    # key order of the metadata does not matter
    assert content_hash("m", 1, "t", {"a": 1, "b": 2}) == content_hash("m", 1, "t", {"b": 2, "a": 1})


def test_default_recipe_keeps_the_hash_it_had_before_recipes() -> None:
    """Collections embedded with e5-mistral before recipes existed are not re-embedded."""
    import hashlib
    import json

    from e5_integrations import E5_MISTRAL
    from e5_integrations.ingest import recipe_key

    before = hashlib.sha256(
        json.dumps(
            ["m", 4096, "text", {"source": "a"}], ensure_ascii=False, sort_keys=True, separators=(",", ":")
        ).encode("utf-8")
    ).hexdigest()
    assert recipe_key(E5_MISTRAL) is None and recipe_key(None) is None
    assert content_hash("m", 4096, "text", {"source": "a"}, recipe_key(E5_MISTRAL)) == before


def test_another_recipe_changes_the_hash() -> None:
    import dataclasses

    from e5_integrations._recipe import get_recipe
    from e5_integrations.ingest import recipe_key

    base = content_hash("m", 4096, "text", {"source": "a"})
    keys = {
        recipe_key(get_recipe(name)) for name in ("sgpt", "sgpt-nobrackets", "echo", "echo-last", "llm2vec")
    }
    hashes = {content_hash("m", 4096, "text", {"source": "a"}, key) for key in keys}
    assert len(keys) == 5 and len(hashes) == 5 and base not in hashes
    # the same name with other settings is another recipe too
    sgpt = get_recipe("sgpt")
    assert recipe_key(dataclasses.replace(sgpt, pooling="mean")) != recipe_key(sgpt)
    assert (recipe_key(sgpt) or "").startswith("sgpt:")


# -- structure: documents with spans are cut at their units' boundaries -------------------------
def _pages(n: int, sentences: int) -> tuple[str, list[int]]:
    """``n`` pages of text joined as the PDF reader joins them, and each page's start."""
    parts = [" ".join(f"Page {p} sentence {i} tells a detail." for i in range(sentences)) for p in range(n)]
    starts, offset = [], 0
    for part in parts:
        starts.append(offset)
        offset += len(part) + 2
    return "\n\n".join(parts), starts


def test_plain_text_is_cut_exactly_as_before_without_boundaries(tokenizer: Any) -> None:
    chunker = Chunker(tokenizer, chunk_tokens=40, overlap=10)
    assert chunker.split(TEXT, None) == chunker.split(TEXT) == chunker.split(TEXT, {})


def test_a_cut_falls_on_a_page_start_in_the_second_half_of_the_window(tokenizer: Any) -> None:
    from e5_integrations.ingest._chunking import structure_boundaries

    text, starts = _pages(4, 5)  # a page is about 45 tokens, so a 64-token window holds one page start
    chunker = Chunker(tokenizer, chunk_tokens=64, overlap=16)
    plain = chunker.split(text)
    chunks = chunker.split(text, structure_boundaries(text, starts))
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text and chunk.tokens <= 64
    # every page start begins a chunk, and no chunk runs across a page start
    chunk_starts = {chunk.start for chunk in chunks}
    assert set(starts) <= chunk_starts
    for chunk in chunks:
        assert not any(chunk.start < start < chunk.end for start in starts)
    assert not set(starts[1:]) <= {chunk.start for chunk in plain}  # fixed windows do not do that


def test_a_heading_beats_a_paragraph_and_a_window_without_boundaries_keeps_its_overlap(
    tokenizer: Any,
) -> None:
    from e5_integrations.ingest._chunking import structure_boundaries

    body = " ".join(f"word{i}" for i in range(15))  # about 40 tokens: both boundaries in the second half
    text = f"{body}\n\nA paragraph of a few words here.\n\n# Heading\n\nmore text {body * 6}"
    boundaries = structure_boundaries(text)
    heading = text.index("# Heading")
    assert boundaries[heading] > boundaries[text.index("A paragraph")]
    chunks = Chunker(tokenizer, chunk_tokens=80, overlap=20).split(text, boundaries)
    assert any(chunk.text.startswith("# Heading") for chunk in chunks)
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text and chunk.tokens <= 80
    tail = [chunk for chunk in chunks if chunk.start > heading]
    assert len(tail) >= 2  # the long tail has no boundary: fixed windows that overlap
    assert tail[1].start < tail[0].end


def test_span_metadata_gives_page_ranges_and_string_fields() -> None:
    from e5_integrations.ingest._pipeline import span_metadata
    from e5_integrations.ingest._readers import Span

    spans = (
        Span(0, 10, {"page": 1, "section": "Intro"}),
        Span(12, 20, {"page": 2, "section": "Intro > Setup"}),
        Span(22, 30, {"page": 3, "source": "a span may not set bookkeeping"}),
    )
    assert span_metadata(spans, 0, 5) == {"page": 1, "page_end": 1, "section": "Intro"}
    assert span_metadata(spans, 5, 25) == {"page": 1, "page_end": 3, "section": "Intro"}
    assert span_metadata(spans, 13, 14) == {"page": 2, "page_end": 2, "section": "Intro > Setup"}
    assert span_metadata(spans, 24, 30) == {"page": 3, "page_end": 3}
    assert span_metadata((), 0, 5) == {}


def test_prepare_chunks_puts_pages_and_title_in_the_metadata_and_the_hash(tokenizer: Any) -> None:
    from e5_integrations.ingest._pipeline import prepare_chunks
    from e5_integrations.ingest._readers import Document, Span

    text, starts = _pages(3, 5)
    spans = tuple(
        Span(start, start + len(part), {"page": number})
        for number, (start, part) in enumerate(zip(starts, text.split("\n\n"), strict=True), start=1)
    )
    document = Document("m.pdf", text, "m.pdf", {"title": "Manual"}, spans)
    chunker = Chunker(tokenizer, chunk_tokens=64, overlap=16)
    chunks = prepare_chunks(document, chunker, "model", 128)
    assert {chunk.metadata["title"] for chunk in chunks} == {"Manual"}
    pages = [(chunk.metadata["page"], chunk.metadata["page_end"]) for chunk in chunks]
    assert pages[0][0] == 1 and pages[-1][1] == 3 and pages == sorted(pages)
    assert prepare_chunks(document, chunker, "model", 128) == chunks  # deterministic
    unpaged = prepare_chunks(Document("m.pdf", text, "m.pdf", {"title": "Manual"}), chunker, "model", 128)
    assert {chunk.hash for chunk in unpaged}.isdisjoint(chunk.hash for chunk in chunks)
