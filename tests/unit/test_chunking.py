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
