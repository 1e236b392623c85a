"""The document mark's encoding and comparison rules (core/ingest/_fingerprint.py)."""

from __future__ import annotations

from typing import Any

from e5_integrations.ingest._fingerprint import (
    StoredMark,
    document_fingerprint,
    fetch_marks,
    mark_value,
    parse_stored_hash,
    stored_unchanged,
)

HASH = "a" * 64
OTHER = "b" * 64


def _fingerprint(**changes: Any) -> str:
    settings: dict[str, Any] = {
        "document_id": "doc",
        "source": "docs.jsonl",
        "text": "some text",
        "metadata": {"team": "a"},
        "model": "m",
        "max_length": 4096,
        "chunk_tokens": 512,
        "overlap": 64,
        "recipe": None,
    }
    settings.update(changes)
    args = [settings.pop(name) for name in ("document_id", "source", "text", "metadata")]
    return document_fingerprint(*args, **settings)


def test_every_input_of_the_chunks_changes_the_fingerprint() -> None:
    base = _fingerprint()
    assert _fingerprint() == base
    changes: list[dict[str, Any]] = [
        {"document_id": "doc2"},
        {"source": "other.jsonl"},
        {"text": "some text!"},
        {"metadata": {"team": "b"}},
        {"model": "m2"},
        {"max_length": 2048},
        {"chunk_tokens": 256},
        {"overlap": 32},
        {"recipe": "sgpt:1234"},
    ]
    assert len({_fingerprint(**change) for change in changes} | {base}) == len(changes) + 1


def test_a_mark_round_trips_and_keeps_the_content_hash() -> None:
    value = mark_value(HASH, "f" * 64, 3)
    assert value.startswith(HASH)
    assert parse_stored_hash(value) == StoredMark(HASH, "f" * 64, 3)
    assert parse_stored_hash(HASH) == StoredMark(HASH)
    assert parse_stored_hash(f"{HASH} d9:3:{'f' * 64}") == StoredMark(HASH)  # another version: no mark
    assert parse_stored_hash(f"{HASH} d1:x:{'f' * 64}") == StoredMark(HASH)


def test_only_an_unmarked_row_with_the_same_hash_is_unchanged_without_the_mark() -> None:
    marked = mark_value(HASH, "f" * 64, 1)
    assert stored_unchanged(marked, marked)
    assert stored_unchanged(HASH, marked)  # written before marks existed: not re-embedded
    assert not stored_unchanged(None, marked)
    assert not stored_unchanged(OTHER, marked)
    assert not stored_unchanged(mark_value(HASH, "e" * 64, 1), marked)  # a stale mark is rewritten
    assert not stored_unchanged(marked, HASH)  # a mark where none belongs is cleared
    assert stored_unchanged(HASH, HASH)


def test_marks_are_fetched_in_one_call_by_chunk_0_ids() -> None:
    calls: list[list[str]] = []
    stored = {"a#0": mark_value(HASH, "f" * 64, 2), "b#0": HASH}

    def fetch(ids: Any) -> dict[str, str]:
        calls.append(list(ids))
        return {key: stored[key] for key in ids if key in stored}

    marks = fetch_marks(fetch, ["a", "b", "c"])
    assert calls == [["a#0", "b#0", "c#0"]]
    assert marks == {"a": StoredMark(HASH, "f" * 64, 2), "b": StoredMark(HASH)}
    assert fetch_marks(fetch, []) == {} and len(calls) == 1
